# One command runs the demo (`make demo`), one runs the tests (`make test`).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install lock services migrate run demo demo-clean test test-fast lint bench clean

# Dependencies come from the lock files (exact versions with their hashes); the project itself is
# installed on top without resolving anything again.
$(STAMP): pyproject.toml requirements-dev.lock
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "Python 3.11 is required ($(PYTHON) not found)"; exit 1; }
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes -r requirements-dev.lock
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

services:
	bash scripts/ensure_services.sh

migrate: install services
	$(PY) -m shared.migrate --create-database

run: install services migrate
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(VENV)/bin/honcho start -f Procfile

# KEEP=1 leaves the demo's stack running afterwards.
demo: install services migrate
	$(PY) -m scripts.demo $(if $(KEEP),--keep-running)

demo-clean: install services
	$(PY) -m scripts.demo --clean

# The suite runs on TEST_WORKERS processes (pytest-xdist), each with a PostgreSQL server of its own;
# tests/scheduling.py says how the tests are shared out among them.
TEST_WORKERS ?= 4
test: install services
	$(PY) -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadgroup

test-fast: install
	$(PY) -m pytest -q -p no:cacheprovider tests/unit

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy shared services tools wce_cli

bench: install services
	$(PY) -m bench.run_all

# After changing a dependency in pyproject.toml: pin it and everything it pulls in, with hashes.
LOCK_TOOL := .venv-lock/bin/uv
LOCK_ARGS := --universal --python-version 3.11 --generate-hashes --no-header --quiet
lock:
	test -x $(LOCK_TOOL) || { $(PYTHON) -m venv .venv-lock && .venv-lock/bin/pip install --quiet uv==0.13.9; }
	$(LOCK_TOOL) pip compile pyproject.toml $(LOCK_ARGS) -o requirements.lock
	$(LOCK_TOOL) pip compile pyproject.toml --extra dev $(LOCK_ARGS) -o requirements-dev.lock

clean:
	rm -rf $(VENV) .venv-lock .pytest_cache .mypy_cache .ruff_cache

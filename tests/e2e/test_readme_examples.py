"""The README's "Using it" examples run as written: every `sh` block of that section, in order, in
one shell that stops at the first failing command, against a stack started like `make run` (its
simulator with the development accounts of examples/simulator.json, the development operator
token) on an empty database. (`make demo` and `make test`, the README's other shell lines, are
run by test_demo.py and by CI itself.)"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.settings import DEVELOPMENT_OPERATOR_TOKEN
from tests.support import ROOT, IsolatedEnvironment, Stack

pytestmark = pytest.mark.slow

SECTION = "## Using it"


def readme_examples(readme: str) -> list[str]:
    """The `sh` blocks between the section's heading and the next heading of the same level."""
    start = readme.index(SECTION + "\n")
    following = re.search(r"^## ", readme[start + len(SECTION) :], flags=re.MULTILINE)
    section = readme[start : start + len(SECTION) + following.start()] if following else readme[start:]
    return re.findall(r"^```sh\n(.*?)^```$", section, flags=re.MULTILINE | re.DOTALL)


def test_the_examples_are_found_and_cover_the_first_hour() -> None:
    script = "\n".join(readme_examples((ROOT / "README.md").read_text()))
    for step in (
        "/v1/operator/tenants",
        "examples/$kind.json",
        "/v1/audiences/preview",
        "/v1/campaigns",
        "wce",
    ):
        assert step in script, f"the README examples no longer show {step}"


@pytest.fixture(scope="module")
def empty_environment() -> Iterator[IsolatedEnvironment]:
    """A database and vhost of their own: the examples start from nothing."""
    with IsolatedEnvironment() as env:
        yield env


@pytest.fixture(scope="module")
def stack_like_make_run(
    empty_environment: IsolatedEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    settings = empty_environment.env()
    # The development operator token, as `make run` has it: the README's default must work. Set,
    # not removed: the services' environment also inherits the test session's own token.
    settings["WCE_OPERATOR_TOKEN"] = DEVELOPMENT_OPERATOR_TOKEN
    settings["WCE_ENVIRONMENT"] = "development"
    running = Stack(
        env=settings,
        log_dir=tmp_path_factory.mktemp("readme-stack"),
        simulator_args=["--config", str(ROOT / "examples" / "simulator.json")],
    )
    try:
        running.start()
        yield running
    finally:
        running.stop()


def test_the_readme_examples_run_verbatim_and_deliver_the_first_campaign(
    stack_like_make_run: Stack, tmp_path: Path
) -> None:
    # Given a folder laid out like the repository after `make install`
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parent.parent)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("WCE_", "VIRTUAL_ENV"))},
        "WCE_API_URL": stack_like_make_run.api_url,
        "WCE_TRACKER_URL": stack_like_make_run.tracker_url,
        "COLUMNS": "160",
        "TERM": "dumb",
    }
    script = "\n".join(readme_examples((ROOT / "README.md").read_text()))

    # When the examples run, one after the other, in one shell that stops at the first failure
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )

    # Then every command succeeded and the campaign reached every lapsed customer of the examples
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:] + "\n" + stack_like_make_run.logs()
    assert "completed" in result.stdout
    with (tmp_path / "recipients.csv").open(encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 9, output[-3000:]
    assert {row["state"] for row in rows} <= {"sent", "delivered", "read"}
    assert all(row["twilio_sid"].startswith("SM") for row in rows)

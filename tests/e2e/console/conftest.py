"""The stack with the web console, tenants to sign in as, and the browser for the journey test."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from tests.support import ROOT, IsolatedEnvironment, Stack

LOGS = ROOT / "var/test-artifacts/console-logs"


@pytest.fixture(scope="module")
def console_stack(
    request: pytest.FixtureRequest,
    isolated_env: IsolatedEnvironment,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    """The simulator, the four services and the console as processes, for one test module; their
    logs are kept under var/test-artifacts/console-logs/ (one folder per module, and per worker
    when a module's tests are shared out among the workers of a parallel run)."""
    # Small pools: the machine's database is shared by many test stacks at once.
    env = isolated_env.env(
        WCE_LOG_LEVEL="WARNING", WCE_SWEEP_IDLE_S="4", WCE_DB_POOL_MIN="1", WCE_DB_POOL_MAX="4"
    )
    running = Stack(env=env, log_dir=tmp_path_factory.mktemp("console"), senders=1, console=True)
    try:
        running.start()
        yield running
    finally:
        running.stop()
        kept = LOGS / "-".join(
            filter(None, [request.module.__name__.rsplit(".", 1)[-1], os.environ.get("PYTEST_XDIST_WORKER")])
        )
        shutil.rmtree(kept, ignore_errors=True)
        shutil.copytree(running.log_dir, kept)

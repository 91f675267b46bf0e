"""The stack for the engine's end-to-end tests: simulator, segmenter, tracker, dispatcher and two
senders as processes on this session's database and vhost.

A test module may set ``STACK_ENV`` (extra ``WCE_*`` settings, e.g. short leases and retry tiers)
and ``SIMULATOR_ARGS``; each module gets a stack of its own.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import IsolatedEnvironment, Stack

# Short timings so crashes, leases and retries play out in seconds.
FAST_ENV = {
    "WCE_TWILIO_TIMEOUT_S": "4",
    "WCE_LEASE_S": "10",
    "WCE_RECONCILE_AFTER_S": "1",
    # "Not found" believed 4 + 2 s after a create was last possibly written: the simulator never
    # processes a create after its client gave up, so the margin only needs to cover the moment
    # between its reading a request and processing it.
    "WCE_RECONCILE_MARGIN_S": "2",
    "WCE_SWEEP_IDLE_S": "4",
    "WCE_RETRY_TIERS_S": "1,2,3",
    "WCE_MAINTENANCE_INTERVAL_S": "0.5",
    "WCE_CHUNK_FEEDBACK_TIMEOUT_S": "5",
    "WCE_LOG_LEVEL": "WARNING",
}


@pytest.fixture(scope="module")
def engine_stack(
    request: pytest.FixtureRequest,
    isolated_env: IsolatedEnvironment,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    env = isolated_env.env(**{**FAST_ENV, **getattr(request.module, "STACK_ENV", {})})
    stack = Stack(
        env=env,
        log_dir=tmp_path_factory.mktemp("engine"),
        senders=getattr(request.module, "SENDERS", 2),
        dispatchers=getattr(request.module, "DISPATCHERS", 1),
        simulator_args=list(getattr(request.module, "SIMULATOR_ARGS", [])),
    )
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()

"""Processes forked from the tests' fork server behave as ``python -m`` ones: arguments, output
in their log, exit codes, signals, and the module's name for ``ps``."""

from __future__ import annotations

import importlib.util
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tools.forked_process import PRELOAD, ForkServer
from tools.stack import ROOT, free_port


@pytest.fixture(scope="module")
def server() -> ForkServer:
    return ForkServer()


def test_arguments_output_and_exit_codes_are_those_of_python_dash_m(
    server: ForkServer, tmp_path: Path
) -> None:
    helped = server.start("tools.twilio_sim", ["--help"], env={}, cwd=ROOT, log_path=tmp_path / "help.log")
    assert helped.wait(60) == 0
    assert "usage: python -m tools.twilio_sim" in (tmp_path / "help.log").read_text()

    refused = server.start(
        "tools.twilio_sim", ["--port", "x"], env={}, cwd=ROOT, log_path=tmp_path / "bad.log"
    )
    assert refused.wait(60) == 2
    assert "--port: invalid int value" in (tmp_path / "bad.log").read_text()


def test_a_running_process_is_named_after_its_module_and_answers_signals(
    server: ForkServer, tmp_path: Path
) -> None:
    port = free_port()
    simulator = server.start(
        "tools.twilio_sim", ["--port", str(port)], env={}, cwd=ROOT, log_path=tmp_path / "sim.log"
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            assert time.monotonic() < deadline and simulator.poll() is None
            time.sleep(0.1)
    assert Path(f"/proc/{simulator.pid}/comm").read_text().strip() == "twilio_sim"
    with pytest.raises(subprocess.TimeoutExpired):
        simulator.wait(0.2)

    simulator.kill()
    assert simulator.wait(30) == -signal.SIGKILL
    simulator.send_signal(signal.SIGTERM)  # after the exit: nothing, no error
    assert simulator.poll() == -signal.SIGKILL


def test_every_preloaded_module_exists() -> None:
    # The fork server skips a name it cannot import without a word: each process would then pay
    # for that import again.
    assert [name for name in PRELOAD if importlib.util.find_spec(name) is None] == []

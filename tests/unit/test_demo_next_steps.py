"""The demo ends with the commands to go on exploring: with the stack it leaves running (KEEP=1)
its URLs and the key as exports; otherwise `make run` and the key, since the demo's stack stops."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts import demo
from tools.stack import Stack


@pytest.fixture
def stack(tmp_path: Path) -> Stack:
    return Stack(env={}, log_dir=tmp_path)


def test_a_demo_left_running_gives_its_urls_and_key(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    demo.explain_next_steps(stack, "wce_key123", "c-1", keep_running=True)
    out = capsys.readouterr().out
    assert (
        f"export WCE_API_URL={stack.api_url} WCE_TRACKER_URL={stack.tracker_url} WCE_API_KEY=wce_key123"
        in out
    )
    assert f"{stack.tracker_url}/v1/campaigns/c-1/recipients" in out
    assert "make run" not in out
    assert out.strip().splitlines()[-2:] == [
        f"Web console: {stack.console_url}/signin",
        "Sign in with the API key: wce_key123",
    ]


def test_a_stopped_demo_points_to_make_run_and_the_key(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    demo.explain_next_steps(stack, "wce_key123", "c-1", keep_running=False)
    out = capsys.readouterr().out
    assert "make run" in out and "export WCE_API_KEY=wce_key123" in out
    assert stack.tracker_url not in out  # its stack is gone: no dead URL
    assert ".venv/bin/wce logs c-1" in out and "make demo KEEP=1" in out and "make demo-clean" in out
    assert out.strip().splitlines()[-2:] == [
        "Web console (after `make run`): http://127.0.0.1:8004/signin",
        "Sign in with the API key: wce_key123",
    ]

"""Asking Linux for a short CPU slice (``shared.cpu_slice``): the calling thread gets it and no
other, its nice value is kept, and out-of-range asks are refused before reaching the kernel."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import ValidationError

from shared.cpu_slice import MAX_SLICE_S, MIN_SLICE_S, request_slice, slice_s
from shared.settings import Settings

# Linux reports a fair thread's slice from 6.12 on; before, it reads 0 and ignores a request.
needs_custom_slices = pytest.mark.skipif(
    not slice_s(), reason="this kernel has no per-thread slices (Linux < 6.12)"
)


def in_a_thread(work: Callable[[], Any]) -> Any:
    """Run ``work`` in a new thread; what it returned (or raised)."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = work()
        except Exception as exc:  # handed to the asserting thread
            outcome["value"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return outcome["value"]


@needs_custom_slices
def test_the_calling_thread_gets_the_slice_it_asks_for_and_no_other_thread_does() -> None:
    before = slice_s()
    assert before is not None

    granted = in_a_thread(lambda: (request_slice(0.0003), slice_s()))

    assert granted == (pytest.approx(0.0003), pytest.approx(0.0003))
    # This thread kept the kernel's default.
    assert slice_s() == pytest.approx(before)
    assert before > 0.0003


@needs_custom_slices
def test_asking_keeps_the_threads_nice_value() -> None:
    def niced_then_asked() -> tuple[int, float | None]:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 7)
        granted = request_slice(0.0005)
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id()), granted

    nice, granted = in_a_thread(niced_then_asked)

    assert nice == 7
    assert granted == pytest.approx(0.0005)


@pytest.mark.parametrize("seconds", [0.0, MIN_SLICE_S / 2, MAX_SLICE_S * 2, -0.001])
def test_a_slice_outside_the_kernels_range_is_refused_before_the_call(seconds: float) -> None:
    outcome = in_a_thread(lambda: request_slice(seconds))
    assert isinstance(outcome, ValueError)


def test_the_sender_setting_is_zero_or_within_the_kernels_range() -> None:
    assert Settings().sender_cpu_slice_s == pytest.approx(0.0003)
    assert Settings(sender_cpu_slice_s=0).sender_cpu_slice_s == 0
    for wrong in (MIN_SLICE_S / 2, MAX_SLICE_S * 2, -0.001):
        with pytest.raises(ValidationError, match=r"sender_cpu_slice_s|WCE_SENDER_CPU_SLICE_S"):
            Settings(sender_cpu_slice_s=wrong)

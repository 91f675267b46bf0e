"""Asking Linux for a shorter CPU time slice for the calling thread (EEVDF's custom slice).

Since Linux 6.12 the fair scheduler lets a thread ask for its own slice with ``sched_setattr``
(``sched_runtime`` of a ``SCHED_OTHER`` thread, 0.1–100 ms; the default is 0.7 ms times
1 + log2 of the CPUs). A shorter slice does not buy more CPU: the thread's share stays what its
weight gives it. It buys latency: its deadlines come sooner, and a thread that wakes with a shorter
slice than the running one's may preempt it at once, instead of waiting for that one's slice to
end (seen at the timer tick: every 4 ms at 250 Hz, so several milliseconds). No privilege is
needed, in a container either.

The sender asks for one for its event loop: a paced message must start within a few
milliseconds of its slot, and on a machine whose CPUs are kept busy by other work each late
wake-up past the tolerance costs a slot (``bench/noisy_neighbour.py``). Older kernels ignore the
request, which then changes nothing; the answer read back says whether it took.

Written by hand: Python's ``os`` module has ``sched_setscheduler`` but not ``sched_setattr``
(glibc wraps it only from 2.41), and no maintained package exposes it; the call is one
``syscall`` through ctypes.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform

# Syscall numbers of sched_setattr and sched_getattr (include/uapi/asm-generic/unistd.h and
# arch/x86/entry/syscalls/syscall_64.tbl).
_SYSCALLS = {"x86_64": (314, 315), "aarch64": (274, 275)}
SCHED_OTHER = 0
# The kernel clamps a custom slice to this range (kernel/sched/syscalls.c).
MIN_SLICE_S = 0.0001
MAX_SLICE_S = 0.1


class _SchedAttr(ctypes.Structure):
    """``struct sched_attr`` (SCHED_ATTR_SIZE_VER1, 56 bytes)."""

    _fields_ = [
        ("size", ctypes.c_uint32),
        ("sched_policy", ctypes.c_uint32),
        ("sched_flags", ctypes.c_uint64),
        ("sched_nice", ctypes.c_int32),
        ("sched_priority", ctypes.c_uint32),
        ("sched_runtime", ctypes.c_uint64),
        ("sched_deadline", ctypes.c_uint64),
        ("sched_period", ctypes.c_uint64),
        ("sched_util_min", ctypes.c_uint32),
        ("sched_util_max", ctypes.c_uint32),
    ]


@functools.cache
def _syscalls() -> tuple[ctypes.CDLL, int, int] | None:
    numbers = _SYSCALLS.get(platform.machine())
    if numbers is None or platform.system() != "Linux":
        return None
    return ctypes.CDLL(None, use_errno=True), numbers[0], numbers[1]


def _check(result: int) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def _get(libc: ctypes.CDLL, getattr_nr: int, tid: int) -> _SchedAttr:
    attr = _SchedAttr()
    _check(libc.syscall(getattr_nr, tid, ctypes.byref(attr), ctypes.sizeof(attr), 0))
    return attr


def slice_s(tid: int = 0) -> float | None:
    """The time slice of a thread (0: the calling one), in seconds; None where it cannot be read
    (not Linux, an unknown architecture). Before Linux 6.12 this reads 0."""
    calls = _syscalls()
    if calls is None:
        return None
    libc, _, getattr_nr = calls
    return _get(libc, getattr_nr, tid).sched_runtime / 1e9


def request_slice(seconds: float) -> float | None:
    """Ask for a time slice of ``seconds`` for the calling thread, keeping its policy and nice
    value; return the slice the kernel reports afterwards (None where none can be asked for).
    Only a ``SCHED_OTHER`` thread is changed. Raises OSError when the kernel refuses."""
    if not MIN_SLICE_S <= seconds <= MAX_SLICE_S:
        raise ValueError(f"a slice must lie within {MIN_SLICE_S}-{MAX_SLICE_S} s")
    calls = _syscalls()
    if calls is None:
        return None
    libc, setattr_nr, getattr_nr = calls
    attr = _get(libc, getattr_nr, 0)
    if attr.sched_policy != SCHED_OTHER:
        return attr.sched_runtime / 1e9
    attr.size = ctypes.sizeof(attr)
    attr.sched_flags = 0
    attr.sched_runtime = round(seconds * 1e9)
    _check(libc.syscall(setattr_nr, 0, ctypes.byref(attr), 0))
    return _get(libc, getattr_nr, 0).sched_runtime / 1e9

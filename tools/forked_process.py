"""Start ``python -m <module>`` processes as forks of a server that imported their libraries once.

A service spends about a second of CPU importing its libraries (FastAPI, pydantic, aio-pika,
structlog...) before it does anything: on the two-core CI machine 1.2-1.4 s for the segmenter, the
tracker and a sender, 0.8 s for a dispatcher, about 6 s for a stack of six processes, nine tenths of
the CPU the stack needs to start. The test suite starts some four hundred of them, and its run is
bound by the CPU. Forked from multiprocessing's fork server, which has imported them already, a
process starts from its ``__main__`` code at once.

Each fork then runs its module as ``python -m`` would: with its own environment (replaced whole),
working directory, arguments and log file (standard output and error), ``__main__`` run anew. What
the imports left behind is the same in every process, and nothing in them reads the environment
(the settings are read when ``__main__`` asks for them; their cache is emptied in the fork anyway).
The handle answers as :class:`subprocess.Popen` does for what :mod:`tools.stack` and the tests ask
of a process: its pid, signals, ``poll`` and ``wait``.

The tests start their stacks this way; the demo and the benchmarks start each process afresh.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import runpy
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from multiprocessing.process import BaseProcess
from pathlib import Path

# What the services' ``__main__`` modules import, the simulator's and the migration command's too.
PRELOAD = (
    "shared.runtime",
    "shared.migrate",
    "services.segmenter.app",
    "services.tracker.app",
    "services.dispatcher.app",
    "services.sender.app",
    "services.console.app",
    "tools.twilio_sim.app",
    "tools.twilio_sim.server",
    "tools.twilio_sim.simulator",
    "tools.twilio_sim.config",
    "uvloop",
)


_PR_SET_NAME = 15


def _name_process(module: str) -> None:
    """The process's name as ``ps -o comm`` and ``top`` show it: the module's, not the server's
    (its command line stays the fork server's)."""
    name = module.removesuffix(".__main__").rsplit(".", 1)[-1].encode()[:15]
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_NAME, ctypes.c_char_p(name), 0, 0, 0)


def _run_module(module: str, args: Sequence[str], env: Mapping[str, str], cwd: str, log_path: str) -> None:
    """In the fork: what ``python -m module *args`` does, with output to ``log_path``."""
    _name_process(module)
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    settings = sys.modules.get("shared.settings")
    if settings is not None:
        settings.get_settings.cache_clear()
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


class ForkedProcess:
    """One forked process, with the part of :class:`subprocess.Popen`'s interface the stack uses."""

    def __init__(self, process: BaseProcess, args: list[str]) -> None:
        self._process = process
        self.args = args

    @property
    def pid(self) -> int:
        pid = self._process.pid
        assert pid is not None
        return pid

    @property
    def returncode(self) -> int | None:
        return self._process.exitcode

    def poll(self) -> int | None:
        return self._process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        code = self._process.exitcode
        if code is None:
            raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
        return code

    def send_signal(self, sig: int) -> None:
        if self._process.exitcode is not None:
            return
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            pass

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class ForkServer:
    """multiprocessing's fork server of this process, with the services' libraries imported."""

    def __init__(self, preload: Sequence[str] = PRELOAD) -> None:
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload(list(preload))

    def start(
        self, module: str, args: Sequence[str], *, env: Mapping[str, str], cwd: Path, log_path: Path
    ) -> ForkedProcess:
        # Daemonic: a process left running when this one exits is stopped with it, not waited for.
        process = self._context.Process(
            target=_run_module,
            args=(module, list(args), dict(env), str(cwd), str(log_path)),
            name=module,
            daemon=True,
        )
        process.start()
        return ForkedProcess(process, [sys.executable, "-m", module, *args])

"""How ``make test`` shares the suite out among its workers (pytest-xdist, ``--dist loadgroup``).

Whole files per worker leave the run waiting on the heaviest file, and single tests per worker
start a module's stack once for every worker that gets one of its tests. So the tests are
grouped by module, and a module estimated at more than ``GROUP_S`` seconds is cut into
consecutive groups of about that much (each group starts the module's stack once more). The
groups go out longest first, each to the next worker that runs out of work, so that the longest
ones are not left for the end.

The estimates come from ``tests/durations.json``: each test's seconds (set-up, call and
tear-down) in a measured run, written from that run's JUnit report by
``python -m tests.scheduling <report.xml>`` (a parallel run's report serves: the load inflates its
figures alike, which keeps their order). A test it does not know counts as ``UNKNOWN_S``
(``UNIT_S`` under tests/unit/): a stale file makes the run slower, never wrong.

Tests marked ``timing`` (rates and pacing measured against the clock) run alone: each waits until
the tests running on the other workers have ended, and none starts beside it (a lock file of the
run's, shared for the others, held alone by it; its set-up and tear-down included). Their groups
go out first, and the other workers' first tests wait for them to begin (up to
``TIMING_START_WAIT_S``): a timing test that came later would wait for the longest test then
running elsewhere to end, with the workers that finished theirs idle meanwhile.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import pytest
from xdist.scheduler import LoadGroupScheduling

DURATIONS = Path(__file__).with_name("durations.json")
GROUP_S = 100.0
UNKNOWN_S = 5.0
UNIT_S = 0.05
TIMING_START_WAIT_S = 30.0
# Each test's group, written by the workers, read by the scheduler (in the run's directory).
GROUPS = "groups.json"


def estimate(nodeid: str, durations: Mapping[str, float]) -> float:
    if nodeid in durations:
        return durations[nodeid]
    return UNIT_S if nodeid.startswith("tests/unit/") else UNKNOWN_S


def plan_groups(
    nodeids: Sequence[str],
    durations: Mapping[str, float],
    group_s: float = GROUP_S,
    whole: Collection[str] = (),
) -> list[tuple[str, list[str]]]:
    """The groups as (name, node ids), longest first; each group is a run of consecutive tests
    of one module, in their collection order. The modules in ``whole`` are never cut."""
    modules: dict[str, list[str]] = {}
    for nodeid in nodeids:
        modules.setdefault(_module(nodeid), []).append(nodeid)
    groups: list[tuple[float, str, list[str]]] = []
    for module, members in modules.items():
        total = sum(estimate(nodeid, durations) for nodeid in members)
        share = total if module in whole else total / max(1, round(total / group_s))
        current: list[str] = []
        spent = before = 0.0
        cuts = 1
        for nodeid in members:
            cost = estimate(nodeid, durations)
            # A test goes to the group in which most of its time falls.
            if current and before + cost / 2 > share * cuts:
                groups.append((spent, f"{module}#{cuts}", current))
                current, spent, cuts = [], 0.0, cuts + 1
            current.append(nodeid)
            spent += cost
            before += cost
        groups.append((spent, f"{module}#{cuts}", current))
    groups.sort(key=lambda group: -group[0])
    return [(name, members) for _, name, members in groups]


def load_durations() -> dict[str, float]:
    try:
        return {str(key): float(value) for key, value in json.loads(DURATIONS.read_text()).items()}
    except FileNotFoundError:
        return {}


def assign_groups(items: list[pytest.Item], run_directory: Path | None = None) -> None:
    """Order the items group after group, the timing tests' first and the others longest first,
    and write each test's group to ``run_directory``, where the scheduler reads them.

    (The groups do not travel as ``xdist_group`` marks: pytest-xdist 3.8 carries those to its
    scheduler by appending them to the test ids, which pytest 9.2's structured ids no longer let
    it do, and the tests were then scheduled one by one.)"""
    global _timing_ahead
    by_id = {item.nodeid: item for item in items}
    # A module of tests that run alone is not cut: each group would start its stack once more,
    # with nothing else running meanwhile.
    alone = {_module(item.nodeid) for item in items if runs_alone(item)}
    _timing_ahead = bool(alone)
    groups = plan_groups([item.nodeid for item in items], load_durations(), whole=alone)
    # The groups of timing tests first (sorted is stable: each part stays longest first).
    groups.sort(key=lambda group: _module(group[1][0]) not in alone)
    items[:] = [by_id[nodeid] for _, members in groups for nodeid in members]
    if run_directory is not None:
        write_groups(run_directory, {nodeid: name for name, members in groups for nodeid in members})


def _module(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def write_groups(run_directory: Path, groups: Mapping[str, str]) -> None:
    """Each worker collects the same tests and writes the same file: whole, by a rename."""
    path = run_directory / GROUPS
    partial = path.with_name(f"{GROUPS}.{os.getpid()}")
    partial.write_text(json.dumps(groups))
    os.replace(partial, path)


def read_groups(run_directory: Path) -> dict[str, str]:
    try:
        return {
            str(key): str(value) for key, value in json.loads((run_directory / GROUPS).read_text()).items()
        }
    except FileNotFoundError:
        return {}


class LongestFirstScheduling(LoadGroupScheduling):
    """Load-group scheduling in the order the groups were collected (longest first), a worker
    getting its next group only when it is down to its last test (the least a worker needs to
    go on: it runs a test once it knows the one after it)."""

    def __init__(self, config: pytest.Config, log: object | None = None) -> None:
        super().__init__(config, log)  # type: ignore[arg-type]
        config.option.loadscopereorder = False
        # The workers' run directory: the controller's base temporary directory.
        self._run_directory: Path = config._tmp_path_factory.getbasetemp()  # type: ignore[attr-defined]
        self._groups: dict[str, str] | None = None

    def _split_scope(self, nodeid: str) -> str:
        """The test's group as the workers wrote it when they collected (the scheduler is first
        asked once every worker has); a test it does not name is a group of its own module."""
        if self._groups is None:
            self._groups = read_groups(self._run_directory)
        return self._groups.get(nodeid) or _module(nodeid)

    def _reschedule(self, node) -> None:  # type: ignore[no-untyped-def]
        if node.shutting_down:
            return
        if not self.workqueue:
            node.shutdown()
            return
        if self._pending_of(self.assigned_work[node]) > 1:
            return
        self._assign_work_unit(node)


def runs_alone(item: pytest.Item) -> bool:
    return item.get_closest_marker("timing") is not None


# The run's lock, held alone from one ``timing`` test into the next when they follow each other on
# this worker (a module of them is one group): the other workers are not let in between them, so
# the run does not wait for them to finish what they started in that gap before each next test.
_kept: IO[str] | None = None
# Whether this worker's next test is to wait for the run's timing tests to begin first.
_timing_ahead = False
TIMING_BEGUN = "timing.begun"


def _take(run_directory: Path, alone: bool) -> IO[str]:
    with (run_directory / "turnstile.lock").open("a") as turnstile:
        lock = (run_directory / "run.lock").open("a")
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        except BaseException:
            lock.close()
            raise
        finally:
            fcntl.flock(turnstile, fcntl.LOCK_UN)
    if alone:
        (run_directory / TIMING_BEGUN).touch()
    return lock


def _wait_for_timing(run_directory: Path) -> None:
    """Until a timing test has taken the run, or ``TIMING_START_WAIT_S`` (none was scheduled first)."""
    deadline = time.monotonic() + TIMING_START_WAIT_S
    while not (run_directory / TIMING_BEGUN).exists() and time.monotonic() < deadline:
        time.sleep(0.05)


@contextmanager
def turn(item: pytest.Item, run_directory: Path, nextitem: pytest.Item | None = None) -> Iterator[None]:
    """Hold the run's lock while ``item`` runs: alone for a ``timing`` test, shared for any other.
    A turnstile taken on the way in keeps a ``timing`` test that waits from being overtaken by
    tests that start later. A ``timing`` test followed by another keeps the lock for it."""
    global _kept, _timing_ahead
    alone = runs_alone(item)
    if _timing_ahead and not alone:
        _wait_for_timing(run_directory)
    _timing_ahead = False
    lock = _kept if alone and _kept is not None else _take(run_directory, alone)
    _kept = None
    try:
        yield
    finally:
        if alone and nextitem is not None and runs_alone(nextitem):
            _kept = lock
        else:
            fcntl.flock(lock, fcntl.LOCK_UN)
            lock.close()


def write_durations(report: Path) -> None:
    """tests/durations.json from a JUnit report: seconds per test, rounded to a tenth."""
    durations: dict[str, float] = {}
    for case in ElementTree.parse(report).iter("testcase"):
        # "tests.e2e.test_demo", or "tests.unit.test_x.TestClass" for a method
        parts = case.get("classname", "").split(".")
        for cut in range(len(parts), 0, -1):
            candidate = Path(*parts[:cut]).with_suffix(".py")
            if candidate.exists():
                prefix = "::".join([candidate.as_posix(), *parts[cut:]])
                break
        else:
            continue
        durations[f"{prefix}::{case.get('name')}"] = round(float(case.get("time", 0)), 1)
    DURATIONS.write_text(json.dumps(dict(sorted(durations.items())), indent=0) + "\n")


if __name__ == "__main__":
    write_durations(Path(sys.argv[1]))

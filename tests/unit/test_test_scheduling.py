"""How the suite is shared out among the workers of ``make test``: modules kept together unless
they are long, long ones cut into consecutive groups, the longest groups first; ``timing`` tests
run alone, consecutive ones without letting other tests in between."""

from __future__ import annotations

import fcntl
import threading
import time
from pathlib import Path

import pytest

from tests import scheduling
from tests.scheduling import UNIT_S, UNKNOWN_S, assign_groups, estimate, plan_groups, read_groups, turn


class Item:
    """What ``turn`` reads of a collected test: whether it is marked ``timing``."""

    def __init__(self, timing: bool) -> None:
        self.timing = timing

    def get_closest_marker(self, name: str) -> object | None:
        return object() if name == "timing" and self.timing else None


def another_worker_gets_in(run_directory: Path) -> bool:
    """Whether another worker's test could take its shared turn now (a separate open file, so the
    lock conflicts as another process's would)."""
    with (run_directory / "run.lock").open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(lock, fcntl.LOCK_UN)
        return True


def test_consecutive_timing_tests_keep_the_run_to_themselves_and_give_it_back_after_the_last(
    tmp_path: Path,
) -> None:
    first, second, other = Item(timing=True), Item(timing=True), Item(timing=False)
    with turn(first, tmp_path, second):  # type: ignore[arg-type]
        assert not another_worker_gets_in(tmp_path)
    # Between the two: still alone
    assert not another_worker_gets_in(tmp_path)
    with turn(second, tmp_path, other):  # type: ignore[arg-type]
        assert not another_worker_gets_in(tmp_path)
    assert another_worker_gets_in(tmp_path)
    # An ordinary test shares the run
    with turn(other, tmp_path, None):  # type: ignore[arg-type]
        assert another_worker_gets_in(tmp_path)
    assert another_worker_gets_in(tmp_path)


def test_a_timing_test_that_fails_still_gives_the_run_back(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), turn(Item(timing=True), tmp_path, None):  # type: ignore[arg-type]
        raise RuntimeError("failed")
    assert another_worker_gets_in(tmp_path)


def test_a_short_module_stays_one_group_in_its_collection_order() -> None:
    durations = {"tests/e2e/test_a.py::one": 3.0, "tests/e2e/test_a.py::two": 4.0}

    groups = plan_groups(["tests/e2e/test_a.py::one", "tests/e2e/test_a.py::two"], durations, group_s=100)

    assert [members for _, members in groups] == [["tests/e2e/test_a.py::one", "tests/e2e/test_a.py::two"]]


def test_a_long_module_is_cut_into_consecutive_groups_of_about_the_group_time() -> None:
    nodeids = [f"tests/e2e/test_long.py::test_{index}" for index in range(10)]
    durations = dict.fromkeys(nodeids, 30.0)

    groups = plan_groups(nodeids, durations, group_s=100)

    assert len(groups) == 3
    runs = sorted(members for _, members in groups)
    assert [nodeid for members in runs for nodeid in members] == nodeids
    assert [len(members) for members in runs] == [3, 4, 3]
    assert len({name for name, _ in groups}) == 3


def test_the_longest_groups_go_first() -> None:
    durations = {"tests/e2e/test_short.py::a": 2.0, "tests/e2e/test_long.py::a": 80.0}

    groups = plan_groups(["tests/e2e/test_short.py::a", "tests/e2e/test_long.py::a"], durations)

    assert [members for _, members in groups] == [
        ["tests/e2e/test_long.py::a"],
        ["tests/e2e/test_short.py::a"],
    ]


def test_a_test_without_a_measured_time_gets_an_estimate_by_its_layer() -> None:
    assert estimate("tests/unit/test_x.py::a", {}) == UNIT_S
    assert estimate("tests/e2e/test_x.py::a", {}) == UNKNOWN_S
    assert estimate("tests/e2e/test_x.py::a", {"tests/e2e/test_x.py::a": 12.5}) == 12.5


def test_a_module_kept_whole_is_one_group_however_long() -> None:
    nodeids = [f"tests/e2e/test_long.py::test_{index}" for index in range(10)]

    groups = plan_groups(nodeids, dict.fromkeys(nodeids, 30.0), group_s=100, whole={"tests/e2e/test_long.py"})

    assert [members for _, members in groups] == [nodeids]


# The tests of this module that ran in this worker's process, in order.
_ran_here: list[str] = []


def test_in_a_parallel_run_the_tests_of_a_group_run_in_order_on_one_worker() -> None:
    _ran_here.append("first")


def test_in_a_parallel_run_the_tests_of_a_group_run_in_order_on_one_worker_as_the_second(
    request: pytest.FixtureRequest,
) -> None:
    # Scheduled one by one, the two would mostly go to different workers: each worker is a process
    if not request.config.getoption("loadgroup", False):
        pytest.skip("not a `--dist loadgroup` run (make test is one)")
    assert _ran_here == ["first"]


class CollectedItem(Item):
    """What ``assign_groups`` reads and writes of a collected test."""

    def __init__(self, nodeid: str, timing: bool = False) -> None:
        super().__init__(timing)
        self.nodeid = nodeid


def test_the_timing_tests_go_first_however_short_and_the_rest_longest_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scheduling, "_timing_ahead", False)
    collected = [
        *(CollectedItem(f"tests/e2e/test_long.py::test_{i}") for i in range(30)),
        CollectedItem("tests/e2e/test_rates.py::test_a", timing=True),
        CollectedItem("tests/e2e/test_rates.py::test_b", timing=True),
        *(CollectedItem(f"tests/e2e/test_short.py::test_{i}") for i in range(3)),
    ]
    items = list(collected)
    assign_groups(items, tmp_path)  # type: ignore[arg-type]
    written = read_groups(tmp_path)
    assert set(written) == {item.nodeid for item in collected}
    groups = [written[item.nodeid] for item in items]
    assert groups[:2] == ["tests/e2e/test_rates.py#1"] * 2
    assert groups[2:] == sorted(groups[2:], key=lambda name: "test_short" in name)
    assert scheduling._timing_ahead


def test_with_timing_tests_ahead_another_test_starts_only_after_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a run whose timing tests are to go first, and another worker's test arriving first
    monkeypatch.setattr(scheduling, "_timing_ahead", True)
    entered: list[float] = []

    def other_worker() -> None:
        with turn(Item(timing=False), tmp_path):  # type: ignore[arg-type]
            entered.append(time.monotonic())

    thread = threading.Thread(target=other_worker)
    thread.start()
    time.sleep(0.3)
    # Then it waits; when the timing test comes, it runs, and the other test starts after it
    assert not entered
    with turn(Item(timing=True), tmp_path):  # type: ignore[arg-type]
        time.sleep(0.2)
        assert not entered
        ended = time.monotonic()
    thread.join(5)
    assert entered and entered[0] >= ended
    assert not scheduling._timing_ahead


def test_a_timing_test_that_never_comes_holds_the_others_back_only_so_long(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scheduling, "_timing_ahead", True)
    monkeypatch.setattr(scheduling, "TIMING_START_WAIT_S", 0.3)
    began = time.monotonic()
    with turn(Item(timing=False), tmp_path):  # type: ignore[arg-type]
        waited = time.monotonic() - began
    assert 0.3 <= waited < 2


def test_a_run_directory_without_the_groups_file_reads_as_no_groups(tmp_path: Path) -> None:
    assert read_groups(tmp_path) == {}

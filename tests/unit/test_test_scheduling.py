"""How the suite is shared out among the workers of ``make test``: modules kept together unless
they are long, long ones cut into consecutive groups, the longest groups first."""

from __future__ import annotations

from tests.scheduling import UNIT_S, UNKNOWN_S, estimate, plan_groups


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

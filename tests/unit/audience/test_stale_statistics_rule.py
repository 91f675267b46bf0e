"""When an audience table's planner statistics are stale: changes since the last analysis past a
share of its rows, at least a thousand, at most 200,000, counting rows the counters do not show yet."""

from __future__ import annotations

from services.segmenter.audience.statistics import needs_analyze


def test_a_small_table_needs_a_thousand_changes() -> None:
    assert not needs_analyze(estimated_rows=500, changed=999, written=0)
    assert needs_analyze(estimated_rows=500, changed=1_050, written=0)


def test_a_table_never_counted_is_treated_as_empty() -> None:
    assert not needs_analyze(estimated_rows=-1, changed=100)
    assert needs_analyze(estimated_rows=-1, changed=5_000)


def test_a_tenth_of_a_table_changed_makes_it_stale() -> None:
    assert not needs_analyze(estimated_rows=100_000, changed=10_000)
    assert needs_analyze(estimated_rows=100_000, changed=11_000)


def test_rows_just_written_count_before_the_counters_show_them() -> None:
    assert not needs_analyze(estimated_rows=100_000, changed=3_000, written=0)
    assert needs_analyze(estimated_rows=100_000, changed=3_000, written=10_000)


def test_a_huge_shared_table_is_stale_after_at_most_200000_changes() -> None:
    # A new tenant's million customers in a table of 50 million must not wait for 5 million changes.
    assert not needs_analyze(estimated_rows=50_000_000, changed=150_000)
    assert needs_analyze(estimated_rows=50_000_000, changed=200_000)

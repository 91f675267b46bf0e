"""When an audience table's planner statistics are stale: changes since the last analysis past a
share of its rows, at least a thousand, at most 200,000, counting rows the counters do not show yet,
including rows written in earlier rounds that a check found not enough yet."""

from __future__ import annotations

from services.segmenter.audience.statistics import (
    TableCounters,
    WritesSinceAnalysis,
    needs_analyze,
    never_counted,
)


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


def test_rows_this_process_wrote_since_the_last_analysis_count_while_the_counters_lag() -> None:
    # The counters still show none of an import's 12,000 rows; the rows written in the last round
    # alone (2,000) would not make the table stale, all of them do.
    assert not needs_analyze(estimated_rows=100_000, changed=0, written=2_000)
    assert needs_analyze(estimated_rows=100_000, changed=0, written=2_000, written_since_analysis=12_000)
    # Once the counters show them they are not counted twice.
    assert not needs_analyze(estimated_rows=100_000, changed=8_000, written=0, written_since_analysis=8_000)


def counters(analyses: int, name: str = "customers") -> TableCounters:
    return TableCounters(name=name, estimated_rows=100_000, changed=0, analyses=analyses)


def test_writes_since_analysis_add_up_across_checks_that_found_the_table_fresh() -> None:
    writes = WritesSinceAnalysis()
    writes.add({"customers": 6_000})
    assert writes.seen(counters(analyses=3), this_round=6_000) == 6_000
    writes.add({"customers": 6_000})
    assert writes.seen(counters(analyses=3), this_round=6_000) == 12_000


def test_an_analysis_by_someone_else_drops_the_rows_written_before_the_round() -> None:
    writes = WritesSinceAnalysis()
    writes.add({"customers": 6_000})
    assert writes.seen(counters(analyses=3), this_round=6_000) == 6_000
    writes.add({"customers": 500})
    # Autovacuum or another process analysed the table meanwhile: only this round's rows may be
    # missing from that analysis.
    assert writes.seen(counters(analyses=4), this_round=500) == 500


def test_an_analysis_by_this_process_drops_what_it_covered_and_keeps_what_came_during_it() -> None:
    writes = WritesSinceAnalysis()
    writes.add({"customers": 12_000})
    table = counters(analyses=3)
    covered = writes.seen(table, this_round=12_000)
    writes.add({"customers": 700})  # written while the analysis ran
    writes.analysed(table, covered)
    assert writes.seen(counters(analyses=4), this_round=700) == 700


def test_tables_are_counted_apart() -> None:
    writes = WritesSinceAnalysis()
    writes.add({"customers": 3_000, "appointments": 9_000})
    assert writes.seen(counters(analyses=1, name="customers"), this_round=3_000) == 3_000
    assert writes.seen(counters(analyses=1, name="appointments"), this_round=9_000) == 9_000


def test_a_table_holding_rows_the_counters_never_saw_analysed_is_stale() -> None:
    # A database copied from files, or counters reset by crash recovery: nothing counted the load.
    assert never_counted(estimated_rows=5_000_000, analyses=0)
    assert not never_counted(estimated_rows=5_000_000, analyses=1)
    assert not never_counted(estimated_rows=-1, analyses=0)
    assert not never_counted(estimated_rows=10, analyses=0)

"""When an audience table is worth a vacuum (its rows on pages not all-visible), and which tables
a vacuum request may name."""

from __future__ import annotations

from shared.audience_vacuum import (
    VACUUM_AFTER_PAGES,
    VACUUM_AFTER_ROWS,
    VacuumCounters,
    needs_vacuum,
    requested_tables,
)


def counters(
    *, pages: int = 1_000, all_visible: int = 1_000, changed: int = 0, vacuums: int = 1
) -> VacuumCounters:
    return VacuumCounters("appointments", pages, all_visible, changed, vacuums)


def test_ten_thousand_rows_changed_since_the_last_vacuum_are_worth_one_however_large_the_table() -> None:
    assert not needs_vacuum(counters(pages=10_000_000, all_visible=10_000_000, changed=VACUUM_AFTER_ROWS - 1))
    assert needs_vacuum(counters(pages=10_000_000, all_visible=10_000_000, changed=VACUUM_AFTER_ROWS))


def test_rows_just_written_count_before_the_counters_show_them() -> None:
    assert not needs_vacuum(counters(changed=2_000))
    assert needs_vacuum(counters(changed=2_000), written=8_000)


def test_a_table_the_counters_never_saw_vacuumed_is_judged_by_its_pages() -> None:
    # A database copied from files: the counters are empty, its pages were never made all-visible.
    assert needs_vacuum(counters(pages=50_000, all_visible=0, vacuums=0))
    assert not needs_vacuum(counters(pages=50_000, all_visible=50_000 - VACUUM_AFTER_PAGES + 1, vacuums=0))
    # Once vacuumed, the counters decide: pages left not all-visible by an old snapshot are not
    # vacuumed again and again.
    assert not needs_vacuum(counters(pages=50_000, all_visible=0, vacuums=1))


def test_a_request_names_audience_tables_only() -> None:
    assert requested_tables("customers,appointments") == {"customers", "appointments"}
    assert requested_tables(" customers , tenants,recipients; DROP TABLE tenants") == {"customers"}
    assert requested_tables("") == set()

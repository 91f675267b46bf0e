"""Every segment and filter on a fixed clock, with hand-computed expectations (DESIGN §5).

The tenant is in New York; clocks went forward on 2026-03-08, inside most windows below, so a
window computed as ``now − days × 24 h`` would be an hour off at the edges tested here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from audience_data import Appt, Dataset, seed, select_recipients

from services.segmenter.audience.model import Audience

NY = ZoneInfo("America/New_York")
SECOND = timedelta(seconds=1)


def local(y: int, mo: int, d: int, h: int = 12, mi: int = 0, s: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, tzinfo=NY)


NOW = local(2026, 3, 20)  # 12:00 EDT
THIRTY_DAYS_AGO = local(2026, 2, 18)  # 12:00 EST: 30 calendar days back, across the change
NINETY_DAYS_AGO = local(2025, 12, 20)
UPCOMING_NOW = local(2026, 3, 5)  # 12:00 EST
SEVEN_DAYS_AHEAD = local(2026, 3, 12)  # 12:00 EDT
LONG_AGO = local(2025, 6, 1)


def phone(n: int) -> str:
    return f"+1415555{n:04d}"


@dataclass
class Case:
    name: str
    audience: dict[str, object]
    data: Dataset
    expected: dict[str, str | None]  # customer -> appointment the recipient carries
    now: datetime = NOW


def one_each(*, field: str, instants: dict[str, datetime], status: str = "approved") -> Dataset:
    """One customer per instant, each with one appointment whose ``field`` is that instant."""
    appointments = []
    for name, instant in instants.items():
        values: dict[str, datetime] = {"starts_at": LONG_AGO, "created_at": LONG_AGO - timedelta(days=1)}
        values[field] = instant
        appointments.append(Appt(ext=f"a-{name}", customer=name, status=status, **values))
    return Dataset(customers={name: phone(i) for i, name in enumerate(instants)}, appointments=appointments)


CASES = [
    Case(
        "recent bookers include a booking exactly 30 local days ago and exclude one a second earlier",
        {"segment": "recent_bookers", "days": 30},
        one_each(
            field="created_at",
            instants={
                "at_edge": THIRTY_DAYS_AGO,
                "before_edge": THIRTY_DAYS_AGO - SECOND,
                "after_edge": THIRTY_DAYS_AGO + SECOND,
                "at_now": NOW,
                "after_now": NOW + SECOND,
            },
        ),
        {"at_edge": "a-at_edge", "after_edge": "a-after_edge", "at_now": "a-at_now"},
    ),
    Case(
        "recent bookers carry the latest booking in the window",
        {"segment": "recent_bookers", "days": 7},
        Dataset(
            customers={"ann": phone(1)},
            appointments=[
                Appt("old", "ann", starts_at=NOW + timedelta(days=3), created_at=NOW - timedelta(days=6)),
                Appt("new", "ann", starts_at=NOW + timedelta(days=1), created_at=NOW - timedelta(days=1)),
                Appt("outside", "ann", starts_at=NOW, created_at=NOW - timedelta(days=8)),
            ],
        ),
        {"ann": "new"},
    ),
    Case(
        "upcoming runs from now to the same local time seven days ahead across the clock change",
        {"segment": "upcoming", "days": 7},
        one_each(
            field="starts_at",
            instants={
                "at_now": UPCOMING_NOW,
                "before_now": UPCOMING_NOW - SECOND,
                "before_end": SEVEN_DAYS_AHEAD - SECOND,
                "at_end": SEVEN_DAYS_AHEAD,
                "naive_end": SEVEN_DAYS_AHEAD + timedelta(minutes=30),
            },
        ),
        {"at_now": "a-at_now", "before_end": "a-before_end"},
        now=UPCOMING_NOW,
    ),
    Case(
        "upcoming ignores cancelled, rejected and custom cancelled appointments and carries the next one",
        {"segment": "upcoming"},
        Dataset(
            customers={
                "cancelled": phone(1),
                "rejected": phone(2),
                "no_show": phone(3),
                "moved": phone(4),
                "two": phone(5),
            },
            custom_statuses={"no_show": True, "rescheduled": False},
            appointments=[
                Appt(
                    "c1",
                    "cancelled",
                    starts_at=NOW + timedelta(days=1),
                    created_at=LONG_AGO,
                    status="canceled",
                ),
                Appt(
                    "r1",
                    "rejected",
                    starts_at=NOW + timedelta(days=1),
                    created_at=LONG_AGO,
                    status="rejected",
                ),
                Appt(
                    "n1", "no_show", starts_at=NOW + timedelta(days=1), created_at=LONG_AGO, status="no_show"
                ),
                Appt(
                    "m1",
                    "moved",
                    starts_at=NOW + timedelta(days=2),
                    created_at=LONG_AGO,
                    status="rescheduled",
                ),
                Appt("t-later", "two", starts_at=NOW + timedelta(days=5), created_at=LONG_AGO),
                Appt(
                    "t-cancelled",
                    "two",
                    starts_at=NOW + timedelta(days=1),
                    created_at=LONG_AGO,
                    status="canceled",
                ),
                Appt(
                    "t-next", "two", starts_at=NOW + timedelta(days=2), created_at=LONG_AGO, status="pending"
                ),
            ],
        ),
        {"moved": "m1", "two": "t-next"},
    ),
    Case(
        "upcoming with a status filter counts the cancelled appointments it names",
        {"segment": "upcoming", "statuses": ["canceled"]},
        Dataset(
            customers={"cancelled": phone(1), "approved": phone(2)},
            appointments=[
                Appt(
                    "c1",
                    "cancelled",
                    starts_at=NOW + timedelta(days=1),
                    created_at=LONG_AGO,
                    status="canceled",
                ),
                Appt("a1", "approved", starts_at=NOW + timedelta(days=1), created_at=LONG_AGO),
            ],
        ),
        {"cancelled": "c1"},
    ),
    Case(
        "first time means exactly one appointment, of the matching ones when filtered",
        {"segment": "first_time"},
        Dataset(
            customers={"none": phone(1), "one": phone(2), "two": phone(3)},
            appointments=[
                Appt("o1", "one", starts_at=LONG_AGO, created_at=LONG_AGO),
                Appt("t1", "two", starts_at=LONG_AGO, created_at=LONG_AGO),
                Appt("t2", "two", starts_at=NOW, created_at=LONG_AGO),
            ],
        ),
        {"one": None},
    ),
    Case(
        "first time with a service filter looks at that service's appointments only",
        {"segment": "first_time", "service_ids": ["cut"]},
        Dataset(
            customers={"mixed": phone(1), "two_cuts": phone(2), "color_only": phone(3)},
            appointments=[
                Appt("m1", "mixed", starts_at=LONG_AGO, created_at=LONG_AGO, service="cut"),
                Appt("m2", "mixed", starts_at=LONG_AGO, created_at=LONG_AGO, service="color"),
                Appt("t1", "two_cuts", starts_at=LONG_AGO, created_at=LONG_AGO, service="cut"),
                Appt("t2", "two_cuts", starts_at=LONG_AGO, created_at=LONG_AGO, service="cut"),
                Appt("c1", "color_only", starts_at=LONG_AGO, created_at=LONG_AGO, service="color"),
            ],
        ),
        {"mixed": None},
    ),
    Case(
        "repeat needs three appointments by default",
        {"segment": "repeat"},
        Dataset(
            customers={"two": phone(1), "three": phone(2)},
            appointments=[Appt(f"t{i}", "two", starts_at=LONG_AGO, created_at=LONG_AGO) for i in range(2)]
            + [Appt(f"h{i}", "three", starts_at=LONG_AGO, created_at=LONG_AGO) for i in range(3)],
        ),
        {"three": None},
    ),
    Case(
        "repeat takes a custom minimum",
        {"segment": "repeat", "min_count": 2},
        Dataset(
            customers={"one": phone(1), "two": phone(2)},
            appointments=[Appt("o", "one", starts_at=LONG_AGO, created_at=LONG_AGO)]
            + [Appt(f"t{i}", "two", starts_at=LONG_AGO, created_at=LONG_AGO) for i in range(2)],
        ),
        {"two": None},
    ),
    Case(
        "lapsed needs the latest appointment strictly before 90 local days ago",
        {"segment": "lapsed"},
        one_each(
            field="starts_at",
            instants={
                "at_edge": NINETY_DAYS_AGO,
                "before_edge": NINETY_DAYS_AGO - SECOND,
                "after_edge": NINETY_DAYS_AGO + SECOND,
            },
        ),
        {"before_edge": None},
    ),
    Case(
        "lapsed excludes customers with anything since (even a cancelled upcoming one) and those with none",
        {"segment": "lapsed", "days": 180},
        Dataset(
            customers={"gone": phone(1), "coming_back": phone(2), "never": phone(3)},
            appointments=[
                Appt("g1", "gone", starts_at=local(2025, 1, 1), created_at=local(2025, 1, 1)),
                Appt("b1", "coming_back", starts_at=local(2025, 1, 1), created_at=local(2025, 1, 1)),
                Appt(
                    "b2", "coming_back", starts_at=NOW + timedelta(days=3), created_at=NOW, status="canceled"
                ),
            ],
        ),
        {"gone": None},
    ),
    Case(
        "cancelled recent takes cancelled-like statuses changed within the window",
        {"segment": "cancelled_recent"},
        Dataset(
            customers={
                "canceled": phone(1),
                "rejected": phone(2),
                "no_show": phone(3),
                "approved": phone(4),
                "too_early": phone(5),
                "at_edge": phone(6),
            },
            custom_statuses={"no_show": True},
            appointments=[
                Appt("c", "canceled", NOW, LONG_AGO, "canceled", NOW - timedelta(days=2)),
                Appt("r", "rejected", NOW, LONG_AGO, "rejected", NOW - timedelta(days=29)),
                Appt("n", "no_show", NOW, LONG_AGO, "no_show", NOW - timedelta(days=1)),
                Appt("a", "approved", NOW, LONG_AGO, "approved", NOW - timedelta(days=1)),
                Appt("e", "too_early", NOW, LONG_AGO, "canceled", THIRTY_DAYS_AGO - SECOND),
                Appt("x", "at_edge", NOW, LONG_AGO, "canceled", THIRTY_DAYS_AGO),
            ],
        ),
        {"canceled": None, "rejected": None, "no_show": None, "at_edge": None},
    ),
    Case(
        "all customers includes customers without appointments and without filters",
        {"segment": "all_customers"},
        Dataset(
            customers={"none": phone(1), "some": phone(2)},
            appointments=[Appt("s", "some", starts_at=LONG_AGO, created_at=LONG_AGO)],
        ),
        {"none": None, "some": None},
    ),
    Case(
        "all customers with a location filter needs a matching appointment",
        {"segment": "all_customers", "location_ids": ["north"]},
        Dataset(
            customers={"none": phone(1), "north": phone(2), "south": phone(3)},
            appointments=[
                Appt("n", "north", starts_at=LONG_AGO, created_at=LONG_AGO, location="north"),
                Appt("s", "south", starts_at=LONG_AGO, created_at=LONG_AGO, location="south"),
            ],
        ),
        {"north": None},
    ),
    Case(
        "all appointments excludes customers with zero appointments",
        {"segment": "all_appointments"},
        Dataset(
            customers={"none": phone(1), "some": phone(2)},
            appointments=[Appt("s", "some", starts_at=LONG_AGO, created_at=LONG_AGO, status="canceled")],
        ),
        {"some": None},
    ),
    Case(
        "min appointments counts only the appointments matching the other filters",
        {"segment": "all_appointments", "statuses": ["approved"], "min_appointments": 2},
        Dataset(
            customers={"two_approved": phone(1), "one_approved_one_pending": phone(2)},
            appointments=[
                Appt("a1", "two_approved", starts_at=LONG_AGO, created_at=LONG_AGO),
                Appt("a2", "two_approved", starts_at=LONG_AGO, created_at=LONG_AGO),
                Appt("b1", "one_approved_one_pending", starts_at=LONG_AGO, created_at=LONG_AGO),
                Appt(
                    "b2",
                    "one_approved_one_pending",
                    starts_at=LONG_AGO,
                    created_at=LONG_AGO,
                    status="pending",
                ),
            ],
        ),
        {"two_approved": None},
    ),
    Case(
        "min appointments alone keeps customers with at least that many",
        {"segment": "all_customers", "min_appointments": 2},
        Dataset(
            customers={"none": phone(1), "one": phone(2), "two": phone(3)},
            appointments=[
                Appt("o", "one", starts_at=LONG_AGO, created_at=LONG_AGO),
                Appt("t1", "two", starts_at=LONG_AGO, created_at=LONG_AGO),
                Appt("t2", "two", starts_at=LONG_AGO, created_at=LONG_AGO),
            ],
        ),
        {"two": None},
    ),
    Case(
        "service and location filters combine and the segment rule applies to matching appointments",
        {"segment": "recent_bookers", "service_ids": ["cut"], "location_ids": ["south"]},
        Dataset(
            customers={"match": phone(1), "wrong_place": phone(2), "old_match": phone(3)},
            appointments=[
                Appt("m", "match", NOW, NOW - timedelta(days=3), service="cut", location="south"),
                Appt("w", "wrong_place", NOW, NOW - timedelta(days=3), service="cut", location="north"),
                Appt("o1", "old_match", NOW, LONG_AGO, service="cut", location="south"),
                Appt("o2", "old_match", NOW, NOW - timedelta(days=3), service="color", location="south"),
            ],
        ),
        {"match": "m"},
    ),
    Case(
        "suppressed numbers and customers without a valid phone are left out",
        {"segment": "all_customers"},
        Dataset(
            customers={"ok": phone(1), "opted_out": phone(2), "no_phone": None, "bad_phone": "12"},
            suppressed=[phone(2)],
        ),
        {"ok": None},
    ),
    Case(
        "suppressed numbers stay when exclude_suppressed is off",
        {"segment": "all_customers", "exclude_suppressed": False},
        Dataset(customers={"ok": phone(1), "opted_out": phone(2)}, suppressed=[phone(2)]),
        {"ok": None, "opted_out": None},
    ),
    Case(
        "the same number in two formats is one recipient: the customer with the latest appointment",
        {"segment": "all_customers"},
        Dataset(
            customers={"older": "(415) 555-0001", "newer": "+1 415 555 0001", "nobody": "415.555.0001"},
            appointments=[
                Appt("o", "older", starts_at=local(2025, 1, 1), created_at=LONG_AGO),
                Appt("n", "newer", starts_at=local(2025, 2, 1), created_at=LONG_AGO),
            ],
        ),
        {"newer": None},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
async def test_segment_selects_the_hand_computed_recipients(pool: asyncpg.Pool, case: Case) -> None:
    # Given a tenant with the case's booking data
    tenant_id = await seed(pool, case.data)

    # When the audience is selected at the case's clock
    found = await select_recipients(pool, tenant_id, Audience.model_validate(case.audience), case.now)

    # Then exactly the expected customers are recipients, with the expected appointment
    assert {customer: appointment for customer, appointment in found.values()} == case.expected


async def test_a_phone_range_selects_only_the_numbers_inside_it(pool: asyncpg.Pool) -> None:
    # Given five customers with consecutive numbers
    tenant_id = await seed(pool, Dataset(customers={f"c{i}": phone(i) for i in range(5)}))

    # When the audience is selected for the range (number 1, number 3]
    found = await select_recipients(
        pool, tenant_id, Audience(), NOW, phone_after=phone(1), phone_upto=phone(3)
    )

    # Then only numbers 2 and 3 are selected
    assert sorted(found) == [phone(2), phone(3)]

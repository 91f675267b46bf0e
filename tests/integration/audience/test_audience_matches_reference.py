"""Property: on random small datasets the SQL selects what the plain-Python reference of DESIGN §5
selects, recipients, preview counts and sample alike, window edges and shared numbers included."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
from audience_data import Appt, Dataset, seed
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.segmenter.audience import reference
from services.segmenter.audience.model import DEFAULT_DAYS, Audience
from services.segmenter.audience.query import preview_counts_query, preview_sample_query, recipients_query
from services.segmenter.audience.windows import shift_calendar_days

ZONES = ["America/New_York", "Europe/London", "Australia/Sydney", "UTC"]
PHONES = ["+14155550001", "+14155550002", "+14155550003", "+447911123456", None]
STATUSES = ["approved", "pending", "canceled", "rejected", "no_show", "moved"]
SEGMENTS = list(Audience.model_fields["segment"].annotation.__args__)  # type: ignore[union-attr]
# Fewer than the numbers an example may have, so that the sample's limit is exercised too.
SAMPLE = 3


@dataclass
class Example:
    tz: str
    now: datetime
    audience: Audience
    customers: list[str | None]
    appointments: list[tuple[int, str | None, str | None, str, Offset, Offset, Offset]]
    suppressed: list[str]


# Either a window edge — (± calendar days in local time, then ± one second) — or any time in ±400 days.
Offset = tuple[int, int] | timedelta


def offsets() -> st.SearchStrategy[Offset]:
    edge = st.tuples(st.sampled_from([-180, -90, -30, -7, -1, 0, 1, 7, 30]), st.sampled_from([-1, 0, 1]))
    return st.one_of(edge, st.integers(-400 * 86_400, 400 * 86_400).map(lambda s: timedelta(seconds=s)))


@st.composite
def examples(draw: st.DrawFn) -> Example:
    segment = draw(st.sampled_from(SEGMENTS))
    audience: dict[str, object] = {"segment": segment, "exclude_suppressed": draw(st.booleans())}
    if segment in DEFAULT_DAYS and draw(st.booleans()):
        audience["days"] = draw(st.sampled_from([1, 7, 30, 90, 180]))
    if segment == "repeat" and draw(st.booleans()):
        audience["min_count"] = draw(st.integers(2, 4))
    if draw(st.integers(0, 3)) == 0:
        audience["service_ids"] = draw(st.lists(st.sampled_from(["cut", "color"]), min_size=1, unique=True))
    if draw(st.integers(0, 3)) == 0:
        audience["location_ids"] = draw(
            st.lists(st.sampled_from(["north", "south"]), min_size=1, unique=True)
        )
    if draw(st.integers(0, 3)) == 0:
        audience["statuses"] = draw(st.lists(st.sampled_from(STATUSES), min_size=1, max_size=3, unique=True))
    if draw(st.integers(0, 3)) == 0:
        audience["min_appointments"] = draw(st.integers(1, 3))
    customers = draw(st.lists(st.sampled_from(PHONES), min_size=0, max_size=7))
    appointments = []
    if customers:
        appointment = st.tuples(
            st.integers(0, len(customers) - 1),
            st.sampled_from(["cut", "color", None]),
            st.sampled_from(["north", "south", None]),
            st.sampled_from(STATUSES),
            offsets(),
            offsets(),
            offsets(),
        )
        appointments = draw(st.lists(appointment, max_size=14))
    return Example(
        tz=draw(st.sampled_from(ZONES)),
        now=draw(
            st.datetimes(datetime(2025, 1, 1), datetime(2027, 1, 1)).map(
                lambda d: d.replace(microsecond=0, tzinfo=UTC)
            )
        ),
        audience=Audience.model_validate(audience),
        customers=customers,
        appointments=appointments,
        suppressed=draw(st.lists(st.sampled_from([p for p in PHONES if p]), unique=True)),
    )


def instant(now: datetime, tz: str, offset: Offset) -> datetime:
    if isinstance(offset, timedelta):
        return now + offset
    days, seconds = offset
    return shift_calendar_days(now, days, tz) + timedelta(seconds=seconds)


async def check(pool: asyncpg.Pool, ex: Example) -> None:
    # Given the example's booking data in a fresh tenant
    appts = [
        Appt(
            ext=f"a{i}",
            customer=f"c{who}",
            service=service,
            location=location,
            status=status,
            starts_at=instant(ex.now, ex.tz, starts),
            created_at=instant(ex.now, ex.tz, created),
            status_changed_at=instant(ex.now, ex.tz, changed),
        )
        for i, (who, service, location, status, starts, created, changed) in enumerate(ex.appointments)
    ]
    data = Dataset(
        customers={f"c{i}": p for i, p in enumerate(ex.customers)},
        appointments=appts,
        custom_statuses={"no_show": True, "moved": False},
        suppressed=ex.suppressed,
    )
    tenant_id = await seed(pool, data, tz=ex.tz)
    ids = {
        row["external_id"]: row["id"]
        for row in await pool.fetch(
            "SELECT external_id, id FROM customers WHERE tenant_id = $1 UNION ALL"
            " SELECT external_id, id FROM appointments WHERE tenant_id = $1",
            tenant_id,
        )
    }
    booking = reference.Booking(
        customers=tuple(reference.Customer(ids[f"c{i}"], p) for i, p in enumerate(ex.customers)),
        appointments=tuple(
            reference.Appointment(
                id=ids[a.ext],
                customer_id=ids[a.customer],
                service=a.service,
                location=a.location,
                status=a.status,
                starts_at=a.starts_at,
                created_at=a.created_at,
                status_changed_at=a.status_changed_at or a.created_at,
            )
            for a in appts
        ),
        custom_cancelled=frozenset({"no_show"}),
        suppressed=frozenset(ex.suppressed),
    )

    # When the SQL selects the audience and counts the preview
    sql, params = recipients_query(ex.audience, tenant_id=tenant_id, now=ex.now, tz=ex.tz)
    selected = {
        r["phone_e164"]: (r["customer_id"], r["appointment_id"]) for r in await pool.fetch(sql, *params)
    }
    sql, params = preview_counts_query(ex.audience, tenant_id=tenant_id, now=ex.now, tz=ex.tz)
    counts = await pool.fetchrow(sql, *params)
    sql, params = preview_sample_query(ex.audience, tenant_id=tenant_id, now=ex.now, tz=ex.tz, limit=SAMPLE)
    sample = [
        (r["phone_e164"], r["customer_id"], r["last_starts_at"]) for r in await pool.fetch(sql, *params)
    ]

    # Then both agree with the reference
    expected = reference.recipients(ex.audience, booking, now=ex.now, tz=ex.tz)
    assert selected == {phone: (m.customer_id, m.appointment_id) for phone, m in expected.items()}
    want = reference.preview_counts(ex.audience, booking, now=ex.now, tz=ex.tz)
    assert counts["recipients"] == want.recipients
    assert counts["matched"] == want.matched
    assert counts["no_valid_phone"] == want.no_valid_phone
    assert counts["suppressed"] == want.suppressed
    assert counts["eligible"] - counts["recipients"] == want.duplicate_phone
    assert sample == [
        (phone, m.customer_id, m.last_starts_at) for phone, m in sorted(expected.items())[:SAMPLE]
    ]


async def test_sql_audience_equals_the_reference_definition_on_random_data(pool: asyncpg.Pool) -> None:
    loop = asyncio.get_running_loop()

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(examples())
    def property_holds(ex: Example) -> None:
        asyncio.run_coroutine_threadsafe(check(pool, ex), loop).result(timeout=60)

    await asyncio.to_thread(property_holds)

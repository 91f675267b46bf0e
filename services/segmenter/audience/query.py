"""The SQL that selects an audience (DESIGN §5), for the snapshot and for the preview.

The statement is composed from fixed fragments chosen by the validated audience; every value
(tenant, window edges, ids, statuses, phone range) is a parameter. The building block is the set
of *members*: the customers the segment and filters select, whatever their phone, with

- ``n`` / ``last_starts_at``: the number of matching appointments and the latest one's start
  (the trigger-maintained ``customers`` columns when no appointment is filtered out, else an
  aggregate over the matching appointments);
- ``appointment_id`` / ``hit_at``: the appointment that put a windowed segment's customer in it
  (recent_bookers: the latest booked in the window; upcoming: the next one; cancelled_recent: the
  latest cancelled in the window) and its instant.

Recipients are the members with a valid, not suppressed number, one per number: of customers
sharing one, the one whose latest matching appointment starts last (no appointment ranks last,
then the higher customer id).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from services.segmenter.audience.model import BUILTIN_CANCELLED, BUILTIN_STATUSES, Audience
from services.segmenter.audience.windows import segment_window
from shared.http import InputError


@dataclass
class _Params:
    values: list[Any] = field(default_factory=list)

    def add(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


_CANCELLED = (
    "(a.status = ANY ('{" + ",".join(BUILTIN_CANCELLED) + "}'::text[])"
    " OR a.status IN (SELECT st.name FROM appointment_statuses st"
    " WHERE st.tenant_id = $1 AND st.counts_as_cancelled))"
)


def _appointment_filter(audience: Audience, params: _Params) -> str:
    conditions = []
    if audience.service_ids:
        conditions.append(
            "a.service_id IN (SELECT sv.id FROM services sv"
            f" WHERE sv.tenant_id = $1 AND sv.external_id = ANY ({params.add(audience.service_ids)}::text[]))"
        )
    if audience.location_ids:
        conditions.append(
            "a.location_id IN (SELECT lo.id FROM locations lo"
            " WHERE lo.tenant_id = $1"
            f" AND lo.external_id = ANY ({params.add(audience.location_ids)}::text[]))"
        )
    if audience.statuses:
        conditions.append(f"a.status = ANY ({params.add(audience.statuses)}::text[])")
    return "".join(f" AND {condition}" for condition in conditions)


def _phone_range(column: str, params: _Params, phone_after: str | None, phone_upto: str | None) -> str:
    sql = ""
    if phone_after is not None:
        sql += f" AND {column} > {params.add(phone_after)}"
    if phone_upto is not None:
        sql += f" AND {column} <= {params.add(phone_upto)}"
    return sql


def _hit(audience: Audience, params: _Params, appointment_filter: str, now: datetime, tz: str) -> str | None:
    """The witness appointment of a windowed segment, one per customer, or None."""
    window = segment_window(audience, now=now, tz=tz)
    if window is None or audience.segment == "lapsed":
        return None
    start, end = params.add(window.start), params.add(window.end)
    if audience.segment == "recent_bookers":
        instant, condition, order = (
            "a.created_at",
            f"a.created_at >= {start} AND a.created_at <= {end}",
            "DESC",
        )
    elif audience.segment == "upcoming":
        instant, condition, order = "a.starts_at", f"a.starts_at >= {start} AND a.starts_at < {end}", "ASC"
        if not audience.statuses:
            condition += f" AND NOT {_CANCELLED}"
    else:
        instant = "a.status_changed_at"
        condition = f"a.status_changed_at >= {start} AND a.status_changed_at <= {end} AND {_CANCELLED}"
        order = "DESC"
    return (
        f"SELECT DISTINCT ON (a.customer_id) a.customer_id, a.id AS appointment_id, {instant} AS hit_at"
        f" FROM appointments a WHERE a.tenant_id = $1 AND {condition}{appointment_filter}"
        f" ORDER BY a.customer_id, {instant} {order}, a.id {order}"
    )


def members_sql(
    audience: Audience,
    params: _Params,
    *,
    now: datetime,
    tz: str,
    phone_after: str | None = None,
    phone_upto: str | None = None,
) -> str:
    """customer_id, appointment_id, phone_e164, phone_shared, n, last_starts_at, hit_at of every member.

    ``params`` must already hold the tenant id as ``$1``.
    """
    appointment_filter = _appointment_filter(audience, params)
    phone_range = _phone_range("c.phone_e164", params, phone_after, phone_upto)
    joins = ""
    if audience.filters_appointments:
        # The stats of the matching appointments only; a phone range narrows the aggregate to the
        # customers of that range so a snapshot chunk does not aggregate the whole tenant.
        range_join = ""
        if phone_range:
            range_join = " JOIN customers rc ON rc.id = a.customer_id" + _phone_range(
                "rc.phone_e164", params, phone_after, phone_upto
            )
        joins += (
            " JOIN (SELECT a.customer_id, count(*)::integer AS n, max(a.starts_at) AS last_starts_at"
            f" FROM appointments a{range_join} WHERE a.tenant_id = $1{appointment_filter}"
            " GROUP BY a.customer_id) s ON s.customer_id = c.id"
        )
        n, last = "s.n", "s.last_starts_at"
    else:
        n, last = "c.appointment_count", "c.last_starts_at"

    hit = _hit(audience, params, appointment_filter, now, tz)
    if hit is not None:
        joins += f" JOIN ({hit}) h ON h.customer_id = c.id"
        hit_at = "h.hit_at"
        appointment = "h.appointment_id" if audience.provides_appointment else "NULL::bigint"
    else:
        hit_at, appointment = "NULL::timestamptz", "NULL::bigint"

    conditions = []
    segment = audience.segment
    if segment == "first_time":
        conditions.append(f"{n} = 1")
    elif segment == "repeat":
        conditions.append(f"{n} >= {params.add(audience.repeat_min)}")
    elif segment == "lapsed":
        window = segment_window(audience, now=now, tz=tz)
        assert window is not None
        conditions.append(f"{n} >= 1 AND {last} < {params.add(window.start)}")
    elif segment == "all_appointments" or (segment == "all_customers" and audience.has_appointment_filters):
        conditions.append(f"{n} >= 1")
    if audience.min_appointments is not None:
        conditions.append(f"{n} >= {params.add(audience.min_appointments)}")
    where = "".join(f" AND {condition}" for condition in conditions)

    return (
        f"SELECT c.id AS customer_id, {appointment} AS appointment_id, c.phone_e164, c.phone_shared,"
        f" {n} AS n, {last} AS last_starts_at, {hit_at} AS hit_at"
        f" FROM customers c{joins}"
        f" WHERE c.tenant_id = $1{where}{phone_range}"
    )


_SUPPRESSED = (
    "EXISTS (SELECT 1 FROM suppressions sp WHERE sp.tenant_id = $1 AND sp.phone_e164 = m.phone_e164)"
)


def _suppressed(audience: Audience) -> str:
    return _SUPPRESSED if audience.exclude_suppressed else "false"


def recipients_query(
    audience: Audience,
    *,
    tenant_id: UUID,
    now: datetime,
    tz: str,
    phone_after: str | None = None,
    phone_upto: str | None = None,
) -> tuple[str, list[Any]]:
    """SELECT customer_id, appointment_id, phone_e164 — one row per phone, in
    ``phone_after < phone_e164 <= phone_upto`` when given."""
    params = _Params()
    params.add(tenant_id)
    members = members_sql(audience, params, now=now, tz=tz, phone_after=phone_after, phone_upto=phone_upto)
    sql = (
        "SELECT DISTINCT ON (m.phone_e164) m.customer_id, m.appointment_id, m.phone_e164"
        f" FROM ({members}) m"
        f" WHERE m.phone_e164 IS NOT NULL AND NOT {_suppressed(audience)}"
        " ORDER BY m.phone_e164, m.last_starts_at DESC NULLS LAST, m.customer_id DESC"
    )
    return sql, params.values


def preview_counts_query(
    audience: Audience, *, tenant_id: UUID, now: datetime, tz: str
) -> tuple[str, list[Any]]:
    """One row: matched, no_valid_phone, suppressed, eligible and recipients.

    Numbers no other customer of the tenant has are counted as they are; only the few shared
    numbers are counted distinct, so a million-customer audience needs no sort.
    """
    params = _Params()
    params.add(tenant_id)
    members = members_sql(audience, params, now=now, tz=tz)
    suppressed = _suppressed(audience)
    # A join, not EXISTS in the select list: that would probe the suppression list once per member.
    join, flag = "", "false"
    if audience.exclude_suppressed:
        join = " LEFT JOIN suppressions sp ON sp.tenant_id = $1 AND sp.phone_e164 = m.phone_e164"
        flag = "sp.phone_e164 IS NOT NULL"
    sql = (
        "SELECT count(*)::bigint AS matched,"
        " count(*) FILTER (WHERE x.phone_e164 IS NULL)::bigint AS no_valid_phone,"
        " count(*) FILTER (WHERE x.phone_e164 IS NOT NULL AND x.suppressed)::bigint AS suppressed,"
        " count(*) FILTER (WHERE x.phone_e164 IS NOT NULL AND NOT x.suppressed)::bigint AS eligible,"
        " count(*) FILTER"
        " (WHERE x.phone_e164 IS NOT NULL AND NOT x.suppressed AND NOT x.phone_shared)::bigint"
        " + (SELECT count(DISTINCT m.phone_e164)"
        f" FROM ({members}) m WHERE m.phone_shared AND m.phone_e164 IS NOT NULL AND NOT {suppressed})::bigint"
        " AS recipients"
        f" FROM (SELECT m.phone_e164, m.phone_shared, {flag} AS suppressed FROM ({members}) m{join}) x"
    )
    return sql, params.values


def preview_sample_query(
    audience: Audience, *, tenant_id: UUID, now: datetime, tz: str, limit: int
) -> tuple[str, list[Any]]:
    """Up to ``limit`` recipients in phone order, with what the preview shows of each."""
    params = _Params()
    params.add(tenant_id)
    members = members_sql(audience, params, now=now, tz=tz)
    sql = (
        "SELECT r.customer_id, r.phone_e164, r.n, r.last_starts_at, r.hit_at, cu.first_name, cu.last_name,"
        " ap.external_id AS appointment_external_id, ap.starts_at AS appointment_starts_at"
        " FROM (SELECT DISTINCT ON (m.phone_e164) m.*"
        f" FROM ({members}) m WHERE m.phone_e164 IS NOT NULL AND NOT {_suppressed(audience)}"
        " ORDER BY m.phone_e164, m.last_starts_at DESC NULLS LAST, m.customer_id DESC) r"
        " JOIN customers cu ON cu.id = r.customer_id"
        " LEFT JOIN appointments ap ON ap.id = r.appointment_id"
        f" ORDER BY r.phone_e164 LIMIT {params.add(limit)}"
    )
    return sql, params.values


_UNKNOWN_SERVICES = """
SELECT array_agg(wanted ORDER BY wanted)
FROM unnest($2::text[]) AS wanted
WHERE NOT EXISTS (SELECT 1 FROM services WHERE tenant_id = $1 AND external_id = wanted)
"""

_UNKNOWN_LOCATIONS = """
SELECT array_agg(wanted ORDER BY wanted)
FROM unnest($2::text[]) AS wanted
WHERE NOT EXISTS (SELECT 1 FROM locations WHERE tenant_id = $1 AND external_id = wanted)
"""

_UNKNOWN_STATUSES = """
SELECT array_agg(wanted ORDER BY wanted)
FROM unnest($2::text[]) AS wanted
WHERE wanted <> ALL ($3::text[])
  AND NOT EXISTS (SELECT 1 FROM appointment_statuses WHERE tenant_id = $1 AND name = wanted)
"""


async def validate_audience(
    conn: asyncpg.Connection, *, tenant_id: UUID, audience: Audience, field_prefix: str = "audience."
) -> None:
    """Raise InputError naming each filter that refers to something the tenant does not have."""
    errors: list[dict[str, Any]] = []
    if audience.service_ids:
        unknown = await conn.fetchval(_UNKNOWN_SERVICES, tenant_id, audience.service_ids)
        if unknown:
            errors.append(
                {
                    "field": f"{field_prefix}service_ids",
                    "message": f"unknown service ids: {', '.join(unknown)}",
                }
            )
    if audience.location_ids:
        unknown = await conn.fetchval(_UNKNOWN_LOCATIONS, tenant_id, audience.location_ids)
        if unknown:
            errors.append(
                {
                    "field": f"{field_prefix}location_ids",
                    "message": f"unknown location ids: {', '.join(unknown)}",
                }
            )
    if audience.statuses:
        unknown = await conn.fetchval(_UNKNOWN_STATUSES, tenant_id, audience.statuses, list(BUILTIN_STATUSES))
        if unknown:
            errors.append(
                {"field": f"{field_prefix}statuses", "message": f"unknown statuses: {', '.join(unknown)}"}
            )
    if errors:
        raise InputError(errors)

"""The SQL that selects an audience (DESIGN §5), for the snapshot and for the preview.

Statements are composed from fixed fragments chosen by the validated audience; every value
(tenant, window edges, ids, statuses, phone range) is a parameter. A *member* is a customer the
segment and filters select, whatever its phone. Members are found in one of two ways:

- with no window and no appointment filtered out, by a condition on the trigger-maintained facts
  of ``customers`` (appointment count, latest start), read from narrow indexes;
- otherwise as the set ``members`` of customer ids, read once per statement from a covering index
  of ``appointments``: the customers with an appointment in the window, or an aggregate of each
  customer's matching appointments. An appointment's customer is always one of its tenant's
  (the booking service resolves customers within the tenant), so the ids need no check against
  ``customers``.

Recipients are the members with a valid, not suppressed number, one per number: a member whose
number no other customer of the tenant has, or, of the members sharing a number, the one whose
latest matching appointment starts last (no appointment ranks last, then the higher customer id).
The preview counts them without reading most members' rows: members are counted as they come, and
only the few customers without a valid number, with a suppressed one or with a shared one (the
*exceptions*) are matched with the members to count the exclusions.
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


# An array, not an IN list, so that a window on status_changed_at reads only the cancelled
# statuses' ranges of the (tenant, status, status_changed_at) index.
_CANCELLED_STATUSES = (
    "('{" + ",".join(BUILTIN_CANCELLED) + "}'::text[] || ARRAY(SELECT st.name FROM appointment_statuses st"
    " WHERE st.tenant_id = $1 AND st.counts_as_cancelled))"
)

_NOT_SUPPRESSED = (
    " AND NOT EXISTS (SELECT 1 FROM suppressions sp WHERE sp.tenant_id = $1 AND sp.phone_e164 = c.phone_e164)"
)


def _among(column: str, ids: str, count: int) -> str:
    """``column`` is one of the ``count`` ids the subquery ``ids`` selects."""
    if count == 1:
        # One id as a scalar: the index on (tenant, id, customer) then yields the appointments in
        # customer order, and they are counted per customer without hashing.
        return f"{column} = ({ids})"
    # An array rather than IN (subquery): one index scan for all the ids, and an estimate of the
    # matches that lets the planner size the aggregate.
    return f"{column} = ANY (ARRAY({ids}))"


def _appointment_filter(audience: Audience, params: _Params) -> str:
    conditions = []
    if audience.service_ids:
        services = (
            "SELECT sv.id FROM services sv"
            f" WHERE sv.tenant_id = $1 AND sv.external_id = ANY ({params.add(audience.service_ids)}::text[])"
        )
        conditions.append(_among("a.service_id", services, len(audience.service_ids)))
    if audience.location_ids:
        locations = (
            "SELECT lo.id FROM locations lo"
            f" WHERE lo.tenant_id = $1 AND lo.external_id = ANY ({params.add(audience.location_ids)}::text[])"
        )
        conditions.append(_among("a.location_id", locations, len(audience.location_ids)))
    if audience.statuses:
        conditions.append(f"a.status = ANY ({params.add(audience.statuses)}::text[])")
    return "".join(f" AND {condition}" for condition in conditions)


def _phone_range(params: _Params, phone_after: str | None, phone_upto: str | None) -> str:
    sql = ""
    if phone_after is not None:
        sql += f" AND c.phone_e164 > {params.add(phone_after)}"
    if phone_upto is not None:
        sql += f" AND c.phone_e164 <= {params.add(phone_upto)}"
    return sql


@dataclass(frozen=True)
class _Hit:
    """What puts a customer in a windowed segment: an appointment ``a`` meeting ``condition``; of
    several, the one first in ``instant`` ``order`` (then id) is the one the recipient carries."""

    condition: str
    instant: str
    order: str


def _hit(audience: Audience, params: _Params, *, now: datetime, tz: str) -> _Hit | None:
    window = segment_window(audience, now=now, tz=tz)
    if window is None or audience.segment == "lapsed":
        return None
    start, end = params.add(window.start), params.add(window.end)
    if audience.segment == "recent_bookers":
        return _Hit(f"a.created_at >= {start} AND a.created_at <= {end}", "a.created_at", "DESC")
    if audience.segment == "upcoming":
        condition = f"a.starts_at >= {start} AND a.starts_at < {end}"
        if not audience.statuses:
            condition += f" AND a.status <> ALL {_CANCELLED_STATUSES}"
        return _Hit(condition, "a.starts_at", "ASC")
    return _Hit(
        f"a.status = ANY {_CANCELLED_STATUSES}"
        f" AND a.status_changed_at >= {start} AND a.status_changed_at <= {end}",
        "a.status_changed_at",
        "DESC",
    )


def _count_conditions(
    audience: Audience, params: _Params, *, now: datetime, tz: str, n: str, last: str, grouped: bool
) -> list[str]:
    """The conditions on a member's matching appointments: ``n`` of them, the latest starting at
    ``last``. ``grouped``: the customer has at least one, being a group of them."""
    conditions = []
    segment = audience.segment
    if segment == "first_time":
        conditions.append(f"{n} = 1")
    elif segment == "repeat":
        conditions.append(f"{n} >= {params.add(audience.repeat_min)}")
    elif segment == "lapsed":
        window = segment_window(audience, now=now, tz=tz)
        assert window is not None
        # No appointment leaves last NULL, which is not before anything.
        conditions.append(f"{last} < {params.add(window.start)}")
    elif segment == "all_appointments" and not grouped:
        conditions.append(f"{n} >= 1")
    if audience.min_appointments is not None:
        conditions.append(f"{n} >= {params.add(audience.min_appointments)}")
    return conditions


@dataclass(frozen=True)
class _Definition:
    """An audience as SQL fragments around a customer row ``c``."""

    # SELECT customer_id[, last_starts_at | appointment_id], one row per member; None when
    # ``condition`` alone selects the members.
    members: str | None
    # Condition on the customer row's facts ("true" when the members set decides).
    condition: str
    # The matching appointments' filter (on ``a``), when some do not count.
    matching: str
    hit: _Hit | None
    # Whether ``members`` carries the latest start of each member's matching appointments.
    members_last: bool = False
    # Whether ``members`` carries the appointment that put each member in the windowed segment.
    members_appointment: bool = False

    def is_member(self) -> str:
        if self.members is None:
            return self.condition
        return "c.id IN (SELECT m.customer_id FROM members m)"

    def members_join(self) -> str:
        return "" if self.members is None else " JOIN members m ON m.customer_id = c.id"

    def with_members(self) -> str:
        return "" if self.members is None else f"members AS MATERIALIZED ({self.members}), "

    def stats(self, customer: str) -> str | None:
        """LATERAL n and last_starts_at of ``customer``'s matching appointments, when not every
        appointment matches (otherwise they are the customer's facts)."""
        if not self.matching:
            return None
        return (
            "SELECT count(*)::integer AS n, max(a.starts_at) AS last_starts_at FROM appointments a"
            f" WHERE a.tenant_id = $1 AND a.customer_id = {customer}{self.matching}"
        )

    def latest_start(self) -> tuple[str, str]:
        """The joins that make a member ``c``'s latest matching start available, and its expression."""
        stats = self.stats("c.id")
        if stats is None:
            return self.members_join(), "c.last_starts_at"
        if self.members_last:
            return self.members_join(), "m.last_starts_at"
        return f"{self.members_join()} CROSS JOIN LATERAL ({stats}) s", "s.last_starts_at"

    def witness(self, customer: str) -> str | None:
        """LATERAL appointment_id and hit_at of the appointment that put ``customer`` in a windowed
        segment."""
        if self.hit is None:
            return None
        hit = self.hit
        return (
            f"SELECT a.id AS appointment_id, {hit.instant} AS hit_at FROM appointments a"
            f" WHERE a.tenant_id = $1 AND a.customer_id = {customer} AND {hit.condition}{self.matching}"
            f" ORDER BY {hit.instant} {hit.order}, a.id {hit.order} LIMIT 1"
        )


def _in_window(hit: _Hit, where: str, *, carry_appointment: bool) -> str:
    if not carry_appointment:
        return f"SELECT DISTINCT a.customer_id FROM appointments a WHERE {where}"
    # The appointment each member's recipient carries, for all members in one pass over the
    # window: looked up recipient by recipient, it would cost a visit to each of their appointments.
    return (
        f"SELECT DISTINCT ON (a.customer_id) a.customer_id, a.id AS appointment_id FROM appointments a"
        f" WHERE {where} ORDER BY a.customer_id, {hit.instant} {hit.order}, a.id {hit.order}"
    )


def _definition(
    audience: Audience, params: _Params, *, now: datetime, tz: str, carry_appointment: bool = False
) -> _Definition:
    """``params`` must already hold the tenant id as ``$1``. ``carry_appointment``: the members
    of a windowed segment come with the appointment that put them in it."""
    matching = _appointment_filter(audience, params)
    hit = _hit(audience, params, now=now, tz=tz)
    if not matching:
        conditions = _count_conditions(
            audience, params, now=now, tz=tz, n="c.appointment_count", last="c.last_starts_at", grouped=False
        )
        if hit is None:
            return _Definition(None, " AND ".join(conditions) or "true", matching, hit)
        where = f"a.tenant_id = $1 AND {hit.condition}"
        if conditions:
            where += (
                " AND a.customer_id IN (SELECT c.id FROM customers c"
                f" WHERE c.tenant_id = $1 AND {' AND '.join(conditions)})"
            )
        members = _in_window(hit, where, carry_appointment=carry_appointment)
        return _Definition(members, "true", matching, hit, members_appointment=carry_appointment)

    having = _count_conditions(
        audience, params, now=now, tz=tz, n="count(*)", last="max(a.starts_at)", grouped=True
    )
    grouped = (
        "SELECT a.customer_id, max(a.starts_at) AS last_starts_at FROM appointments a"
        f" WHERE a.tenant_id = $1{matching} GROUP BY a.customer_id"
    )
    if having:
        grouped += f" HAVING {' AND '.join(having)}"
    if hit is None:
        return _Definition(grouped, "true", matching, hit, members_last=True)
    where = f"a.tenant_id = $1 AND {hit.condition}{matching}"
    if having:
        where += f" AND a.customer_id IN (SELECT g.customer_id FROM ({grouped}) g)"
    members = _in_window(hit, where, carry_appointment=carry_appointment)
    return _Definition(members, "true", matching, hit, members_appointment=carry_appointment)


def _recipients(
    audience: Audience,
    definition: _Definition,
    params: _Params,
    phone_after: str | None,
    phone_upto: str | None,
) -> tuple[str, str]:
    """The WITH list and the SELECT of the recipients' customer_id and phone_e164 (as ``c``).

    Membership is tested inside an OR, where it stays a hashed lookup instead of becoming a join:
    the customers are then read in phone order, so the sample stops after its first rows.
    """
    phone_range = _phone_range(params, phone_after, phone_upto)
    joins, last = definition.latest_start()
    winners = (
        f"winners AS (SELECT DISTINCT ON (c.phone_e164) c.id FROM customers c{joins}"
        f" WHERE c.tenant_id = $1 AND c.phone_shared AND c.phone_e164 IS NOT NULL{phone_range}"
        f" AND {definition.condition}"
        f" ORDER BY c.phone_e164, {last} DESC NULLS LAST, c.id DESC)"
    )
    not_suppressed = _NOT_SUPPRESSED if audience.exclude_suppressed else ""
    select = (
        "SELECT c.id AS customer_id, c.phone_e164 FROM customers c"
        f" WHERE c.tenant_id = $1 AND c.phone_e164 IS NOT NULL{phone_range}{not_suppressed}"
        f" AND ((NOT c.phone_shared AND {definition.is_member()}) OR c.id IN (SELECT w.id FROM winners w))"
    )
    return f"WITH {definition.with_members()}{winners}", select


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
    definition = _definition(
        audience, params, now=now, tz=tz, carry_appointment=audience.provides_appointment
    )
    with_list, select = _recipients(audience, definition, params, phone_after, phone_upto)
    appointment, joins = "NULL::bigint", ""
    if definition.members_appointment:
        appointment, joins = "h.appointment_id", " JOIN members h ON h.customer_id = r.customer_id"
    sql = (
        f"{with_list} SELECT r.customer_id, {appointment} AS appointment_id, r.phone_e164"
        f" FROM ({select}) r{joins}"
    )
    return sql, params.values


# What a shortcode's value is made of, per recipient of an audience (business_name is the
# tenant's): the columns ``render_values_query`` reads, by the names RecipientData uses.
SHORTCODE_COLUMNS: dict[str, tuple[str, ...]] = {
    "customer_first_name": ("first_name",),
    "customer_last_name": ("last_name",),
    "customer_full_name": ("first_name", "last_name"),
    "customer_name": ("first_name", "last_name"),
    "customer_email": ("email",),
    "customer_phone": ("phone_e164",),
    "appointment_date": ("appointment_starts_at",),
    "appointment_time": ("appointment_starts_at",),
    "appointment_datetime": ("appointment_starts_at",),
    "service_name": ("service_name",),
    "location_name": ("location_name",),
    "location_address": ("location_address",),
    "staff_name": ("staff_name",),
    "appointment_status": ("appointment_status",),
}
_VALUE_COLUMNS = {
    "first_name": "cu.first_name",
    "last_name": "cu.last_name",
    "email": "cu.email",
    "phone_e164": "rc.phone_e164",
    "appointment_starts_at": "a.starts_at",
    "service_name": "sv.name",
    "location_name": "l.name",
    "location_address": "l.address",
    "staff_name": "st.name",
    "appointment_status": "a.status",
}


def render_values_query(
    audience: Audience, *, tenant_id: UUID, now: datetime, tz: str, shortcodes: set[str]
) -> tuple[str, list[Any]]:
    """The distinct values the shortcodes take over the audience's recipients, each with how many
    recipients have it (column ``n``): what a template renders to for each of them, without
    reading every recipient. Columns are named as ``RecipientData``'s fields."""
    audience_sql, params = recipients_query(audience, tenant_id=tenant_id, now=now, tz=tz)
    names = sorted({column for code in shortcodes for column in SHORTCODE_COLUMNS.get(code, ())})
    selected = "".join(f"{_VALUE_COLUMNS[name]} AS {name}, " for name in names)
    group = f" GROUP BY {', '.join(_VALUE_COLUMNS[name] for name in names)}" if names else ""
    sql = (
        f"SELECT {selected}count(*) AS n FROM ({audience_sql}) rc"
        " LEFT JOIN customers cu ON cu.id = rc.customer_id AND cu.tenant_id = $1"
        " LEFT JOIN appointments a ON a.id = rc.appointment_id AND a.tenant_id = $1"
        " LEFT JOIN services sv ON sv.id = a.service_id"
        " LEFT JOIN locations l ON l.id = a.location_id"
        f" LEFT JOIN staff st ON st.id = a.staff_id{group}"
    )
    return sql, params


def _exceptions(audience: Audience) -> str:
    """The customers whose exclusion is counted, once each by its first reason: no valid phone, a
    suppressed one, a shared one; with the facts the members' condition may test."""
    columns = "c.id, c.phone_e164, c.appointment_count, c.last_starts_at"
    parts = [
        f"SELECT 'no_phone' AS kind, {columns} FROM customers c"
        " WHERE c.tenant_id = $1 AND c.phone_e164 IS NULL"
    ]
    not_suppressed = ""
    if audience.exclude_suppressed:
        parts.append(
            f"SELECT 'suppressed', {columns} FROM suppressions sp"
            " JOIN customers c ON c.tenant_id = sp.tenant_id AND c.phone_e164 = sp.phone_e164"
            " WHERE sp.tenant_id = $1"
        )
        not_suppressed = _NOT_SUPPRESSED
    parts.append(
        f"SELECT 'shared', {columns} FROM customers c"
        f" WHERE c.tenant_id = $1 AND c.phone_shared AND c.phone_e164 IS NOT NULL{not_suppressed}"
    )
    return " UNION ALL ".join(parts)


def preview_counts_query(
    audience: Audience, *, tenant_id: UUID, now: datetime, tz: str
) -> tuple[str, list[Any]]:
    """One row: matched, no_valid_phone, suppressed, eligible and recipients.

    Eligible members are the matched ones less those without a valid or with a suppressed number;
    recipients are the eligible ones less the members sharing a number, plus the numbers they share.
    """
    params = _Params()
    params.add(tenant_id)
    definition = _definition(audience, params, now=now, tz=tz)
    if definition.members is None:
        with_list, join = "", ""
        matched = f"SELECT count(*) FROM customers c WHERE c.tenant_id = $1 AND {definition.condition}"
    else:
        with_list = f"WITH members AS MATERIALIZED ({definition.members}) "
        matched = "SELECT count(*) FROM members"
        join = definition.members_join()
    sql = (
        f"{with_list}SELECT matched, no_valid_phone, suppressed,"
        " matched - no_valid_phone - suppressed AS eligible,"
        " matched - no_valid_phone - suppressed - shared_members + shared_numbers AS recipients"
        f" FROM (SELECT ({matched})::bigint AS matched,"
        " count(*) FILTER (WHERE c.kind = 'no_phone')::bigint AS no_valid_phone,"
        " count(*) FILTER (WHERE c.kind = 'suppressed')::bigint AS suppressed,"
        " count(*) FILTER (WHERE c.kind = 'shared')::bigint AS shared_members,"
        " count(DISTINCT c.phone_e164) FILTER (WHERE c.kind = 'shared')::bigint AS shared_numbers"
        f" FROM ({_exceptions(audience)}) c{join} WHERE {definition.condition}) counts"
    )
    return sql, params.values


def frequency_capped_query(
    audience: Audience, *, tenant_id: UUID, now: datetime, tz: str, messages: int, days: int
) -> tuple[str, list[Any]]:
    """One row: how many of the recipients (one per number, as the snapshot makes them) have a
    number that already had ``messages`` marketing messages in the ``days`` days before ``now``,
    so the claim would skip them as ``frequency_capped``. The entries count by the claim's rule
    (``CLAIM`` in services/sender/queries.py): younger than the window, and not of a row that
    ended without a message."""
    sql, values = recipients_query(audience, tenant_id=tenant_id, now=now, tz=tz)
    params = _Params(values)
    since = f"{params.add(now)}::timestamptz - make_interval(days => {params.add(days)})"
    limit = params.add(messages)
    capped = (
        f"SELECT count(*)::bigint AS capped FROM ({sql}) r"
        " JOIN contact_frequency f ON f.tenant_id = $1 AND f.phone_e164 = r.phone_e164"
        " WHERE (SELECT count(*) FROM unnest(f.recipient_ids, f.claimed_at) AS e(id, at)"
        f"        WHERE e.at > {since}"
        "          AND NOT EXISTS (SELECT 1 FROM recipients x"
        "                          WHERE x.id = e.id AND x.twilio_sid IS NULL"
        "                            AND x.state IN ('failed', 'cancelled', 'suppressed', 'skipped')))"
        f" >= {limit}"
    )
    return capped, params.values


def preview_sample_query(
    audience: Audience, *, tenant_id: UUID, now: datetime, tz: str, limit: int
) -> tuple[str, list[Any]]:
    """Up to ``limit`` recipients in phone order, with what the preview shows of each."""
    params = _Params()
    params.add(tenant_id)
    definition = _definition(audience, params, now=now, tz=tz)
    with_list, select = _recipients(audience, definition, params, None, None)
    joins = ""
    n, last = "cu.appointment_count", "cu.last_starts_at"
    stats = definition.stats("r.customer_id")
    if stats is not None:
        joins += f" CROSS JOIN LATERAL ({stats}) s"
        n, last = "s.n", "s.last_starts_at"
    hit_at, appointment_id, appointment_starts_at = "NULL::timestamptz", "NULL::text", "NULL::timestamptz"
    names = "NULL::text AS service_name, NULL::text AS location_name, NULL::text AS location_address,"
    names += " NULL::text AS staff_name"
    witness = definition.witness("r.customer_id")
    if witness is not None:
        joins += f" LEFT JOIN LATERAL ({witness}) h ON true"
        hit_at = "h.hit_at"
        if audience.provides_appointment:
            joins += (
                " LEFT JOIN appointments ap ON ap.id = h.appointment_id"
                " LEFT JOIN services sv ON sv.id = ap.service_id"
                " LEFT JOIN locations lo ON lo.id = ap.location_id"
                " LEFT JOIN staff st ON st.id = ap.staff_id"
            )
            appointment_id, appointment_starts_at = "ap.external_id", "ap.starts_at"
            names = "sv.name AS service_name, lo.name AS location_name, lo.address AS location_address,"
            names += " st.name AS staff_name"
    sql = (
        f"{with_list} SELECT r.customer_id, r.phone_e164, {n} AS n, {last} AS last_starts_at,"
        f" {hit_at} AS hit_at, cu.first_name, cu.last_name,"
        f" {appointment_id} AS appointment_external_id, {appointment_starts_at} AS appointment_starts_at,"
        f" {names}"
        f" FROM ({select} ORDER BY c.phone_e164 LIMIT {params.add(limit)}) r"
        f" JOIN customers cu ON cu.id = r.customer_id{joins}"
        " ORDER BY r.phone_e164"
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

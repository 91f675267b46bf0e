"""Decisions of outbound webhook delivery, free of I/O: when a failed delivery is tried again, when
an endpoint is disabled, how free delivery slots are shared among tenants and endpoints, and how
the feed of message events advances past ids that are not visible yet."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

# A gap in the message event ids: [low, high] (inclusive) and when it was first seen (epoch s).
Gap = tuple[int, int, float]


def retry_delay_s(attempts: int, tiers_s: Sequence[float]) -> float | None:
    """Delay before the next attempt after ``attempts`` failed ones; None when they are spent
    (one attempt, then one retry per tier)."""
    if attempts < 1:
        raise ValueError("attempts counts the attempts made, at least 1")
    return float(tiers_s[attempts - 1]) if attempts <= len(tiers_s) else None


def is_success(status_code: int | None) -> bool:
    # Redirects are not followed, so a 3xx is a failure like any answer outside 2xx.
    return status_code is not None and 200 <= status_code < 300


def should_disable(
    *, consecutive_failures: int, failing_since: datetime, now: datetime, after_s: float, after_failures: int
) -> bool:
    """An endpoint whose attempts have all failed, at least ``after_failures`` times and for at
    least ``after_s``, is disabled: retrying it further only spends the workers' time."""
    return consecutive_failures >= after_failures and now - failing_since >= timedelta(seconds=after_s)


@dataclass(frozen=True)
class DueEndpoint:
    endpoint_id: UUID
    tenant_id: UUID
    in_flight: int  # across every tracker
    due: int  # deliveries due now (counted up to the endpoint's bound)


def share_slots(
    endpoints: Sequence[DueEndpoint],
    tenant_in_flight: dict[UUID, int],
    *,
    free: int,
    endpoint_limit: int,
    tenant_limit: int,
) -> dict[UUID, int]:
    """How many due deliveries to claim per endpoint: one slot per tenant per round, the tenant
    with the fewest deliveries in flight first, each on its endpoint with the fewest in flight;
    never past an endpoint's or a tenant's bound. A tenant with many endpoints or a large backlog
    thus gets no more of the free slots than a tenant with one due delivery."""
    by_tenant: dict[UUID, list[DueEndpoint]] = defaultdict(list)
    for endpoint in endpoints:
        by_tenant[endpoint.tenant_id].append(endpoint)
    taken: dict[UUID, int] = defaultdict(int)
    tenant_load = {tenant: tenant_in_flight.get(tenant, 0) for tenant in by_tenant}
    while free > 0:
        progressed = False
        for tenant in sorted(by_tenant, key=lambda t: (tenant_load[t], str(t))):
            if free == 0:
                break
            if tenant_load[tenant] >= tenant_limit:
                continue
            open_endpoints = [
                e
                for e in by_tenant[tenant]
                if taken[e.endpoint_id] < e.due and e.in_flight + taken[e.endpoint_id] < endpoint_limit
            ]
            if not open_endpoints:
                continue
            chosen = min(
                open_endpoints, key=lambda e: (e.in_flight + taken[e.endpoint_id], str(e.endpoint_id))
            )
            taken[chosen.endpoint_id] += 1
            tenant_load[tenant] += 1
            free -= 1
            progressed = True
        if not progressed:
            break
    return dict(taken)


def advance_feed(
    position: int,
    gaps: Sequence[Gap],
    *,
    new_ids: Sequence[int],
    found_in_gaps: Sequence[int],
    now: float,
    settle_s: float,
    max_gaps: int = 1000,
) -> tuple[int, list[Gap]]:
    """The feed's next position and gaps after reading ``new_ids`` (ascending, all above
    ``position``) and ``found_in_gaps`` (ids that appeared inside known gaps).

    Identity ids are handed out when rows are inserted but become visible when their transaction
    commits, so a later id can be read while an earlier one is still invisible. Each missing id
    is kept as a gap and looked for again until ``settle_s`` has passed — longer than any
    transaction that writes message events lasts; after that it was rolled back and never comes.
    """
    remaining: list[Gap] = []
    found = sorted(found_in_gaps)
    for low, high, seen in gaps:
        if now - seen > settle_s:
            continue
        start = low
        for found_id in found:
            if low <= found_id <= high and found_id >= start:
                if found_id > start:
                    remaining.append((start, found_id - 1, seen))
                start = found_id + 1
        if start <= high:
            remaining.append((start, high, seen))
    expected = position + 1
    for new_id in new_ids:
        if new_id > expected:
            remaining.append((expected, new_id - 1, now))
        expected = max(expected, new_id + 1)
    remaining.sort()
    if len(remaining) > max_gaps:
        # The oldest are the likeliest to be rolled back for good.
        remaining = sorted(remaining, key=lambda gap: gap[2])[-max_gaps:]
        remaining.sort()
    return (expected - 1 if new_ids else position), remaining

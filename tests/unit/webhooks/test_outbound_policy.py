"""Pure decisions of outbound webhook delivery: retry tiers, disabling, sharing the free slots
among tenants and endpoints, and the feed's gaps."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from services.tracker.outbound_policy import (
    DueEndpoint,
    advance_feed,
    is_success,
    retry_delay_s,
    share_slots,
    should_disable,
)

TIERS = [60.0, 300.0, 1800.0]


def test_each_failed_attempt_waits_for_the_next_tier_and_the_last_one_ends_the_delivery() -> None:
    assert [retry_delay_s(n, TIERS) for n in (1, 2, 3, 4)] == [60.0, 300.0, 1800.0, None]
    with pytest.raises(ValueError):
        retry_delay_s(0, TIERS)


@pytest.mark.parametrize(
    ("code", "success"),
    [
        (200, True),
        (204, True),
        (299, True),
        (301, False),
        (302, False),
        (400, False),
        (500, False),
        (None, False),
    ],
)
def test_only_a_2xx_answer_is_a_success_and_redirects_are_not(code: int | None, success: bool) -> None:
    assert is_success(code) is success


def test_an_endpoint_is_disabled_only_after_enough_failures_for_long_enough() -> None:
    since = datetime(2026, 1, 1, tzinfo=UTC)
    decide = lambda failures, hours: should_disable(  # noqa: E731
        consecutive_failures=failures,
        failing_since=since,
        now=since + timedelta(hours=hours),
        after_s=24 * 3600,
        after_failures=10,
    )
    assert not decide(9, 48)  # long, but too few failures
    assert not decide(500, 23)  # many, but not long enough
    assert decide(10, 24)


def _endpoint(tenant: uuid.UUID, in_flight: int = 0, due: int = 4) -> DueEndpoint:
    return DueEndpoint(uuid.uuid4(), tenant, in_flight, due)


def test_free_slots_go_round_robin_to_tenants_whatever_their_backlog_or_endpoint_count() -> None:
    # Given tenant A with three endpoints with full backlogs, and tenant B with one due delivery
    a, b = uuid.uuid4(), uuid.uuid4()
    a_endpoints = [_endpoint(a) for _ in range(3)]
    b_endpoint = _endpoint(b, due=1)

    # When three slots are free
    shares = share_slots([*a_endpoints, b_endpoint], {}, free=3, endpoint_limit=4, tenant_limit=8)

    # Then B gets its delivery and A the rest, spread over its endpoints
    assert shares[b_endpoint.endpoint_id] == 1
    assert sum(shares.get(e.endpoint_id, 0) for e in a_endpoints) == 2
    assert max(shares.values()) == 1


def test_an_endpoint_or_tenant_at_its_bound_gets_nothing_more() -> None:
    # Given a hanging endpoint of A already at its bound, and B with deliveries due
    a, b = uuid.uuid4(), uuid.uuid4()
    hanging = _endpoint(a, in_flight=4)
    other_of_a = _endpoint(a)
    b_endpoint = _endpoint(b)

    # When many slots are free, and A is at its tenant bound through its hanging endpoint
    shares = share_slots([hanging, other_of_a, b_endpoint], {a: 4}, free=32, endpoint_limit=4, tenant_limit=4)

    # Then only B is served, up to its endpoint's bound
    assert shares == {b_endpoint.endpoint_id: 4}


def test_the_feed_advances_over_visible_ids_and_keeps_the_missing_ones_as_gaps() -> None:
    position, gaps = advance_feed(10, [], new_ids=[11, 14, 15, 18], found_in_gaps=[], now=100.0, settle_s=60)
    assert position == 18
    assert gaps == [(12, 13, 100.0), (16, 17, 100.0)]


def test_an_id_found_in_a_gap_splits_it_and_the_rest_settles_after_its_time() -> None:
    gaps = [(12, 15, 100.0), (20, 20, 100.0)]
    position, remaining = advance_feed(30, gaps, new_ids=[], found_in_gaps=[13, 20], now=120.0, settle_s=60)
    assert position == 30
    assert remaining == [(12, 12, 100.0), (14, 15, 100.0)]
    _, settled = advance_feed(30, remaining, new_ids=[], found_in_gaps=[], now=161.0, settle_s=60)
    assert settled == []


def test_the_gaps_are_bounded_keeping_the_newest() -> None:
    gaps = [(i * 2, i * 2, float(i)) for i in range(10)]
    _, kept = advance_feed(100, gaps, new_ids=[], found_in_gaps=[], now=10.0, settle_s=60, max_gaps=3)
    assert kept == [(14, 14, 7.0), (16, 16, 8.0), (18, 18, 9.0)]

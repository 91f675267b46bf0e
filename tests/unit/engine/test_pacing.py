"""Adaptive pacing as arithmetic: back-off by the share refused, additive recovery, one shared
record per tenant; the sender's refusal window; the dispatcher's slots at the effective rate."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from services.dispatcher.scheduler import Dispatcher, DispatchSettings
from services.sender.pacer import RefusalWindow
from shared.events import RecipientBatch, SendChunk
from shared.pacing import (
    MIN_DECREASE,
    MIN_FACTOR,
    Pacing,
    after_backoff,
    decrease_multiplier,
    effective_rate,
    factor_at,
)

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def test_a_tenant_without_a_back_off_sends_at_its_configured_rate() -> None:
    assert effective_rate(80, None, NOW, 0.02) == 80


def test_half_the_requests_refused_backs_off_to_just_under_what_got_through() -> None:
    # Given 80/s of which 40 were refused
    factor = after_backoff(1.0, decrease_multiplier(40, 80))
    # Then the tenant lands just under 40/s in one step
    assert 0.45 <= factor < 0.5
    assert 36 <= effective_rate(80, Pacing(factor, NOW), NOW, 0.02) < 40


def test_a_few_refusals_still_cut_the_rate_by_at_least_the_minimum() -> None:
    assert decrease_multiplier(1, 100) == 1 - MIN_DECREASE
    assert decrease_multiplier(0, 100) == 1.0


def test_everything_refused_never_stops_a_tenant() -> None:
    assert after_backoff(MIN_FACTOR, decrease_multiplier(50, 50)) == MIN_FACTOR


def test_the_rate_recovers_additively_up_to_the_configured_rate() -> None:
    # Given a tenant backed off to half its rate, recovering 2% of it per second
    pacing = Pacing(0.5, NOW)
    # Then it gains 1.6/s per second at 80/s, and never passes 80
    assert effective_rate(80, pacing, NOW + timedelta(seconds=10), 0.02) == 56
    assert factor_at(pacing, NOW + timedelta(seconds=100), 0.02) == 1.0
    assert factor_at(pacing, NOW - timedelta(seconds=5), 0.02) == 0.5


def test_the_refusal_window_counts_about_the_last_second() -> None:
    window = RefusalWindow()
    tenant = uuid.uuid4()
    assert window.add(tenant, 20, 0, now=100.1) == (0, 20)
    assert window.add(tenant, 20, 20, now=100.6) == (20, 40)
    # The previous second still counts, the one before it no longer does
    assert window.add(tenant, 10, 5, now=101.2) == (25, 50)
    assert window.add(tenant, 10, 0, now=102.3) == (5, 20)
    # And after a pause nothing old counts
    assert window.add(tenant, 10, 0, now=109.0) == (0, 10)


class _Running:
    async def running(self, campaign_id: uuid.UUID) -> bool:
        return True

    def is_running(self, campaign_id: uuid.UUID) -> bool:
        return True


class _Backedoff:
    def __init__(self, pacing: Pacing | None) -> None:
        self.pacing = pacing

    async def current(self, tenant_id: uuid.UUID) -> Pacing | None:
        return self.pacing


async def test_the_dispatcher_spaces_slots_at_the_backed_off_rate() -> None:
    # Given a tenant configured at 80/s whose shared record says a quarter of that now
    chunks: list[SendChunk] = []

    async def publish(chunk: SendChunk, headers: object) -> None:
        chunks.append(chunk)

    settings = DispatchSettings(
        chunk_size=20,
        unlimited_chunk_size=100,
        margin=0.0,
        lead_s=10.0,
        unlimited_inflight_chunks=4,
        feedback_timeout_s=30,
        reply_queue="replies",
        pacing_recovery_per_s=0.0,
    )
    dispatcher = Dispatcher(settings, _Running(), publish, _Backedoff(Pacing(0.25, datetime.now(UTC))))
    tenant = uuid.uuid4()
    dispatcher.set_rate(tenant, 80)

    # When a batch is dispatched
    await dispatcher.dispatch(
        RecipientBatch(tenant_id=tenant, campaign_id=uuid.uuid4(), recipient_ids=list(range(1, 21)))
    )

    # Then its slots are 1/20 s apart, not 1/80 s
    assert chunks and all(abs((chunk.interval_s or 0) - 0.05) < 1e-9 for chunk in chunks)

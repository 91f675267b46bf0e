"""Wiring of the tracker: webhooks in front, tenant reads behind, consumers and periodic jobs in
the lifespan.

    Twilio -> /twilio/status|inbound/{tenant} (signature) -> wce.status -> consumers -> PostgreSQL
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.tracker.api import router
from services.tracker.api_replies import router as replies_router
from services.tracker.callbacks import match_orphans
from services.tracker.consumers import StatusConsumer, start_inbound_consumer
from services.tracker.grouping import CallbackGrouper
from services.tracker.ingest import Ingest
from services.tracker.live import ProgressHub, StreamLimits
from services.tracker.observe import CampaignSampler, QueueSampler
from services.tracker.outbound_client import WebhookClient
from services.tracker.outbound_fanout import start_lifecycle_consumer
from services.tracker.outbound_worker import DeliveryWorker, run_feed
from services.tracker.periodic import run_every
from services.tracker.refusals import refusal_waits
from services.tracker.reports import load_progress
from services.tracker.state_counts import FOLD_INTERVAL_S, fold_state_deltas
from services.tracker.tenant_gate import ActiveTenants
from services.tracker.tokens import TokenCache
from services.tracker.webhooks import WebhookRoutes
from shared import topology
from shared.broker import ConsumerPolicy
from shared.clock import Clock
from shared.crypto import SecretBox
from shared.http import broker_check, install_common, pool_check
from shared.metrics import CALLBACKS
from shared.runtime import Resources, attach, open_resources, serve
from shared.settings import Settings, get_settings
from shared.supervision import Supervisor

SERVICE = "tracker"
INBOUND_PREFETCH = 16
# Status messages carry groups of callbacks (one to hundreds): enough in hand for the next batch
# to fill while one is written, without holding a large backlog in memory.
STATUS_PREFETCH = 64
# A deactivated tenant's webhooks are refused within this time.
TENANT_RELOAD_S = 5.0
# Progress streams of a running campaign: pushing twice a second keeps a client at or above one
# update per second despite jitter.
PROGRESS_INTERVAL_S = 0.5
LIFECYCLE_PREFETCH = 16


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    resources = await open_resources(settings, SERVICE)
    attach(app, resources, settings)
    pool = resources.pool

    status_channel = await resources.connection.channel()
    await status_channel.set_qos(prefetch_count=STATUS_PREFETCH)
    status_queue = await topology.declare_queue(status_channel, topology.STATUS)
    waits = refusal_waits(settings)
    status_consumer = StatusConsumer(
        status_queue,
        pool,
        resources.publisher,
        batch_size=settings.callback_batch_size,
        flush_s=settings.callback_flush_s,
        policy=ConsumerPolicy.from_settings(settings),
        waits=waits,
    )
    inbound_channel = await resources.connection.channel()
    await inbound_channel.set_qos(prefetch_count=INBOUND_PREFETCH)
    inbound_queue = await topology.declare_queue(inbound_channel, topology.INBOUND)

    queues = QueueSampler(resources.connection, pool, settings.retry_tiers_s)
    campaigns = CampaignSampler(pool)

    async def sample() -> None:
        await queues.sample()
        await campaigns.sample()

    tenants = ActiveTenants(pool)
    await tenants.reload()
    supervisor: Supervisor = app.state.supervisor
    supervisor.spawn("active_tenants", lambda: run_every("active tenants", TENANT_RELOAD_S, tenants.reload))
    supervisor.spawn(
        "orphan_matching",
        lambda: run_every(
            "orphans", settings.orphan_match_interval_s, lambda: match_orphans(pool, waits=waits)
        ),
    )
    supervisor.spawn(
        "state_count_folding",
        lambda: run_every("state counts", FOLD_INTERVAL_S, lambda: fold_state_deltas(pool)),
    )
    supervisor.spawn(
        "metrics_sampling", lambda: run_every("metrics", settings.metrics_sample_interval_s, sample)
    )
    supervisor.spawn("status_batches", status_consumer.run_batches)
    await status_consumer.start()
    await start_inbound_consumer(inbound_queue, pool, resources.publisher)
    clock = app.state.clock = Clock(settings.clock_offset_file)
    webhook_client = await _start_outbound_webhooks(resources, settings, supervisor)
    app.state.progress_hub = ProgressHub(
        lambda tenant_id, campaign_id: load_progress(
            pool, tenant_id=tenant_id, campaign_id=campaign_id, clock=clock
        ),
        StreamLimits(
            per_key=settings.progress_streams_per_key,
            total=settings.progress_streams_max,
            max_lifetime_s=settings.progress_stream_max_lifetime_s,
            interval_s=PROGRESS_INTERVAL_S,
            idle_interval_s=settings.progress_stream_idle_interval_s,
        ),
    )
    app.state.ingest = Ingest(
        tenants=tenants,
        tokens=TokenCache(pool, SecretBox(settings.encryption_keys)),
        publisher=resources.publisher,
        grouper=CallbackGrouper(resources.publisher),
    )
    # Everything allocated so far lives as long as the process; frozen, the collector stops
    # re-scanning it on every collection, which the profile showed as a tenth of the webhook's CPU.
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        app.state.ingest = None
        await app.state.progress_hub.close()
        await status_consumer.stop()
        await supervisor.stop()
        if webhook_client is not None:
            await webhook_client.close()
        await queues.close()
        await resources.close()


async def _start_outbound_webhooks(
    resources: Resources, settings: Settings, supervisor: Supervisor
) -> WebhookClient | None:
    """Outbound webhooks (services/tracker/outbound_*): lifecycle events from their queue and
    status events from the message event log become deliveries, which a bounded worker makes.
    Their own channel, pool connections and HTTP client: a slow endpoint never touches the
    callback path."""
    if not settings.webhook_delivery_enabled:
        return None
    channel = await resources.connection.channel()
    await channel.set_qos(prefetch_count=LIFECYCLE_PREFETCH)
    queue = await topology.declare_queue(channel, topology.WEBHOOK_LIFECYCLE)
    await start_lifecycle_consumer(queue, resources.pool, resources.publisher)
    client = WebhookClient(
        max_connections=settings.webhook_concurrency,
        timeout_s=settings.webhook_timeout_s,
        max_response_bytes=settings.webhook_max_response_bytes,
        public_only=settings.strict_webhook_urls,
    )
    worker = DeliveryWorker(resources.pool, SecretBox(settings.encryption_keys), settings, client)
    supervisor.spawn("webhook_deliveries", worker.run)
    supervisor.spawn("webhook_feed", lambda: run_feed(resources.pool, settings))
    return client


def create_app() -> WebhookRoutes:
    settings = get_settings()
    app = FastAPI(title="WhatsApp campaign engine — tracker", lifespan=lifespan)
    supervisor = app.state.supervisor = Supervisor(SERVICE)
    install_common(
        app,
        {"database": pool_check(app), "broker": broker_check(app), "background_tasks": supervisor.check},
        max_body_bytes=settings.max_body_bytes,
    )
    app.include_router(router)
    app.include_router(replies_router)
    # Series exist from the start, so rates and alerts see zero rather than nothing.
    for status in ("sent", "delivered", "read", "undelivered", "failed"):
        CALLBACKS.labels(status)
    return WebhookRoutes(app)


def main() -> None:
    settings = get_settings()
    serve(create_app(), service=SERVICE, settings=settings, port=settings.tracker_port)  # type: ignore[arg-type]

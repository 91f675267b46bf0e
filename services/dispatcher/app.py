"""Dispatcher wiring: tenant dispatch queues, events, chunk acknowledgements, periodic refresh."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.dispatcher.handlers import (
    TenantConsumers,
    chunk_publisher,
    consume_acknowledgements,
    consume_events,
    refresh_loop,
)
from services.dispatcher.scheduler import CampaignStates, Dispatcher, DispatchSettings, PacingRecords
from shared import topology
from shared.http import broker_check, install_common, pool_check
from shared.runtime import attach, open_resources
from shared.settings import Settings, get_settings
from shared.supervision import Supervisor

# Batches of a tenant taken ahead: the next is ready the moment the current one is published.
TENANT_PREFETCH = 2


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    supervisor = Supervisor("dispatcher")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        resources = await open_resources(settings, "dispatcher")
        attach(app, resources, settings)
        instance = uuid.uuid4().hex[:12]
        reply_queue = topology.private_queue_name("dispatcher", instance, "done")
        campaigns = CampaignStates(resources.pool)
        dispatcher = Dispatcher(
            DispatchSettings(
                chunk_size=settings.chunk_size,
                unlimited_chunk_size=settings.unlimited_chunk_size,
                margin=settings.throttle_margin,
                lead_s=settings.dispatch_lead_s,
                unlimited_inflight_chunks=settings.unlimited_inflight_chunks,
                feedback_timeout_s=settings.chunk_feedback_timeout_s,
                reply_queue=reply_queue,
                pacing_recovery_per_s=settings.pacing_recovery_per_s,
                late_tolerance_s=settings.late_tolerance_s,
                max_lead_s=settings.dispatch_max_lead_s,
                max_late_tolerance_s=settings.late_tolerance_max_s,
            ),
            campaigns,
            chunk_publisher(resources.publisher),
            PacingRecords(resources.pool, settings.pacing_recovery_per_s),
        )
        resources.connection.reconnect_callbacks.add(lambda *_: dispatcher.restart_clocks())
        private = await resources.connection.channel()
        await consume_acknowledgements(private, reply_queue, dispatcher, resources.publisher)
        tenants_channel = await resources.connection.channel()
        await tenants_channel.set_qos(prefetch_count=TENANT_PREFETCH)
        consumers = TenantConsumers(tenants_channel, dispatcher, resources.publisher)
        await consume_events(
            private,
            topology.private_queue_name("dispatcher", instance, "events"),
            resources.pool,
            consumers,
            campaigns,
        )
        await consumers.refresh(resources.pool)
        supervisor.spawn(
            "refresh",
            lambda: refresh_loop(resources.pool, consumers, campaigns, settings.dispatcher_refresh_s),
        )
        try:
            yield
        finally:
            await supervisor.stop()
            await resources.close()

    app = FastAPI(
        title="WhatsApp campaign engine — dispatcher", lifespan=lifespan, docs_url=None, redoc_url=None
    )
    install_common(
        app,
        {"database": pool_check(app), "broker": broker_check(app), "background_tasks": supervisor.check},
        max_body_bytes=settings.max_body_bytes,
    )
    return app

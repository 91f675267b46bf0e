"""Segmenter wiring: the tenant/campaign/audience/booking HTTP API, the command and booking
consumers, and the background campaign runner and monitor."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from services.segmenter import (
    campaign_requests,
    commands,
    routes_api_keys,
    routes_audience,
    routes_booking,
    routes_campaigns,
    routes_catalogue,
    routes_credits,
    routes_parked,
    routes_publishers,
    routes_sending_window,
    routes_sends,
    routes_suppressions,
    routes_tenants,
    routes_webhooks,
    sends,
)
from services.segmenter.booking.consumer import consume_booking
from services.segmenter.campaigns import Lifecycle
from services.segmenter.clockwork import schedule_loop, window_loop
from services.segmenter.runner import CampaignRunner, monitor_loop
from services.segmenter.snapshot import CampaignPublisher
from shared import topology
from shared.body_limit import bulk_paths
from shared.clock import Clock
from shared.crypto import SecretBox
from shared.events import CampaignRequested
from shared.http import broker_check, install_common, pool_check
from shared.publishers import PublisherCheck, engine_user
from shared.runtime import attach, open_resources
from shared.settings import Settings, get_settings
from shared.supervision import Supervisor

ROUTERS: list[APIRouter] = [
    routes_tenants.router,
    routes_sending_window.router,
    routes_api_keys.router,
    routes_publishers.router,
    routes_campaigns.router,
    routes_audience.router,
    routes_booking.router,
    routes_catalogue.router,
    routes_suppressions.router,
    routes_credits.router,
    routes_sends.router,
    routes_parked.router,
    routes_webhooks.router,
]

MONITOR_INTERVAL_S = 1.0

# Routes that take up to 10,000 rows (100,000 numbers for a suppression import) in one body.
BULK_ROUTES = bulk_paths(
    exact=("/v1/suppressions/import", "/v1/sends/manual"), suffixes=(":upsert", ":delete")
)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    supervisor = Supervisor("segmenter")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        resources = await open_resources(settings, "segmenter")
        attach(app, resources, settings)
        app.state.secret_box = SecretBox(settings.encryption_keys)
        # Only WhatsApp-approved Content templates of the tenant's own account can be chosen.
        app.state.content_is_approved = sends.content_checker(resources.pool, app.state.secret_box, settings)
        campaign_publisher = CampaignPublisher(
            resources.pool, resources.publisher, settings.publish_batch_size
        )
        runner = CampaignRunner(resources.pool, campaign_publisher)
        lifecycle = Lifecycle(resources.pool, resources.publisher, runner, Clock(settings.clock_offset_file))
        app.state.lifecycle = lifecycle
        app.state.campaign_publisher = campaign_publisher

        channel = await resources.connection.channel()
        await channel.set_qos(prefetch_count=16)
        handlers = commands.lifecycle_handlers(lifecycle)
        handlers[CampaignRequested.ROUTING_KEY] = campaign_requests.requested_handler(
            resources.pool, resources.publisher, lifecycle, app.state.content_is_approved
        )
        app.state.command_handlers = handlers
        publishers = PublisherCheck(
            resources.pool,
            engine_user=engine_user(settings.amqp_url),
            enabled=settings.publisher_check_enabled,
        )
        await commands.consume_commands(
            await channel.get_queue(topology.COMMANDS_QUEUE), resources.publisher, handlers, publishers
        )
        await consume_booking(resources.connection, resources.publisher, resources.pool, publishers)
        supervisor.spawn(
            "campaign_monitor", lambda: monitor_loop(resources.pool, runner, lifecycle, MONITOR_INTERVAL_S)
        )
        supervisor.spawn("campaign_schedule", lambda: schedule_loop(lifecycle, settings.schedule_poll_s))
        supervisor.spawn(
            "sending_windows", lambda: window_loop(resources.pool, lifecycle, MONITOR_INTERVAL_S)
        )
        try:
            yield
        finally:
            await supervisor.stop()
            await runner.stop()
            await resources.close()

    app = FastAPI(
        title="WhatsApp campaign engine — tenant API",
        version="1.0.0",
        lifespan=lifespan,
        description=(
            "Tenants, booking data, audiences, campaigns."
            " Authenticate with `Authorization: Bearer <api key>`."
        ),
    )
    install_common(
        app,
        {"database": pool_check(app), "broker": broker_check(app), "background_tasks": supervisor.check},
        max_body_bytes=settings.max_body_bytes,
        max_bulk_body_bytes=settings.max_bulk_body_bytes,
        is_bulk=BULK_ROUTES,
    )
    for router in ROUTERS:
        app.include_router(router)
    return app

"""Sender wiring: the send-queue consumer, lifecycle events, the campaign gate poll, maintenance
(lease expiry, reconciliation, stuck-row sweep) and a graceful stop.

On SIGTERM (uvicorn's lifespan shutdown) the sender stops taking chunks, lets the Twilio calls
already started finish and records them; messages not started yet are handed back and their
chunks requeued for another sender.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.sender.directory import Directory
from services.sender.engine import EngineSettings, SendEngine
from services.sender.gate import CampaignGate
from services.sender.handlers import (
    AutoPauser,
    HoldAnnouncer,
    InFlight,
    consume_chunks,
    consume_events,
    poll_gate,
)
from services.sender.maintenance import Maintenance, MaintenanceSettings
from services.sender.outcomes import late_create_bound_s
from services.sender.pacer import Pacer
from services.sender.recording import Recorder
from services.sender.wake_lateness import WakeLateness
from shared import topology
from shared.clock import Clock
from shared.cpu_slice import request_slice
from shared.crypto import SecretBox
from shared.http import broker_check, install_common, pool_check
from shared.logging import get_logger
from shared.runtime import attach, open_resources
from shared.settings import Settings, get_settings
from shared.supervision import Supervisor
from shared.twilio_client import TwilioClient

log = get_logger(__name__)


def ask_for_cpu_slice(seconds: float) -> None:
    """Ask for a short CPU slice for this thread, the event loop's, so that paced messages wake
    for their slots on time on a busy machine (``shared.cpu_slice``); log what the kernel gave."""
    if not seconds:
        return
    try:
        granted = request_slice(seconds)
    except OSError as exc:
        log.warning("cpu slice refused", asked_s=seconds, error=str(exc))
        return
    if granted is None or abs(granted - seconds) > 1e-6:
        # Not Linux, or a kernel before 6.12: its own slices, as without the setting.
        log.info("cpu slice not available", asked_s=seconds, slice_s=granted)
    else:
        log.info("cpu slice granted", slice_s=granted)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    supervisor = Supervisor("sender")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        concurrency = min(settings.sender_concurrency, settings.twilio_max_connections)
        resources = await open_resources(settings, "sender")
        attach(app, resources, settings)
        client = TwilioClient(
            api_base_url=settings.twilio_api_base_url,
            content_base_url=settings.twilio_content_base_url,
            timeout_s=settings.twilio_timeout_s,
            max_connections=settings.twilio_max_connections,
            max_idle_s=settings.twilio_max_idle_s,
        )
        directory = Directory(resources.pool, SecretBox(settings.encryption_keys))
        gate = CampaignGate(
            window=settings.error_rate_window,
            threshold=settings.error_rate_threshold,
            min_attempts=settings.error_rate_min_attempts,
        )
        clock = Clock(settings.clock_offset_file)
        recorder = Recorder(resources.pool, resources.publisher, clock)
        engine = SendEngine(
            clock=clock,
            pool=resources.pool,
            client=client,
            directory=directory,
            gate=gate,
            recorder=recorder,
            settings=EngineSettings(
                lease_s=settings.lease_s,
                late_tolerance_s=settings.late_tolerance_s,
                twilio_timeout_s=settings.twilio_timeout_s,
                retry_tiers_s=settings.retry_tiers_s,
                max_attempts=settings.max_attempts,
                credits_enabled=settings.credits_enabled,
                public_base_url=settings.public_base_url,
                messaging_window_s=settings.messaging_window_s,
                spam_hold_s=settings.spam_hold_s,
                pair_rate_retry_s=settings.pair_rate_retry_s,
                paced_calls_share=settings.sender_paced_calls_share,
            ),
            concurrency=concurrency,
            pacer=Pacer(resources.pool, settings.pacing_recovery_per_s),
            auto_pause=AutoPauser(gate, resources.publisher),
            announce_hold=HoldAnnouncer(resources.publisher),
        )
        maintenance = Maintenance(
            clock=clock,
            pool=resources.pool,
            connection=resources.connection,
            publisher=resources.publisher,
            client=client,
            directory=directory,
            recorder=recorder,
            settings=MaintenanceSettings(
                interval_s=settings.maintenance_interval_s,
                lease_s=settings.maintenance_lease_s,
                reconcile_after_s=settings.reconcile_after_s,
                sweep_idle_s=settings.sweep_idle_s,
                retry_tiers_s=settings.retry_tiers_s,
                publish_batch_size=settings.publish_batch_size,
                status_recheck_after_s=settings.status_recheck_after_s,
                status_recheck_per_tenant=settings.status_recheck_per_tenant,
                status_recheck_max=settings.status_recheck_max,
                messaging_window_s=settings.messaging_window_s,
                spam_hold_s=settings.spam_hold_s,
                frequency_retention_interval_s=settings.frequency_retention_interval_s,
                late_create_bound_s=late_create_bound_s(
                    settings.twilio_timeout_s, settings.reconcile_margin_s
                ),
            ),
        )
        events_channel = await resources.connection.channel()
        await consume_events(events_channel, gate, directory)
        send_channel = await resources.connection.channel()
        await send_channel.set_qos(prefetch_count=settings.sender_prefetch)
        send_queue = await send_channel.get_queue(topology.SEND_QUEUE)
        in_flight = InFlight()
        wake_lateness = WakeLateness(settings.late_tolerance_s)
        supervisor.spawn("wake_lateness", wake_lateness.run)
        consumer_tag = await consume_chunks(send_queue, engine, resources.publisher, in_flight, wake_lateness)
        supervisor.spawn(
            "gate_poll", lambda: poll_gate(resources.pool, engine, gate, settings.sender_gate_poll_s)
        )
        supervisor.spawn("maintenance", maintenance.run)
        ask_for_cpu_slice(settings.sender_cpu_slice_s)
        # Objects made at start-up live as long as the process: keep them out of every collection,
        # so a full collection never stalls a send past its slot.
        gc.freeze()
        try:
            yield
        finally:
            engine.stopping = True
            with contextlib.suppress(Exception):
                await send_queue.cancel(consumer_tag)
            if not await in_flight.wait_idle(settings.twilio_timeout_s + 5.0):
                log.warning("stopping with chunks still in flight", chunks=in_flight.count)
            await supervisor.stop()
            await client.aclose()
            await resources.close()

    app = FastAPI(title="WhatsApp campaign engine — sender", lifespan=lifespan, docs_url=None, redoc_url=None)
    install_common(
        app,
        {"database": pool_check(app), "broker": broker_check(app), "background_tasks": supervisor.check},
        max_body_bytes=settings.max_body_bytes,
    )
    return app

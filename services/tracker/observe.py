"""Sampling what no single request sees into gauges: broker queue depths and the progress of
running campaigns (summed per tenant and state, so the label set stays bounded)."""

from __future__ import annotations

import asyncio
import contextlib

import aiormq
import asyncpg
from aio_pika.abc import AbstractChannel, AbstractRobustConnection

from services.tracker import queries
from shared import topology
from shared.db import AllTenants
from shared.metrics import CAMPAIGN_PROGRESS, HELD_CAMPAIGNS, QUEUE_DEPTH, RUNNING_CAMPAIGNS

BROKER_TIMEOUT_S = 5.0


def queue_names(retry_tiers_s: list[int], tenant_ids: list[str]) -> list[str]:
    """Every queue the engine uses, parked queues included."""
    names: list[str] = []
    for spec in topology.WORK_QUEUES:
        names += [spec.name, topology.parked_queue_name(spec.name)]
    names += [topology.retry_queue_name(delay) for delay in retry_tiers_s]
    for tenant_id in tenant_ids:
        dispatch = topology.dispatch_queue_name(tenant_id)
        names += [dispatch, topology.parked_queue_name(dispatch)]
    return names


class QueueSampler:
    """Reads queue depths with passive declares on a channel of its own: the broker closes a
    channel on a passive declare of a missing queue, which must not hit anyone else's channel."""

    def __init__(
        self, connection: AbstractRobustConnection, pool: asyncpg.Pool, retry_tiers_s: list[int]
    ) -> None:
        self._connection = connection
        self._pool = pool
        self._retry_tiers_s = retry_tiers_s
        self._channel: AbstractChannel | None = None

    async def _open_channel(self) -> AbstractChannel:
        if self._channel is None or self._channel.is_closed:
            self._channel = await asyncio.wait_for(self._connection.channel(), BROKER_TIMEOUT_S)
        return self._channel

    async def sample(self) -> None:
        tenant_ids = [
            row["id"] for row in await self._pool.fetch(queries.TENANT_IDS, timeout=BROKER_TIMEOUT_S)
        ]
        for name in queue_names(self._retry_tiers_s, tenant_ids):
            channel = await self._open_channel()
            try:
                queue = await channel.declare_queue(name, passive=True, timeout=BROKER_TIMEOUT_S)
            except aiormq.exceptions.ChannelNotFoundEntity:
                # The broker closed the channel; release it for good (a robust channel may try to
                # reopen itself) before the next queue gets a fresh one.
                await self._discard_channel()
                continue
            QUEUE_DEPTH.labels(name).set(queue.declaration_result.message_count or 0)

    async def _discard_channel(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            with contextlib.suppress(aiormq.exceptions.AMQPError, RuntimeError):
                await channel.close()

    async def close(self) -> None:
        await self._discard_channel()


class CampaignSampler:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._progress_labels: set[tuple[str, str]] = set()
        self._running_labels: set[str] = set()
        self._held_labels: set[tuple[str, str]] = set()

    async def sample(self) -> None:
        # Metrics sampling: every tenant's campaigns, as the cross-tenant role.
        progress = await AllTenants(self._pool).fetch(queries.RUNNING_PROGRESS, timeout_s=30)
        running = await AllTenants(self._pool).fetch(queries.RUNNING_CAMPAIGNS, timeout_s=30)
        seen_progress = {(row["tenant"], row["state"]): row["n"] for row in progress}
        # Tenants whose campaigns finished go to zero rather than keep their last value.
        for labels in self._progress_labels - seen_progress.keys():
            CAMPAIGN_PROGRESS.labels(*labels).set(0)
        for labels, count in seen_progress.items():
            CAMPAIGN_PROGRESS.labels(*labels).set(count)
        self._progress_labels |= seen_progress.keys()
        seen_running = {row["tenant"]: row["n"] for row in running}
        for tenant in self._running_labels - seen_running.keys():
            RUNNING_CAMPAIGNS.labels(tenant).set(0)
        for tenant, count in seen_running.items():
            RUNNING_CAMPAIGNS.labels(tenant).set(count)
        self._running_labels |= seen_running.keys()
        held = await AllTenants(self._pool).fetch(queries.HELD_CAMPAIGNS, timeout_s=30)
        seen_held = {(row["tenant"], row["reason"]): row["n"] for row in held}
        for labels in self._held_labels - seen_held.keys():
            HELD_CAMPAIGNS.labels(*labels).set(0)
        for labels, count in seen_held.items():
            HELD_CAMPAIGNS.labels(*labels).set(count)
        self._held_labels |= seen_held.keys()

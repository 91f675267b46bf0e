"""Operator endpoints for parked messages: what each queue parked, why, and replaying or purging
them once the cause is fixed."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.segmenter import queries
from shared.broker import BrokerUnavailable
from shared.http import Operator, Pool, not_found
from shared.parked import ParkedQueues, UnknownQueue, parked_queues

router = APIRouter(prefix="/v1/operator/parked", tags=["operator: parked messages"])

MAX_BATCH = 1000


def _parked(request: Request) -> ParkedQueues:
    return ParkedQueues(request.app.state.broker, request.app.state.publisher)


Parked = Annotated[ParkedQueues, Depends(_parked)]


class Selection(BaseModel):
    """Which parked messages: the ones with these ids (``x-parked-id``), or with ``all`` the
    first ``limit`` of the queue."""

    model_config = ConfigDict(extra="forbid")

    ids: list[Annotated[str, Field(min_length=1, max_length=64)]] | None = Field(
        default=None, min_length=1, max_length=MAX_BATCH
    )
    all: bool = False
    limit: int = Field(default=MAX_BATCH, ge=1, le=MAX_BATCH)

    @model_validator(mode="after")
    def _one_of(self) -> Selection:
        if (self.ids is None) == (not self.all):
            raise ValueError("give either ids or all: true")
        return self


async def _parked_queues(pool: Pool) -> list[str]:
    return parked_queues([str(row["id"]) for row in await pool.fetch(queries.SELECT_TENANT_IDS)])


async def _known(pool: Pool, queue: str) -> str:
    if queue not in await _parked_queues(pool):
        raise not_found(f"no queue {queue!r} parks messages")
    return queue


def _unavailable(exc: Exception) -> HTTPException:
    return HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"broker unavailable: {exc}")


@router.get("")
async def list_parked(_: Operator, pool: Pool, parked: Parked) -> dict[str, Any]:
    """Every queue that can park messages, with how many it holds parked (non-empty first)."""
    queues = await _parked_queues(pool)
    try:
        counts = await parked.counts(queues)
    except BrokerUnavailable as exc:
        raise _unavailable(exc) from exc
    by_count = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return {"queues": [{"queue": queue, "parked": n} for queue, n in by_count]}


@router.get("/{queue}")
async def inspect_parked(
    queue: str,
    _: Operator,
    pool: Pool,
    parked: Parked,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
) -> dict[str, Any]:
    """The first ``limit`` messages parked from ``queue``, with reason, error and body (left in place)."""
    await _known(pool, queue)
    try:
        total, messages = await parked.inspect(queue, limit=limit)
    except UnknownQueue:
        return {"queue": queue, "parked": 0, "messages": []}
    return {"queue": queue, "parked": total, "messages": [asdict(message) for message in messages]}


@router.post("/{queue}/replay")
async def replay_parked(
    queue: str, body: Selection, _: Operator, pool: Pool, parked: Parked
) -> dict[str, Any]:
    """Publish parked messages again to where they first went; their consumer handles them anew."""
    await _known(pool, queue)
    try:
        replayed = await parked.replay(queue, ids=set(body.ids) if body.ids else None, limit=body.limit)
    except UnknownQueue:
        replayed = 0
    except BrokerUnavailable as exc:
        raise _unavailable(exc) from exc
    return {"queue": queue, "replayed": replayed}


@router.post("/{queue}/purge")
async def purge_parked(
    queue: str, body: Selection, _: Operator, pool: Pool, parked: Parked
) -> dict[str, Any]:
    """Delete parked messages for good."""
    await _known(pool, queue)
    try:
        purged = await parked.purge(queue, ids=set(body.ids) if body.ids else None, limit=body.limit)
    except UnknownQueue:
        purged = 0
    return {"queue": queue, "purged": purged}

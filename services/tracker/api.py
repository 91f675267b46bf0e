"""HTTP input of the tenant's reads: recipient logs and CSV, progress (JSON and SSE), event log."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from typing import Annotated, Any
from uuid import UUID

import orjson
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status
from fastapi.responses import StreamingResponse

from services.tracker import reports
from services.tracker.live import DRAFT_RECONNECT_MS, ProgressHub, StreamLimitReached
from services.tracker.progress import Progress
from services.tracker.reports import RecipientFilters
from shared.http import InputError, Pool, Tenant, TenantContext, not_found
from shared.phones import InvalidPhone, to_e164
from shared.recipient_states import RECIPIENT_STATES
from shared.validation import INT4_MAX, INT8_MAX, Text

router = APIRouter(prefix="/v1/campaigns", tags=["tracking"])


class EventStream(StreamingResponse):
    """Server-sent events (documented as such in the OpenAPI document)."""

    media_type = "text/event-stream"


class CsvFile(StreamingResponse):
    media_type = "text/csv"


SSE_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": (
            "`event: progress` twice a second while the campaign runs (every few seconds while it is"
            " paused), then one event named after its final state; a draft's stream sends one"
            " `draft` event and closes; each `data:` is the JSON of GET /progress."
        ),
        "content": {
            "text/event-stream": {
                "schema": {"type": "string"},
                "example": 'event: progress\nid: 1\ndata: {"campaign_id": "…", "state": "running", …}\n\n',
            }
        },
    }
}
CSV_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"description": "The recipient log as CSV.", "content": {"text/csv": {"schema": {"type": "string"}}}}
}

StateFilter = Annotated[
    Annotated[str, Text(300)] | None, Query(description="state, or states separated by commas")
]
ErrorCodeFilter = Annotated[int | None, Query(ge=0, le=INT4_MAX)]
PhoneFilter = Annotated[Annotated[str, Text(40)] | None, Query()]
After = Annotated[int, Query(ge=0, le=INT8_MAX, description="return rows with an id above this one")]
RecipientId = Annotated[int, Path(ge=1, le=INT8_MAX)]
MAX_PROGRESS_IDS = 50
PROGRESS_READS_AT_ONCE = 4  # of one request for several campaigns' progress
Limit = Annotated[int, Query(ge=1, le=1000)]


def _filters(
    tenant: TenantContext, state: str | None, error_code: int | None, phone: str | None
) -> RecipientFilters:
    states = None
    if state:
        states = [part.strip() for part in state.split(",") if part.strip()]
        unknown = [name for name in states if name not in RECIPIENT_STATES]
        if unknown:
            raise InputError.single("state", f"unknown state {unknown[0]!r}", allowed=list(RECIPIENT_STATES))
    phone_e164 = None
    if phone:
        try:
            phone_e164 = to_e164(phone, tenant.default_region)
        except InvalidPhone as exc:
            raise InputError.single("phone", str(exc)) from exc
    return RecipientFilters(states=states, error_code=error_code, phone_e164=phone_e164)


async def _require_campaign(pool: Pool, tenant: TenantContext, campaign_id: UUID) -> None:
    if not await reports.campaign_exists(pool, tenant_id=tenant.tenant_id, campaign_id=campaign_id):
        raise not_found("campaign not found")


@router.get("/{campaign_id}/recipients")
async def list_recipients(
    campaign_id: UUID,
    tenant: Tenant,
    pool: Pool,
    state: StateFilter = None,
    error_code: ErrorCodeFilter = None,
    phone: PhoneFilter = None,
    after: After = 0,
    limit: Limit = 100,
) -> dict[str, Any]:
    filters = _filters(tenant, state, error_code, phone)
    await _require_campaign(pool, tenant, campaign_id)
    return await reports.recipients_page(
        pool, tenant_id=tenant.tenant_id, campaign_id=campaign_id, filters=filters, after=after, limit=limit
    )


@router.get("/{campaign_id}/recipients.csv", response_class=CsvFile, responses=CSV_RESPONSE)
async def export_recipients(
    campaign_id: UUID,
    tenant: Tenant,
    pool: Pool,
    state: StateFilter = None,
    error_code: ErrorCodeFilter = None,
    phone: PhoneFilter = None,
    bom: Annotated[bool, Query(description="start with a UTF-8 byte order mark (for Excel)")] = False,
) -> StreamingResponse:
    filters = _filters(tenant, state, error_code, phone)
    await _require_campaign(pool, tenant, campaign_id)
    body = reports.recipients_csv(
        pool, tenant_id=tenant.tenant_id, campaign_id=campaign_id, filters=filters, bom=bom
    )
    return StreamingResponse(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="campaign-{campaign_id}-recipients.csv"'},
    )


@router.get("/progress")
async def get_progress_of_many(
    tenant: Tenant,
    pool: Pool,
    request: Request,
    ids: Annotated[
        list[Annotated[str, Text(40 * MAX_PROGRESS_IDS)]],
        Query(
            min_length=1,
            max_length=MAX_PROGRESS_IDS,
            description=f"Campaign ids, repeated or separated by commas (at most {MAX_PROGRESS_IDS}).",
        ),
    ],
) -> dict[str, Any]:
    """The progress of several campaigns in one request (a list page's campaigns): ``items`` holds
    each found campaign's ``GET /{campaign_id}/progress`` in the order asked, ``missing`` the ids
    the tenant has no campaign for."""
    wanted = _campaign_ids(ids)
    clock = request.app.state.clock
    reads = asyncio.Semaphore(PROGRESS_READS_AT_ONCE)

    async def progress_of(campaign_id: UUID) -> Progress | None:
        # The single route's own read, a few at a time so one request cannot take the pool.
        async with reads:
            return await reports.load_progress(
                pool, tenant_id=tenant.tenant_id, campaign_id=campaign_id, clock=clock
            )

    found = await asyncio.gather(*(progress_of(campaign_id) for campaign_id in wanted))
    return {
        "items": [progress.as_dict() for progress in found if progress is not None],
        "missing": [str(cid) for cid, progress in zip(wanted, found, strict=True) if progress is None],
    }


def _campaign_ids(values: list[str]) -> list[UUID]:
    """The distinct ids of ``ids`` (repeated, comma-separated or both), or 422 naming the field."""
    parts = [part.strip() for value in values for part in value.split(",") if part.strip()]
    try:
        wanted = list(dict.fromkeys(UUID(part) for part in parts))
    except ValueError:
        raise InputError.single("ids", "each id must be a campaign id (a UUID)") from None
    if not wanted:
        raise InputError.single("ids", "give at least one campaign id")
    if len(wanted) > MAX_PROGRESS_IDS:
        raise InputError.single("ids", f"at most {MAX_PROGRESS_IDS} campaign ids")
    return wanted


@router.get("/{campaign_id}/progress")
async def get_progress(campaign_id: UUID, tenant: Tenant, pool: Pool, request: Request) -> dict[str, Any]:
    """Counts by state, rate, the estimated finish (rate and sending windows considered) and, for
    a campaign that waits, what for: ``waiting``, ``hold_reason`` and ``hold_until``."""
    progress = await reports.load_progress(
        pool, tenant_id=tenant.tenant_id, campaign_id=campaign_id, clock=request.app.state.clock
    )
    if progress is None:
        raise not_found("campaign not found")
    return progress.as_dict()


def _sse(event: str, sequence: int, progress: Progress) -> bytes:
    data = orjson.dumps(progress.as_dict()).decode()
    return f"event: {event}\nid: {sequence}\ndata: {data}\n\n".encode()


def _hub(request: Request) -> ProgressHub:
    hub: ProgressHub = request.app.state.progress_hub
    return hub


@router.get("/{campaign_id}/progress/stream", response_class=EventStream, responses=SSE_RESPONSE)
async def stream_progress(
    campaign_id: UUID, tenant: Tenant, pool: Pool, hub: Annotated[ProgressHub, Depends(_hub)]
) -> StreamingResponse:
    """Server-sent events: ``progress`` while the campaign runs, then one event named after the
    final state (``completed``, ``cancelled`` or ``failed``), then the stream closes. A draft's
    stream sends one ``draft`` event and closes; every stream closes after a maximum lifetime (the
    client reconnects). Streams per API key and per server are capped: 429 with Retry-After."""
    await _require_campaign(pool, tenant, campaign_id)
    try:
        ticket = hub.admit(tenant.api_key_id)
    except StreamLimitReached as exc:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS, str(exc), {"Retry-After": str(exc.retry_after_s)}
        ) from None

    async def events() -> AsyncIterator[bytes]:
        try:
            yield b"retry: 1000\n\n"
            sequence = 0
            async for progress in hub.follow(tenant.tenant_id, campaign_id):
                sequence += 1
                if progress.state == "draft":
                    yield f"retry: {DRAFT_RECONNECT_MS}\n\n".encode()
                    yield _sse("draft", sequence, progress)
                else:
                    yield _sse(progress.state if progress.final else "progress", sequence, progress)
        finally:
            ticket.release()

    body = events()
    # A stream abandoned before its first chunk never runs its finally: its place is freed with it.
    weakref.finalize(body, ticket.release)
    return StreamingResponse(
        body,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get("/{campaign_id}/events")
async def list_campaign_events(
    campaign_id: UUID, tenant: Tenant, pool: Pool, after: After = 0, limit: Limit = 100
) -> dict[str, Any]:
    await _require_campaign(pool, tenant, campaign_id)
    return await reports.campaign_events(
        pool, tenant_id=tenant.tenant_id, campaign_id=campaign_id, after=after, limit=limit
    )


@router.get("/{campaign_id}/recipients/{recipient_id}/events")
async def list_recipient_events(
    campaign_id: UUID, recipient_id: RecipientId, tenant: Tenant, pool: Pool
) -> dict[str, Any]:
    events = await reports.recipient_events(
        pool, tenant_id=tenant.tenant_id, campaign_id=campaign_id, recipient_id=recipient_id
    )
    if events is None:
        raise not_found("recipient not found")
    return {"items": events}

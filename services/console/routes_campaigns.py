"""Campaign pages: the list (live), a campaign's page (progress, actions, recipient log, CSV) and
a recipient's event history."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Annotated, Any
from uuid import UUID

import orjson
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response, StreamingResponse

from services.console.sse import event, parse_events
from services.console.upstream import ApiError
from services.console.web import (
    TEMPLATES,
    Form,
    TenantSession,
    api,
    console_of,
    error_page,
    forwarded_for,
    render,
)
from services.console.web import redirect as see_other
from shared.recipient_states import RECIPIENT_STATES

router = APIRouter()

FINAL_STATES = frozenset({"completed", "cancelled", "failed"})
CAMPAIGN_STATES = (
    "draft",
    "scheduled",
    "snapshotting",
    "running",
    "paused",
    "completed",
    "cancelled",
    "failed",
)
KINDS = ("campaign", "test", "manual")
ACTIONS = {
    "start": "Started: the audience is being taken and the messages go out at your rate.",
    "pause": "Paused: no message of this campaign starts from now on.",
    "resume": "Resumed: the recipients left are being sent to.",
    "cancel": "Cancelled: recipients not yet sent to will get nothing.",
    "retry-failed": "The failed recipients are being sent to again.",
}
LIST_PAGE = 25
LOG_PAGE = 50
LIVE_INTERVAL_S = 2.0
LIVE_LIFETIME_S = 900.0

Text = Annotated[str, Query(max_length=200)]
CampaignId = Annotated[UUID, Path()]


async def _progress(request: Request, session: Any, campaign_id: str) -> dict[str, Any] | None:
    try:
        result: dict[str, Any] = await api(
            request, session, "GET", f"/v1/campaigns/{campaign_id}/progress", tracker=True
        )
    except ApiError:
        return None
    return result


async def _progress_of_many(request: Request, session: Any, campaign_ids: list[str]) -> dict[str, Any]:
    """The progress of each campaign found, by id, in one request to the tracker (nothing when it
    fails: the rows show what the campaign list said)."""
    if not campaign_ids:
        return {}
    try:
        answer = await api(
            request,
            session,
            "GET",
            "/v1/campaigns/progress",
            tracker=True,
            params={"ids": ",".join(campaign_ids)},
        )
    except ApiError:
        return {}
    return {item["campaign_id"]: item for item in answer["items"]}


@router.get("/campaigns")
async def campaigns_page(
    request: Request,
    session: TenantSession,
    state: Text = "",
    kind: Text = "",
    q: Text = "",
    before: Text = "",
    before_id: Text = "",
) -> Response:
    filters = {"state": state, "kind": kind, "name": q}
    try:
        shown = await api(
            request,
            session,
            "GET",
            "/v1/campaigns",
            params={"limit": LIST_PAGE, **filters, "before": before, "before_id": before_id},
        )
    except ApiError as exc:
        return error_page(request, exc)
    live = [
        c["id"] for c in shown if c["state"] not in FINAL_STATES and c["state"] not in ("draft", "scheduled")
    ]
    # Only campaigns still under way need their counts: an ended one is all done, a draft or a
    # scheduled one has none yet (and at a million recipients each count is a long query).
    progress = await _progress_of_many(request, session, live)
    last = shown[-1] if len(shown) == LIST_PAGE else None
    return render(
        request,
        "campaigns.html",
        {
            "rows": [(c, progress.get(c["id"])) for c in shown],
            "filters": {"state": state, "kind": kind, "q": q},
            "states": CAMPAIGN_STATES,
            "kinds": KINDS,
            "next_page": {"before": last["created_at"], "before_id": last["id"]} if last else None,
            "live_ids": live,
        },
    )


@router.get("/campaigns/live")
async def campaigns_live(
    request: Request, session: TenantSession, id: Annotated[list[UUID], Query(max_length=LIST_PAGE)]
) -> Response:
    """Server-sent events: each open campaign's row of the list, every two seconds, until they
    all end (then ``done``, which closes the stream in the page)."""
    open_ids = [str(campaign_id) for campaign_id in id]
    template = TEMPLATES.get_template("_campaign_cells.html")

    async def rows() -> AsyncIterator[bytes]:
        deadline = time.monotonic() + LIVE_LIFETIME_S
        yield b"retry: 2000\n\n"
        while open_ids and time.monotonic() < deadline and not await request.is_disconnected():
            found = await _progress_of_many(request, session, open_ids)
            for campaign_id in list(open_ids):
                progress = found.get(campaign_id)
                if progress is None:
                    continue
                html = template.render(
                    campaign={"id": campaign_id, "state": progress["state"]}, progress=progress
                )
                yield event(f"row-{campaign_id}", html)
                if progress["state"] in FINAL_STATES:
                    open_ids.remove(campaign_id)
            if open_ids:
                await asyncio.sleep(LIVE_INTERVAL_S)
        yield event("done", "")

    return StreamingResponse(rows(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})


async def campaign_page(
    request: Request,
    session: Any,
    campaign_id: UUID,
    *,
    filters: dict[str, str],
    after: int = 0,
    notice: str | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    log_params = {"limit": LOG_PAGE, "after": after or None, **filters}
    campaign_call = api(request, session, "GET", f"/v1/campaigns/{campaign_id}")
    log_call = api(
        request, session, "GET", f"/v1/campaigns/{campaign_id}/recipients", tracker=True, params=log_params
    )
    campaign, progress, log = await asyncio.gather(
        campaign_call, _progress(request, session, str(campaign_id)), log_call, return_exceptions=True
    )
    if isinstance(campaign, ApiError):
        return error_page(request, campaign)
    if isinstance(campaign, BaseException):
        raise campaign
    log_error = None
    if isinstance(log, ApiError):
        log_error, log = log.detail, {"items": [], "next_after": None}
    elif isinstance(log, BaseException):
        raise log
    return render(
        request,
        "campaign.html",
        {
            "campaign": campaign,
            "progress": progress,
            "log": log,
            "log_error": log_error,
            "filters": filters,
            "after": after,
            "recipient_states": RECIPIENT_STATES,
            "notice": notice,
            "error": error,
            "final": campaign["state"] in FINAL_STATES,
            "csv_query": "&".join(f"{k}={v}" for k, v in filters.items() if v),
        },
        status_code=status_code,
    )


def _log_filters(state: str, error_code: str, phone: str) -> dict[str, str]:
    return {"state": state, "error_code": error_code, "phone": phone}


@router.get("/campaigns/{campaign_id}")
async def show_campaign(
    request: Request,
    session: TenantSession,
    campaign_id: CampaignId,
    state: Text = "",
    error_code: Text = "",
    phone: Text = "",
    after: Annotated[int, Query(ge=0)] = 0,
    done: Text = "",
) -> Response:
    return await campaign_page(
        request,
        session,
        campaign_id,
        filters=_log_filters(state, error_code, phone),
        after=after,
        notice=ACTIONS.get(done),
    )


@router.post("/campaigns/{campaign_id}/actions")
async def act(request: Request, session: TenantSession, campaign_id: CampaignId, form: Form) -> Response:
    action = str(form.get("action") or "")
    if action not in ACTIONS:
        return await campaign_page(
            request,
            session,
            campaign_id,
            filters=_log_filters("", "", ""),
            error=f"Unknown action {action!r}.",
            status_code=422,
        )
    try:
        await api(request, session, "POST", f"/v1/campaigns/{campaign_id}/{action}")
    except ApiError as exc:
        if exc.status == 404:
            return error_page(request, exc)
        return await campaign_page(
            request,
            session,
            campaign_id,
            filters=_log_filters("", "", ""),
            error=exc.detail,
            status_code=exc.status,
        )
    return see_other(request, f"/campaigns/{campaign_id}?done={action}")


@router.get("/campaigns/{campaign_id}/progress/stream")
async def progress_stream(request: Request, session: TenantSession, campaign_id: CampaignId) -> Response:
    """The tracker's progress stream for this campaign, each event re-rendered as the page's
    progress panel for htmx; ``done`` after the final state closes it in the page."""
    stack = AsyncExitStack()
    try:
        upstream = await stack.enter_async_context(
            console_of(request).upstream.stream(
                f"/v1/campaigns/{campaign_id}/progress/stream",
                credential=session.credential or "",
                forwarded_for=forwarded_for(request),
                read_timeout_s=60.0,
            )
        )
    except ApiError as exc:
        await stack.aclose()
        # 204 tells the browser's EventSource not to reconnect (a campaign that is gone, or the
        # tracker's stream limits reached: the page keeps the progress it rendered).
        return Response(status_code=204 if exc.status in (404, 429) else 502)
    template = TEMPLATES.get_template("_progress.html")

    async def events() -> AsyncIterator[bytes]:
        async with stack:
            yield b"retry: 2000\n\n"
            async for name, data in parse_events(upstream.aiter_lines()):
                progress = orjson.loads(data)
                yield event("progress", template.render(progress=progress, campaign_id=str(campaign_id)))
                if name in FINAL_STATES or name == "draft":
                    yield event("done", "")
                    return

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})


@router.get("/campaigns/{campaign_id}/recipients.csv")
async def export_csv(
    request: Request,
    session: TenantSession,
    campaign_id: CampaignId,
    state: Text = "",
    error_code: Text = "",
    phone: Text = "",
    bom: bool = False,
) -> Response:
    stack = AsyncExitStack()
    try:
        upstream = await stack.enter_async_context(
            console_of(request).upstream.stream(
                f"/v1/campaigns/{campaign_id}/recipients.csv",
                credential=session.credential or "",
                forwarded_for=forwarded_for(request),
                params={**_log_filters(state, error_code, phone), "bom": "true" if bom else None},
            )
        )
    except ApiError as exc:
        await stack.aclose()
        return error_page(request, exc)

    async def body() -> AsyncIterator[bytes]:
        async with stack:
            async for chunk in upstream.aiter_raw():
                yield chunk

    headers = {
        "Content-Disposition": upstream.headers.get(
            "content-disposition", f'attachment; filename="campaign-{campaign_id}-recipients.csv"'
        ),
        "Cache-Control": "no-store",
    }
    return StreamingResponse(body(), media_type="text/csv; charset=utf-8", headers=headers)


@router.get("/campaigns/{campaign_id}/recipients/{recipient_id}")
async def recipient_history(
    request: Request,
    session: TenantSession,
    campaign_id: CampaignId,
    recipient_id: Annotated[int, Path(ge=1, le=2**63 - 1)],
) -> Response:
    try:
        campaign, events = await asyncio.gather(
            api(request, session, "GET", f"/v1/campaigns/{campaign_id}"),
            api(
                request,
                session,
                "GET",
                f"/v1/campaigns/{campaign_id}/recipients/{recipient_id}/events",
                tracker=True,
            ),
        )
    except ApiError as exc:
        return error_page(request, exc)
    return render(
        request,
        "recipient.html",
        {"campaign": campaign, "recipient_id": recipient_id, "events": events["items"]},
    )

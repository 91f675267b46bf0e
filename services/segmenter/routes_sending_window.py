"""A tenant's sending window (quiet hours): read, set, remove."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from fastapi import APIRouter

from services.segmenter import queries, tenants
from services.segmenter.deps import LifecycleDep, PublisherDep
from services.segmenter.schemas import SendingWindowIn, SendingWindowOut
from shared.http import Pool, Tenant
from shared.sending_window import SendingWindow, is_open, next_closing, next_opening

router = APIRouter(prefix="/v1/tenant/sending-window", tags=["tenants"])


def window_out(row: object, lifecycle: LifecycleDep) -> SendingWindowOut:
    data = row["sending_window"]  # type: ignore[index]
    zone = row["timezone"]  # type: ignore[index]
    window = None if data is None else SendingWindow.from_json(data)
    tz = ZoneInfo(zone)
    now = lifecycle.clock.now()
    open_now = is_open(window, now, tz)
    return SendingWindowOut(
        window=None if window is None else window.to_json(),
        timezone=zone,
        open_now=open_now,
        next_opening=None if open_now else next_opening(window, now, tz),
        next_closing=next_closing(window, now, tz),
    )


@router.get("", response_model=SendingWindowOut)
async def show_window(tenant: Tenant, pool: Pool, lifecycle: LifecycleDep) -> SendingWindowOut:
    """The tenant's window, whether it is open now and when it next opens or closes."""
    return window_out(await tenants.get_tenant(pool, tenant.tenant_id), lifecycle)


@router.put("", response_model=SendingWindowOut)
async def set_window(
    body: SendingWindowIn, tenant: Tenant, pool: Pool, publisher: PublisherDep, lifecycle: LifecycleDep
) -> SendingWindowOut:
    """Campaigns send only inside this window; a running one holds at its end and resumes by
    itself at the next opening (within a second of either)."""
    window = SendingWindow.from_json(body.model_dump())
    row = await pool.fetchrow(queries.SET_SENDING_WINDOW, tenant.tenant_id, window.to_json())
    await tenants.announce(publisher, row)
    return window_out(row, lifecycle)


@router.delete("", response_model=SendingWindowOut)
async def remove_window(
    tenant: Tenant, pool: Pool, publisher: PublisherDep, lifecycle: LifecycleDep
) -> SendingWindowOut:
    """Campaigns send at any time again; held ones resume."""
    row = await pool.fetchrow(queries.SET_SENDING_WINDOW, tenant.tenant_id, None)
    await tenants.announce(publisher, row)
    return window_out(row, lifecycle)

"""Operator pages (operator token): tenants (create, deactivate, rate and tier, credits), parked
messages, the audit log.

The tenants page is the operator API's tenant list (filtered by name and by whether they are
active, a page at a time); a tenant's page is the operator API's single tenant (its settings and
credits) and that tenant's audit log.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote
from uuid import UUID

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from services.console.session import Session
from services.console.upstream import ApiError
from services.console.web import Form, OperatorSession, api, error_page, redirect, render

router = APIRouter(prefix="/operator")

Text = Annotated[str, Query(max_length=200)]
TenantId = Annotated[UUID, Path()]
QueueName = Annotated[str, Path(max_length=255)]
NOTICES = {
    "updated": "The tenant was updated.",
    "credited": "The credits were changed.",
    "deactivated": "The tenant was deactivated: its keys no longer work and nothing more is sent for it.",
    "activated": "The tenant is active again.",
}


def _int_or_text(value: str) -> int | str:
    return int(value) if value.strip().isdigit() else value.strip()


TENANTS_PAGE = 50
ACTIVE_FILTERS = {"": None, "active": "true", "inactive": "false"}


async def _tenants_page(
    request: Request,
    session: Session,
    *,
    listing: dict[str, str] | None = None,
    created: dict[str, Any] | None = None,
    error: str | None = None,
    fields: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    shown = listing or {}
    params = {
        "name": shown.get("q", "").strip(),
        "active": ACTIVE_FILTERS.get(shown.get("status", "")),
        "before": shown.get("before"),
        "before_id": shown.get("before_id"),
        "limit": TENANTS_PAGE,
    }
    try:
        page = await api(request, session, "GET", "/v1/operator/tenants", params=params)
    except ApiError as exc:
        return error_page(request, exc)
    next_page = None
    if page["next_before"]:
        next_page = {"before": page["next_before"], "before_id": page["next_before_id"]}
    return render(
        request,
        "operator_tenants.html",
        {
            "tenants": page["items"],
            "next_page": next_page,
            "filters": {"q": shown.get("q", ""), "status": shown.get("status", "")},
            "created": created,
            "error": error,
            "fields": fields or {},
        },
        status_code=status_code,
    )


@router.get("/tenants")
async def tenants_page(
    request: Request,
    session: OperatorSession,
    q: Text = "",
    status: Text = "",
    before: Text = "",
    before_id: Text = "",
) -> Response:
    listing = {"q": q, "status": status, "before": before, "before_id": before_id}
    return await _tenants_page(request, session, listing=listing)


@router.post("/tenants")
async def create_tenant(request: Request, session: OperatorSession, form: Form) -> Response:
    fields = {k: v for k, v in form.items() if isinstance(v, str) and k != "csrf_token"}
    body: dict[str, Any] = {
        "name": fields.get("name", ""),
        "twilio_account_sid": fields.get("twilio_account_sid", ""),
        "twilio_auth_token": fields.get("twilio_auth_token", ""),
        "whatsapp_from": fields.get("whatsapp_from", ""),
        "timezone": fields.get("timezone") or "UTC",
    }
    if fields.get("unlimited_rate") == "on":
        body["unlimited_rate"] = True
    elif fields.get("rate_per_second", "").strip():
        body["rate_per_second"] = _int_or_text(fields["rate_per_second"])
    credits = {k: _int_or_text(fields[k]) for k in ("plan_monthly", "purchased") if fields.get(k, "").strip()}
    if credits:
        body["credits"] = credits
    try:
        created = await api(request, session, "POST", "/v1/operator/tenants", json=body)
    except ApiError as exc:
        fields.pop("twilio_auth_token", None)
        return await _tenants_page(request, session, error=exc.detail, fields=fields, status_code=exc.status)
    return await _tenants_page(request, session, created=created, status_code=201)


async def _tenant_page(
    request: Request,
    session: Session,
    tenant_id: UUID,
    *,
    notice: str | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    try:
        shown = await api(request, session, "GET", f"/v1/operator/tenants/{tenant_id}")
        page = await api(
            request, session, "GET", "/v1/operator/audit", params={"tenant_id": str(tenant_id), "limit": 50}
        )
    except ApiError as exc:
        return error_page(request, exc)
    return render(
        request,
        "operator_tenant.html",
        {
            "tenant_id": tenant_id,
            "tenant": shown["tenant"],
            "credits": shown["credits"],
            "entries": page["entries"],
            "notice": notice,
            "error": error,
        },
        status_code=status_code,
    )


@router.get("/tenants/{tenant_id}")
async def tenant_page(
    request: Request, session: OperatorSession, tenant_id: TenantId, done: Text = ""
) -> Response:
    return await _tenant_page(request, session, tenant_id, notice=NOTICES.get(done))


@router.post("/tenants/{tenant_id}")
async def update_tenant(
    request: Request, session: OperatorSession, tenant_id: TenantId, form: Form
) -> Response:
    action = str(form.get("action") or "update")
    params: dict[str, Any] = {}
    body: dict[str, Any] = {}
    if action in ("deactivate", "activate"):
        params["active"] = "true" if action == "activate" else "false"
    elif form.get("unlimited_rate") == "on":
        body["unlimited_rate"] = True
    else:
        body["rate_per_second"] = _int_or_text(str(form.get("rate_per_second") or ""))
    try:
        await api(request, session, "PATCH", f"/v1/operator/tenants/{tenant_id}", json=body, params=params)
    except ApiError as exc:
        if exc.status == 404:
            return error_page(request, exc)
        return await _tenant_page(request, session, tenant_id, error=exc.detail, status_code=exc.status)
    done = {"deactivate": "deactivated", "activate": "activated"}.get(action, "updated")
    return await _tenant_page(request, session, tenant_id, notice=NOTICES[done])


@router.post("/tenants/{tenant_id}/credits")
async def change_credits(
    request: Request, session: OperatorSession, tenant_id: TenantId, form: Form
) -> Response:
    body: dict[str, Any] = {}
    if str(form.get("top_up") or "").strip():
        body["top_up"] = _int_or_text(str(form.get("top_up")))
    if str(form.get("plan_monthly") or "").strip():
        body["plan_monthly"] = _int_or_text(str(form.get("plan_monthly")))
    if str(form.get("note") or "").strip():
        body["note"] = str(form.get("note"))
    try:
        await api(request, session, "POST", f"/v1/operator/tenants/{tenant_id}/credits", json=body)
    except ApiError as exc:
        if exc.status == 404:
            return error_page(request, exc)
        return await _tenant_page(request, session, tenant_id, error=exc.detail, status_code=exc.status)
    return redirect(request, f"/operator/tenants/{tenant_id}?done=credited")


@router.get("/parked")
async def parked_page(request: Request, session: OperatorSession) -> Response:
    try:
        listing = await api(request, session, "GET", "/v1/operator/parked")
    except ApiError as exc:
        return error_page(request, exc)
    return render(request, "operator_parked.html", {"queues": listing["queues"]})


async def _queue_page(
    request: Request, session: Session, queue: str, *, notice: str | None = None, status_code: int = 200
) -> Response:
    try:
        parked = await api(
            request, session, "GET", f"/v1/operator/parked/{quote(queue, safe='')}", params={"limit": 50}
        )
    except ApiError as exc:
        return error_page(request, exc)
    return render(
        request, "operator_queue.html", {"parked": parked, "notice": notice}, status_code=status_code
    )


@router.get("/parked/{queue}")
async def queue_page(request: Request, session: OperatorSession, queue: QueueName) -> Response:
    return await _queue_page(request, session, queue)


@router.post("/parked/{queue}")
async def act_on_parked(request: Request, session: OperatorSession, queue: QueueName, form: Form) -> Response:
    action = str(form.get("action") or "")
    if action not in ("replay", "purge"):
        return await _queue_page(
            request, session, queue, notice=f"Unknown action {action!r}.", status_code=422
        )
    message_id = str(form.get("id") or "")
    selection: dict[str, Any] = {"ids": [message_id]} if message_id else {"all": True}
    try:
        result = await api(
            request, session, "POST", f"/v1/operator/parked/{quote(queue, safe='')}/{action}", json=selection
        )
    except ApiError as exc:
        return error_page(request, exc)
    count = result.get("replayed", result.get("purged", 0))
    return await _queue_page(request, session, queue, notice=f"{action.capitalize()}: {count} message(s).")


@router.get("/audit")
async def audit_page(
    request: Request,
    session: OperatorSession,
    tenant_id: Text = "",
    action: Text = "",
    before_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
) -> Response:
    try:
        page = await api(
            request,
            session,
            "GET",
            "/v1/operator/audit",
            params={
                "tenant_id": tenant_id.strip(),
                "action": action.strip(),
                "before_id": before_id,
                "limit": 100,
            },
        )
    except ApiError as exc:
        if exc.status != 422:
            return error_page(request, exc)
        return render(
            request,
            "operator_audit.html",
            {
                "entries": [],
                "next_before_id": None,
                "filters": {"tenant_id": tenant_id, "action": action},
                "error": exc.detail,
            },
            status_code=422,
        )
    return render(
        request,
        "operator_audit.html",
        {
            "entries": page["entries"],
            "next_before_id": page["next_before_id"],
            "filters": {"tenant_id": tenant_id, "action": action},
        },
    )

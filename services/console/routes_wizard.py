"""The campaign wizard: (1) the audience with its live count, sample and exclusions, (2) the
message with its preview for the sample recipients, (3) a test send to the tenant's own numbers
with its delivery status, (4) send now or keep as a draft.

One form holds the four steps. Without JavaScript each button posts the whole form and the page
comes back with what it asked for (a preview, a test send's status) and every field kept; with
htmx the audience and message panels update as the fields change, and the test send's status
refreshes itself until the message reached its final state.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from starlette.datastructures import FormData

from services.console import wizard
from services.console.session import Session
from services.console.upstream import ApiError
from services.console.web import Form, TenantSession, api, error_page, is_htmx, redirect, render
from shared.recipient_states import OPEN_RECIPIENT_STATES
from shared.templating import TenantStyle

router = APIRouter()

DEFAULT_FIELDS = {
    "segment": "all_customers",
    "exclude_suppressed": "on",
    "message_kind": "body",
    "body": "",
}


# Form fields that may be sent more than once (a list to pick several from).
MULTIPLE = ("service_ids", "location_ids")


def _fields(form: FormData) -> dict[str, str]:
    fields = {key: value for key, value in form.items() if isinstance(value, str) and key != "csrf_token"}
    for name in MULTIPLE:
        chosen = [value for value in form.getlist(name) if isinstance(value, str) and value.strip()]
        if chosen:
            fields[name] = ",".join(chosen)
    return fields


async def _choices(request: Request, session: Session, path: str) -> list[dict[str, Any]] | None:
    """The tenant's services or locations to pick from, or None where there are too many to list
    (or the API does not answer): the page then takes the booking system's ids as text."""
    try:
        page = await api(request, session, "GET", path, params={"limit": wizard.PICKER_MAX})
    except ApiError:
        return None
    if page["next_after"] is not None:
        return None
    items: list[dict[str, Any]] = page["items"]
    return items


async def _tenant(request: Request, session: Session) -> dict[str, Any]:
    tenant: dict[str, Any] = await api(request, session, "GET", "/v1/tenant")
    return tenant


async def _templates(request: Request, session: Session) -> tuple[list[dict[str, Any]], str | None]:
    try:
        return await api(request, session, "GET", "/v1/templates"), None
    except ApiError as exc:
        return [], exc.detail


async def _preview(request: Request, session: Session, fields: dict[str, str]) -> dict[str, Any]:
    """The audience preview, or the API's refusal as ``{"error": …}``."""
    try:
        result: dict[str, Any] = await api(
            request, session, "POST", "/v1/audiences/preview", json=wizard.audience_body(fields)
        )
    except ApiError as exc:
        return {"error": exc.detail, "fields": exc.fields}
    return result


def _message_preview(
    tenant: dict[str, Any], fields: dict[str, str], preview: dict[str, Any]
) -> dict[str, Any]:
    if "error" in preview:
        return {"samples": [], "problems": ["Fix the audience first: " + preview["error"]]}
    template = wizard.template_body(fields)
    if template.get("body") == "":
        return {"samples": [], "problems": ["Write a message, or choose a template."]}
    style = TenantStyle(
        name=tenant["name"],
        business_name=tenant.get("business_name"),
        timezone=tenant["timezone"],
        locale=tenant["locale"],
    )
    samples, problems = wizard.render_samples(
        template, preview.get("sample", []), style=style, provides_appointment=preview["provides_appointment"]
    )
    return {"samples": samples[:5], "problems": problems}


async def _test_send(request: Request, session: Session, fields: dict[str, str]) -> dict[str, Any]:
    try:
        campaign = await api(
            request,
            session,
            "POST",
            "/v1/sends/test",
            json={"template": wizard.template_body(fields), "name": fields.get("name") or None},
        )
    except ApiError as exc:
        return {"error": exc.detail}
    return {"campaign": campaign, "recipients": [], "final": False}


async def _test_status(request: Request, session: Session, campaign_id: UUID) -> dict[str, Any]:
    campaign, log = await asyncio.gather(
        api(request, session, "GET", f"/v1/campaigns/{campaign_id}"),
        api(
            request,
            session,
            "GET",
            f"/v1/campaigns/{campaign_id}/recipients",
            tracker=True,
            params={"limit": 50},
        ),
    )
    recipients = log["items"]
    final = campaign["state"] in ("completed", "cancelled", "failed") and all(
        r["state"] not in OPEN_RECIPIENT_STATES and r["state"] != "sent" for r in recipients
    )
    return {"campaign": campaign, "recipients": recipients, "final": final}


async def _page(
    request: Request,
    session: Session,
    fields: dict[str, str],
    *,
    preview: dict[str, Any] | None = None,
    message: dict[str, Any] | None = None,
    test: dict[str, Any] | None = None,
    error: str | None = None,
    error_fields: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    try:
        tenant, (templates, templates_error), window, services, locations = await asyncio.gather(
            _tenant(request, session),
            _templates(request, session),
            _window(request, session),
            _choices(request, session, "/v1/services"),
            _choices(request, session, "/v1/locations"),
        )
    except ApiError as exc:
        return error_page(request, exc)
    selected = next((t for t in templates if t["sid"] == fields.get("content_sid")), None)
    return render(
        request,
        "wizard.html",
        {
            "fields": fields,
            "tenant": tenant,
            "segments": wizard.SEGMENTS,
            "windowed": wizard.WINDOWED,
            "shortcodes": wizard.SHORTCODE_GROUPS,
            "templates": templates,
            "templates_error": templates_error,
            "selected_template": selected,
            "preview": preview,
            "message": message,
            "test": test,
            "error": error,
            "error_fields": error_fields or {},
            "max_body": wizard.MAX_BODY_CHARS,
            "window": window,
            "services": services,
            "locations": locations,
            "picked_services": wizard.picked(fields.get("service_ids", "")),
            "picked_locations": wizard.picked(fields.get("location_ids", "")),
        },
        status_code=status_code,
    )


async def _window(request: Request, session: Session) -> dict[str, Any] | None:
    """The tenant's sending window and whether it is open, or None where the API has none."""
    try:
        window: dict[str, Any] = await api(request, session, "GET", "/v1/tenant/sending-window")
    except ApiError:
        return None
    return window


@router.get("/campaigns/new")
async def new_campaign(request: Request, session: TenantSession) -> Response:
    return await _page(request, session, dict(DEFAULT_FIELDS))


@router.post("/campaigns/new")
async def submit_wizard(request: Request, session: TenantSession, form: Form) -> Response:
    """The form's buttons without JavaScript: preview, test, draft or send."""
    fields = _fields(form)
    action = fields.get("action", "preview")
    if action in ("draft", "send", "schedule"):
        body: dict[str, Any] = {
            "name": fields.get("name", "").strip(),
            "audience": wizard.audience_body(fields),
            "template": wizard.template_body(fields),
            "start": action == "send",
        }
        if action == "schedule":
            body["schedule"] = wizard.schedule_body(fields, session.timezone)
        try:
            campaign = await api(request, session, "POST", "/v1/campaigns", json=body)
        except ApiError as exc:
            return await _page(
                request, session, fields, error=exc.detail, error_fields=exc.fields, status_code=exc.status
            )
        return redirect(request, f"/campaigns/{campaign['id']}")
    tenant = await _tenant(request, session)
    preview = await _preview(request, session, fields)
    message = _message_preview(tenant, fields, preview)
    test = await _test_send(request, session, fields) if action == "test" else None
    return await _page(request, session, fields, preview=preview, message=message, test=test)


@router.post("/campaigns/new/audience")
async def audience_panel(request: Request, session: TenantSession, form: Form) -> Response:
    preview = await _preview(request, session, _fields(form))
    return render(request, "_audience_preview.html", {"preview": preview})


@router.post("/campaigns/new/message")
async def message_panel(request: Request, session: TenantSession, form: Form) -> Response:
    fields = _fields(form)
    tenant, preview = await asyncio.gather(_tenant(request, session), _preview(request, session, fields))
    return render(
        request,
        "_message_preview.html",
        {"message": _message_preview(tenant, fields, preview), "max_body": wizard.MAX_BODY_CHARS},
    )


@router.get("/campaigns/new/variables")
async def variables_panel(
    request: Request, session: TenantSession, content_sid: Annotated[str, Query(max_length=64)] = ""
) -> Response:
    templates, _ = await _templates(request, session)
    selected = next((t for t in templates if t["sid"] == content_sid), None)
    return render(request, "_variables.html", {"selected_template": selected, "fields": {}})


@router.post("/campaigns/new/test")
async def test_panel(request: Request, session: TenantSession, form: Form) -> Response:
    return render(request, "_test_send.html", {"test": await _test_send(request, session, _fields(form))})


@router.get("/sends/{campaign_id}/status")
async def test_status(
    request: Request, session: TenantSession, campaign_id: Annotated[UUID, Path()]
) -> Response:
    try:
        test = await _test_status(request, session, campaign_id)
    except ApiError as exc:
        return error_page(request, exc)
    return render(request, "_test_send.html" if is_htmx(request) else "test_status.html", {"test": test})

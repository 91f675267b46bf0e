"""The tenant's own lists and settings: suppressions (search, add, remove, import a CSV),
credits and their history, the tenant's settings and its API keys."""

from __future__ import annotations

import asyncio
import csv
import io
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from starlette.datastructures import UploadFile

from services.console import wizard
from services.console.upstream import ApiError
from services.console.web import Form, TenantSession, api, error_page, redirect, render, set_session

router = APIRouter()

Text = Annotated[str, Query(max_length=200)]
SUPPRESSION_PAGE = 50
MAX_IMPORT_BYTES = 8 * 1024 * 1024
NOTICES = {
    "added": "The number is suppressed: it gets no message from now on.",
    "removed": "The number was removed from the list.",
    "saved": "Settings saved.",
    "revoked": "The key was revoked.",
    "window": "The sending window was saved; running campaigns follow it within a second.",
}


def phones_in_csv(text: str) -> list[str]:
    """The numbers of an uploaded list: the ``phone`` column when the first row names one,
    else the first column; blank cells skipped."""
    rows = [row for row in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in row)]
    if not rows:
        return []
    header = [cell.strip().lower() for cell in rows[0]]
    column = header.index("phone") if "phone" in header else 0
    if "phone" in header or not any(ch.isdigit() for ch in rows[0][0]):
        rows = rows[1:]
    return [row[column].strip() for row in rows if len(row) > column and row[column].strip()]


async def _suppressions_page(
    request: Request,
    session: Any,
    *,
    q: str = "",
    after: str = "",
    notice: str | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    found: dict[str, Any] | None = None
    items: list[dict[str, Any]] = []
    next_after = None
    try:
        if q:
            try:
                found = await api(request, session, "GET", f"/v1/suppressions/{quote(q, safe='')}")
            except ApiError as exc:
                if exc.status not in (404, 422):
                    raise
        else:
            page = await api(
                request,
                session,
                "GET",
                "/v1/suppressions",
                params={"after": after, "limit": SUPPRESSION_PAGE},
            )
            items, next_after = page["items"], page["next_after"]
    except ApiError as exc:
        return error_page(request, exc)
    return render(
        request,
        "suppressions.html",
        {"q": q, "found": found, "items": items, "next_after": next_after, "notice": notice, "error": error},
        status_code=status_code,
    )


@router.get("/suppressions")
async def suppressions_page(
    request: Request, session: TenantSession, q: Text = "", after: Text = "", done: Text = ""
) -> Response:
    return await _suppressions_page(request, session, q=q.strip(), after=after, notice=NOTICES.get(done))


@router.post("/suppressions")
async def add_suppression(request: Request, session: TenantSession, form: Form) -> Response:
    body = {"phone": str(form.get("phone") or ""), "reason": str(form.get("reason") or "") or None}
    try:
        await api(request, session, "POST", "/v1/suppressions", json=body)
    except ApiError as exc:
        return await _suppressions_page(request, session, error=exc.detail, status_code=exc.status)
    return redirect(request, "/suppressions?done=added")


@router.post("/suppressions/remove")
async def remove_suppression(request: Request, session: TenantSession, form: Form) -> Response:
    phone = str(form.get("phone") or "")
    try:
        await api(request, session, "DELETE", f"/v1/suppressions/{quote(phone, safe='')}")
    except ApiError as exc:
        return await _suppressions_page(request, session, error=exc.detail, status_code=exc.status)
    return redirect(request, "/suppressions?done=removed")


@router.post("/suppressions/import")
async def import_suppressions(request: Request, session: TenantSession, form: Form) -> Response:
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        return await _suppressions_page(
            request, session, error="Choose a CSV file to import.", status_code=422
        )
    raw = await upload.read(MAX_IMPORT_BYTES + 1)
    if len(raw) > MAX_IMPORT_BYTES:
        return await _suppressions_page(
            request, session, error="The file is larger than 8 MB.", status_code=413
        )
    phones = phones_in_csv(raw.decode("utf-8-sig", errors="replace"))
    if not phones:
        return await _suppressions_page(
            request, session, error="The file holds no phone numbers.", status_code=422
        )
    try:
        result = await api(
            request,
            session,
            "POST",
            "/v1/suppressions/import",
            json={"phones": phones, "reason": str(form.get("reason") or "") or None},
        )
    except ApiError as exc:
        return await _suppressions_page(
            request, session, error=f"Nothing was imported: {exc.detail}", status_code=exc.status
        )
    notice = f"Imported: {result['added']} added, {result['already_suppressed']} already on the list."
    return await _suppressions_page(request, session, notice=notice)


@router.get("/credits")
async def credits_page(
    request: Request,
    session: TenantSession,
    before_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
) -> Response:
    try:
        credits = await api(
            request, session, "GET", "/v1/credits", params={"before_id": before_id, "limit": 50}
        )
    except ApiError as exc:
        if exc.status != 404:
            return error_page(request, exc)
        credits = None  # a tenant without a credit account: its sends use none
    return render(request, "credits.html", {"credits": credits})


async def _settings_page(
    request: Request,
    session: Any,
    *,
    notice: str | None = None,
    error: str | None = None,
    error_fields: dict[str, str] | None = None,
    new_key: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    try:
        tenant, keys = await asyncio.gather(
            api(request, session, "GET", "/v1/tenant"), api(request, session, "GET", "/v1/tenant/api-keys")
        )
    except ApiError as exc:
        return error_page(request, exc)
    try:
        window = await api(request, session, "GET", "/v1/tenant/sending-window")
    except ApiError:
        window = None
    return render(
        request,
        "settings.html",
        {
            "tenant": tenant,
            "keys": keys,
            "notice": notice,
            "error": error,
            "error_fields": error_fields or {},
            "new_key": new_key,
            "window": window,
            "days": wizard.DAYS,
        },
        status_code=status_code,
    )


@router.get("/settings")
async def settings_page(request: Request, session: TenantSession, done: Text = "") -> Response:
    return await _settings_page(request, session, notice=NOTICES.get(done))


@router.post("/settings")
async def save_settings(request: Request, session: TenantSession, form: Form) -> Response:
    numbers = [
        n.strip() for n in str(form.get("test_numbers") or "").replace("\n", ",").split(",") if n.strip()
    ]
    body = {
        "timezone": str(form.get("timezone") or "").strip() or None,
        "business_name": str(form.get("business_name") or "").strip() or None,
        "test_numbers": numbers,
    }
    try:
        tenant = await api(
            request, session, "PATCH", "/v1/tenant", json={k: v for k, v in body.items() if v is not None}
        )
    except ApiError as exc:
        return await _settings_page(
            request, session, error=exc.detail, error_fields=exc.fields, status_code=exc.status
        )
    response = redirect(request, "/settings?done=saved")
    set_session(request, response, session.renamed(name=tenant["name"], timezone=tenant["timezone"]))
    return response


@router.post("/settings/window")
async def save_window(request: Request, session: TenantSession, form: Form) -> Response:
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    days = [d for d in form.getlist("window_days") if isinstance(d, str)]
    try:
        if fields.get("action") == "remove":
            await api(request, session, "DELETE", "/v1/tenant/sending-window")
        else:
            body = wizard.sending_window_body(fields, days)
            await api(request, session, "PUT", "/v1/tenant/sending-window", json=body)
    except ApiError as exc:
        return await _settings_page(request, session, error=exc.detail, status_code=exc.status)
    return redirect(request, "/settings?done=window")


@router.post("/settings/keys")
async def create_key(request: Request, session: TenantSession, form: Form) -> Response:
    try:
        created = await api(
            request, session, "POST", "/v1/tenant/api-keys", json={"name": str(form.get("name") or "")}
        )
    except ApiError as exc:
        return await _settings_page(request, session, error=exc.detail, status_code=exc.status)
    return await _settings_page(request, session, new_key=created, status_code=201)


@router.post("/settings/keys/{key_id}/revoke")
async def revoke_key(request: Request, session: TenantSession, key_id: int, form: Form) -> Response:
    try:
        await api(request, session, "DELETE", f"/v1/tenant/api-keys/{key_id}")
    except ApiError as exc:
        return await _settings_page(request, session, error=exc.detail, status_code=exc.status)
    return redirect(request, "/settings?done=revoked")


@router.post("/settings/keys/{key_id}/rotate")
async def rotate_key(request: Request, session: TenantSession, key_id: int, form: Form) -> Response:
    try:
        created = await api(request, session, "POST", f"/v1/tenant/api-keys/{key_id}/rotate", json={})
    except ApiError as exc:
        return await _settings_page(request, session, error=exc.detail, status_code=exc.status)
    return await _settings_page(request, session, new_key=created, status_code=201)

"""Signing in and out: a tenant with one of its API keys, an operator with the operator token.

A credential is checked by calling the API with it (``GET /v1/tenant``, or the audit log for the
operator token), so the API's own lockout after repeated failures applies to the console too.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from services.console import session as sessions
from services.console.upstream import ApiError
from services.console.web import (
    Form,
    clear_session,
    console_of,
    forwarded_for,
    redirect,
    render,
    session_of,
    set_session,
)

router = APIRouter()
NextUrl = Annotated[str, Query(max_length=500)]


def _safe_next(target: str, default: str) -> str:
    """Only a path of this console: never another site (an open redirect)."""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return default


@router.get("/")
async def home(request: Request) -> Response:
    session = session_of(request)
    if session.kind == "operator":
        return redirect(request, "/operator/tenants")
    return redirect(request, "/campaigns" if session.kind == "tenant" else "/signin")


@router.get("/signin")
async def sign_in_page(request: Request, next: NextUrl = "/campaigns") -> Response:
    return render(request, "signin.html", {"operator": False, "next": _safe_next(next, "/campaigns")})


@router.get("/operator/signin")
async def operator_sign_in_page(request: Request, next: NextUrl = "/operator/tenants") -> Response:
    return render(request, "signin.html", {"operator": True, "next": _safe_next(next, "/operator/tenants")})


async def _sign_in(request: Request, form: Form, *, operator: bool) -> Response:
    credential = str(form.get("credential") or "").strip()
    default = "/operator/tenants" if operator else "/campaigns"
    target = _safe_next(str(form.get("next") or default), default)
    upstream = console_of(request).upstream
    context = {"operator": operator, "next": target}
    if not credential:
        return render(request, "signin.html", {**context, "error": "Enter your key."}, status_code=422)
    try:
        if operator:
            await upstream.call(
                "GET",
                "/v1/operator/audit",
                credential=credential,
                forwarded_for=forwarded_for(request),
                params={"limit": 1},
            )
            session = sessions.signed_in("operator", credential, name="Operator")
        else:
            tenant = await upstream.call(
                "GET", "/v1/tenant", credential=credential, forwarded_for=forwarded_for(request)
            )
            session = sessions.signed_in(
                "tenant", credential, name=tenant["name"], timezone=tenant["timezone"]
            )
    except ApiError as exc:
        message = (
            "That key was not accepted." if exc.status in (401, 403) else f"Signing in failed: {exc.detail}"
        )
        return render(request, "signin.html", {**context, "error": message}, status_code=exc.status)
    response = redirect(request, target)
    request.state.session = session
    set_session(request, response, session)
    return response


@router.post("/signin")
async def sign_in(request: Request, form: Form) -> Response:
    return await _sign_in(request, form, operator=False)


@router.post("/operator/signin")
async def operator_sign_in(request: Request, form: Form) -> Response:
    return await _sign_in(request, form, operator=True)


@router.post("/signout")
async def sign_out(request: Request, form: Form) -> Response:
    operator = session_of(request).kind == "operator"
    response = redirect(request, "/operator/signin" if operator else "/signin")
    clear_session(request, response)
    return response

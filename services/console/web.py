"""What every page handler shares: the session from the cookie, the CSRF check, rendering a
template with the session's cookie set, redirects that work with and without htmx, and turning
what the API answered into a page."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2
from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.datastructures import FormData

from services.console.session import COOKIE_NAME, CSRF_FIELD, CSRF_HEADER, Session, SessionBox, anonymous
from services.console.upstream import ApiError, Upstream

# Every value is escaped; block tags leave no blank lines behind in the pages and the SSE frames.
TEMPLATES = Jinja2Templates(
    env=jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
)


def _local_time(value: str | datetime | None, timezone: str = "UTC") -> str:
    if value in (None, ""):
        return "—"
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")


def _number(value: int | float | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.1f}"
    return f"{int(value):,}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


TEMPLATES.env.filters["local_time"] = _local_time
TEMPLATES.env.filters["number"] = _number
TEMPLATES.env.filters["duration"] = _duration


class SignInRequired(Exception):
    """The page needs a tenant (or operator) session the request does not carry."""

    def __init__(self, operator: bool) -> None:
        self.operator = operator


class CsrfRefused(Exception):
    """A form posted without this session's CSRF token."""


@dataclass
class Console:
    """The app's shared parts, held on ``app.state.console``."""

    box: SessionBox
    upstream: Upstream
    cookie_secure: bool


def console_of(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


def session_of(request: Request) -> Session:
    """The request's session; a new anonymous one (with its CSRF token) when there is none."""
    cached = getattr(request.state, "session", None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    session = console_of(request).box.open(request.cookies.get(COOKIE_NAME))
    if session is None:
        session = anonymous()
        request.state.new_session = session
    request.state.session = session
    return session


def set_session(request: Request, response: Response, session: Session) -> None:
    console = console_of(request)
    response.set_cookie(
        COOKIE_NAME,
        console.box.seal(session),
        max_age=console.box.max_age_s,
        path="/",
        secure=console.cookie_secure,
        httponly=True,
        samesite="strict",
    )


def clear_session(request: Request, response: Response) -> None:
    console = console_of(request)
    response.delete_cookie(
        COOKIE_NAME, path="/", secure=console.cookie_secure, httponly=True, samesite="strict"
    )


def forwarded_for(request: Request) -> str | None:
    return request.client.host if request.client else None


def tenant_session(request: Request) -> Session:
    session = session_of(request)
    if session.kind != "tenant" or not session.credential:
        raise SignInRequired(operator=False)
    return session


def operator_session(request: Request) -> Session:
    session = session_of(request)
    if session.kind != "operator" or not session.credential:
        raise SignInRequired(operator=True)
    return session


TenantSession = Annotated[Session, Depends(tenant_session)]
OperatorSession = Annotated[Session, Depends(operator_session)]


async def checked_form(request: Request) -> FormData:
    """The posted form, once its CSRF token (field or htmx header) matches the session's."""
    form = await request.form()
    presented = form.get(CSRF_FIELD)
    token = presented if isinstance(presented, str) else request.headers.get(CSRF_HEADER)
    if not session_of(request).csrf_matches(token):
        raise CsrfRefused()
    return form


Form = Annotated[FormData, Depends(checked_form)]


def is_htmx(request: Request) -> bool:
    return request.headers.get("HX-Request") == "true"


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    status_code: int = 200,
    session: Session | None = None,
) -> HTMLResponse:
    """The template with the session (and its CSRF token) in its context; sets the cookie when
    the session is new or changed."""
    current = session or session_of(request)
    response = TEMPLATES.TemplateResponse(
        request,
        template,
        {"session": current, "csrf_token": current.csrf, "csrf_field": CSRF_FIELD, **(context or {})},
        status_code=status_code,
        headers={"Cache-Control": "no-store"},
    )
    if session is not None or getattr(request.state, "new_session", None) is not None:
        set_session(request, response, current)
    return response


def redirect(request: Request, url: str) -> Response:
    """303 to ``url`` for a plain form; htmx follows ``HX-Redirect`` with a full page load."""
    if is_htmx(request):
        return Response(status_code=204, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


def sign_in_url(request: Request, operator: bool) -> str:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    base = "/operator/signin" if operator else "/signin"
    return f"{base}?next={quote(target, safe='')}"


def error_page(request: Request, error: ApiError) -> Response:
    """The API's refusal as a page; a credential the API no longer accepts (a revoked key, a
    deactivated tenant) ends the session."""
    session = session_of(request)
    if error.status == 401 and session.signed_in:
        response = redirect(request, sign_in_url(request, session.kind == "operator"))
        clear_session(request, response)
        return response
    status_code = error.status if 400 <= error.status < 600 else 502
    return render(request, "error.html", {"error": error}, status_code=status_code)


async def api(request: Request, session: Session, method: str, path: str, **kwargs: Any) -> Any:
    """Call the segmenter's API (``tracker=True``: the tracker's) as the signed-in person."""
    assert session.credential is not None
    return await console_of(request).upstream.call(
        method, path, credential=session.credential, forwarded_for=forwarded_for(request), **kwargs
    )

"""Wiring of the web console: the pages' routers, the static files (htmx and the style sheet),
sessions, the security headers every answer carries, probes and metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.console import routes_account, routes_auth, routes_campaigns, routes_operator, routes_wizard
from services.console.session import SessionBox
from services.console.upstream import Upstream
from services.console.web import (
    Console,
    CsrfRefused,
    SignInRequired,
    clear_session,
    is_htmx,
    render,
    sign_in_url,
)
from shared.body_limit import BodyLimit, BodyTooLarge, body_too_large
from shared.runtime import serve
from shared.settings import DEVELOPMENT_CONSOLE_SESSION_KEY, Settings, get_settings

STATIC = Path(__file__).parent / "static"
# Scripts and styles only from the console itself (htmx, its SSE extension, console.js): no inline
# script can run even if a value ever escaped its escaping; no other site may frame the pages.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


async def _sign_in_required(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SignInRequired)
    url = sign_in_url(request, exc.operator)
    if is_htmx(request):
        return Response(status_code=401, headers={"HX-Redirect": url})
    if request.method == "GET":
        return Response(status_code=303, headers={"Location": url})
    return render(
        request,
        "signin.html",
        {"operator": exc.operator, "next": "/", "error": "Please sign in."},
        status_code=401,
    )


async def _csrf_refused(request: Request, exc: Exception) -> Response:
    return render(request, "csrf.html", status_code=403)


async def _invalid_request(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    fields = "; ".join(".".join(str(p) for p in e["loc"][1:]) + ": " + e["msg"] for e in exc.errors())
    return render(request, "error.html", {"error": {"status": 422, "detail": fields}}, status_code=422)


async def _not_found(request: Request, exc: Exception) -> Response:
    return render(
        request,
        "error.html",
        {"error": {"status": 404, "detail": "This page does not exist."}},
        status_code=404,
    )


class UnsafeConsoleSettings(ValueError):
    """The console's settings would let a session cookie be forged or read."""


def check_settings(settings: Settings) -> None:
    """Refuse, at start, the public development session key outside development (anyone could
    seal a session with it) and a cookie without Secure in production (a sealed credential sent
    over plain HTTP can be replayed by anyone on the path)."""
    if (
        settings.environment != "development"
        and DEVELOPMENT_CONSOLE_SESSION_KEY in settings.console_session_keys
    ):
        raise UnsafeConsoleSettings("WCE_CONSOLE_SESSION_KEYS must be set outside development")
    if settings.environment == "production" and not settings.console_cookie_secure:
        raise UnsafeConsoleSettings("WCE_CONSOLE_COOKIE_SECURE=false is refused in production")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    check_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        upstream = Upstream(
            api_url=settings.console_api_url,
            tracker_url=settings.console_tracker_url,
            timeout_s=settings.console_api_timeout_s,
        )
        app.state.console = Console(
            box=SessionBox(settings.console_session_keys, settings.console_session_max_age_s),
            upstream=upstream,
            cookie_secure=settings.console_cookie_secure,
        )
        try:
            yield
        finally:
            await upstream.close()

    app = FastAPI(
        title="WhatsApp campaign engine console",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    for router in (
        routes_auth.router,
        routes_wizard.router,
        routes_campaigns.router,
        routes_account.router,
        routes_operator.router,
    ):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_exception_handler(SignInRequired, _sign_in_required)
    app.add_exception_handler(CsrfRefused, _csrf_refused)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(404, _not_found)
    app.add_exception_handler(BodyTooLarge, body_too_large)
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.max_body_bytes,
        max_bulk_bytes=settings.max_bulk_body_bytes,
        is_bulk=lambda path: path == "/suppressions/import",
    )

    @app.middleware("http")
    async def security_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> JSONResponse:
        upstream: Upstream = request.app.state.console.upstream
        checks = {}
        for name, client in (("api", upstream.api), ("tracker", upstream.tracker)):
            try:
                checks[name] = (await client.get("/healthz", timeout=2.0)).status_code == 200
            except Exception:
                checks[name] = False
        ready = all(checks.values())
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


def main() -> None:
    settings = get_settings()
    serve(create_app(settings), service="console", settings=settings, port=settings.console_port)


__all__ = ["clear_session", "create_app", "main"]

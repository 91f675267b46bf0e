"""Wiring of the web console: the pages' routers, the static files (htmx and the style sheet),
sessions, the security headers every answer carries, and probes. It serves no metrics: its port
is the public one."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from services.console import routes_account, routes_auth, routes_campaigns, routes_operator, routes_wizard
from services.console.session import SessionBox
from services.console.upstream import Upstream
from services.console.web import (
    Console,
    CsrfRefused,
    SignInRequired,
    is_htmx,
    render,
    sign_in_url,
)
from shared.body_limit import BodyLimit, BodyTooLarge, body_too_large
from shared.logging import configure_logging, get_logger
from shared.runtime import run_http_server
from shared.settings import ConsoleSettings

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


def create_app(settings: ConsoleSettings | None = None) -> FastAPI:
    settings = settings or ConsoleSettings()

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

    return app


log = get_logger(__name__)


def main() -> None:
    settings = ConsoleSettings()
    configure_logging("console", settings.log_level)
    log.info("starting", port=settings.console_port)
    # The browser's address comes from X-Forwarded-For only behind a configured proxy; it is
    # passed on to the APIs, whose abuse limits count per client address.
    run_http_server(
        create_app(settings),
        host=settings.http_host,
        port=settings.console_port,
        trusted_proxies=settings.trusted_proxies,
    )

"""What a service's public port exposes: its routes and probes, and — unless moved or switched
off — ``/metrics`` and the API docs. Metrics name every tenant with its recipient states and the
docs map the whole API, so a public port (the tracker's faces Twilio and the internet) should
serve neither: ``/metrics`` can move to an internal port and the docs can be switched off."""

from __future__ import annotations

import prometheus_client
from fastapi import FastAPI

from shared.logging import get_logger
from shared.settings import Settings

log = get_logger(__name__)

DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
METRICS_PATH = "/metrics"


def _remove_routes(app: FastAPI, paths: frozenset[str]) -> None:
    app.router.routes = [route for route in app.router.routes if getattr(route, "path", None) not in paths]


def restrict_public_surface(app: FastAPI, settings: Settings, port: int) -> int | None:
    """Apply the settings to ``app`` before it serves; return the internal metrics port, if any."""
    if not settings.api_docs_enabled:
        _remove_routes(app, DOCS_PATHS)
        app.openapi_url = app.docs_url = app.redoc_url = None
    if not settings.internal_port_offset:
        return None
    _remove_routes(app, frozenset({METRICS_PATH}))
    internal_port = port + settings.internal_port_offset
    # The client library's own small threaded server: it serves the same registry, apart from
    # the event loop, so a busy service still answers its scrapes.
    prometheus_client.start_http_server(internal_port, addr=settings.http_host)
    log.info("metrics on the internal port", port=internal_port)
    return internal_port

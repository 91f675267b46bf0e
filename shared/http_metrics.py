"""HTTP request metrics of every service: one histogram observation per request, labelled with the
route template (never the raw path: ids would make the label unbounded), the method and the status.

An ASGI wrapper around the whole app, so it also sees what a bare handler in front of FastAPI
serves (the tracker's webhooks name their route in ``scope["route_template"]``). A path no route
matched is counted as ``unmatched``. A streamed response (server-sent events) is observed when it
ends, so its duration is how long the client stayed.
"""

from __future__ import annotations

import time

from prometheus_client.metrics import Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.metrics import HTTP_REQUEST_DURATION

KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"


def route_of(scope: Scope) -> str:
    """The template of the route that served the request, once the app has routed it."""
    template = scope.get("route_template")
    if template:
        return str(template)
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED


class RequestMetrics:
    """ASGI middleware observing ``wce_http_request_duration_seconds{service,route,method,status}``."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service
        # Labelled children by (route, method, status): the label lookup is the expensive part.
        self._children: dict[tuple[str, str, int], Histogram] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client sees when the app fails before answering

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            self._observe(scope, status, time.perf_counter() - started)

    def _observe(self, scope: Scope, status: int, seconds: float) -> None:
        method = scope.get("method", "")
        key = (route_of(scope), method if method in KNOWN_METHODS else "other", status)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = HTTP_REQUEST_DURATION.labels(
                self.service, key[0], key[1], str(status)
            )
        child.observe(seconds)

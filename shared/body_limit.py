"""A request-body size limit for every HTTP service, checked before anything parses the body.

A declared ``Content-Length`` past the limit is refused at once; a body without one (chunked) is
counted as it arrives and refused as soon as it passes the limit. Routes that take bulk data
(booking upserts, suppression imports, manual sends) get a larger limit by path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
DEFAULT_MAX_BULK_BODY_BYTES = 16 * 1024 * 1024

# A refused body up to this size is read and thrown away (never parsed or kept) before the 413,
# so the client, still sending, reads the answer instead of a reset connection; a larger one is
# answered at once and the connection closed.
DRAIN_LIMIT_BYTES = 64 * 1024 * 1024

PathTest = Callable[[str], bool]


def bulk_paths(exact: Iterable[str] = (), suffixes: Iterable[str] = ()) -> PathTest:
    """Whether a path is one of the bulk routes (exact paths, or paths ending with a suffix)."""
    exact_set = frozenset(exact)
    suffix_tuple = tuple(suffixes)
    return lambda path: path in exact_set or (bool(suffix_tuple) and path.endswith(suffix_tuple))


def _no_bulk(path: str) -> bool:
    return False


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a streamed body passes its limit. An HTTPException, so the
    framework's body reader lets it through instead of turning it into a 400."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, "request body too large")
        self.limit = limit


def _too_large_body(limit: int) -> bytes:
    return orjson.dumps(
        {
            "detail": "request body too large",
            "errors": [{"field": "body", "message": f"larger than {limit} bytes", "type": "too_large"}],
        }
    )


class BodyLimit:
    """ASGI middleware answering 413 (naming the body) for a request body past its limit."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_bulk_bytes: int = DEFAULT_MAX_BULK_BODY_BYTES,
        is_bulk: PathTest = _no_bulk,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_bulk_bytes = max_bulk_bytes
        self.is_bulk = is_bulk

    def limit_for(self, path: str) -> int:
        return self.max_bulk_bytes if self.is_bulk(path) else self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope.get("path", ""))
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > limit:
                    if declared <= DRAIN_LIMIT_BYTES:
                        await _discard_body(receive)
                    await _refuse(send, limit)
                    return
                break
        received = 0
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not response_started:
                await _refuse(send, limit)


async def body_too_large(request: Request, exc: Exception) -> Response:
    """Exception handler: the 413 body for a limit passed while the route read its body."""
    assert isinstance(exc, BodyTooLarge)
    return Response(_too_large_body(exc.limit), status_code=413, media_type="application/json")


async def _discard_body(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return


async def _refuse(send: Send, limit: int) -> None:
    body = _too_large_body(limit)
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})

"""A lean HTTP/1.1 client with keep-alive connection reuse, for webhook POSTs.

General-purpose clients spend several times more CPU per request than the
simulator's own request handling; at thousands of callbacks per second that
would make the simulator the bottleneck. This client only does what webhook
delivery needs: POST a small body, read the status and body, reuse the socket.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence
from functools import lru_cache
from typing import NamedTuple, cast
from urllib.parse import urlsplit

import httptools


class HttpResult(NamedTuple):
    status: int
    body: bytes


class _Target(NamedTuple):
    origin: tuple[str, str, int]
    host_header: str
    path: str


@lru_cache(maxsize=4096)
def _target(url: str) -> _Target:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"unsupported webhook URL: {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return _Target((parts.scheme, parts.hostname, port), parts.netloc, path)


class _Connection(asyncio.Protocol):
    """One socket; at most one request in flight."""

    def __init__(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[HttpResult] | None = None
        self._chunks: list[bytes] = []
        self._timer: asyncio.TimerHandle | None = None
        self._headers_done = False
        self.reusable = False
        self.got_response_bytes = False

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing it.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.got_response_bytes = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionError(f"malformed HTTP response: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self._headers_done and self._waiter is not None:
            # A response without a length is delimited by the server closing the socket.
            self.on_message_complete()
        self.reusable = False
        self._fail(ConnectionError("connection closed before the response completed"))

    # httptools callbacks

    def on_headers_complete(self) -> None:
        self._headers_done = True

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)

    def on_message_complete(self) -> None:
        self.reusable = self._parser.should_keep_alive()
        result = HttpResult(self._parser.get_status_code(), b"".join(self._chunks))
        self._chunks = []
        self._headers_done = False
        self._finish()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(result)

    # client side

    @property
    def open(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    def request(self, payload: bytes, timeout_s: float) -> asyncio.Future[HttpResult]:
        assert self._transport is not None
        loop = asyncio.get_running_loop()
        self.reusable = False
        self.got_response_bytes = False
        self._waiter = loop.create_future()
        # A timer handle is much cheaper than wrapping each request in wait_for.
        self._timer = loop.call_later(timeout_s, self._fail, TimeoutError("webhook timed out"))
        self._transport.write(payload)
        return self._waiter

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def _finish(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fail(self, exc: Exception) -> None:
        self._finish()
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
            self.close()


class KeepAliveClient:
    """Pools idle connections per origin; concurrency is bounded by the callers."""

    def __init__(self, timeout_s: float = 10.0) -> None:
        self._timeout_s = timeout_s
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._ssl: ssl.SSLContext | None = None

    async def post(self, url: str, body: bytes, headers: Sequence[tuple[str, str]]) -> HttpResult:
        target = _target(url)
        lines = [
            f"POST {target.path} HTTP/1.1",
            f"Host: {target.host_header}",
            f"Content-Length: {len(body)}",
        ]
        lines.extend(f"{name}: {value}" for name, value in headers)
        payload = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
        connection, reused = await self._acquire(target.origin)
        try:
            result = await connection.request(payload, self._timeout_s)
        except ConnectionError:
            if not reused or connection.got_response_bytes:
                raise
            # The server closed an idle keep-alive socket just as it was reused:
            # nothing was processed, so one retry on a fresh socket is safe.
            connection, _ = await self._acquire(target.origin, fresh=True)
            result = await connection.request(payload, self._timeout_s)
        self._release(target.origin, connection)
        return result

    async def close(self) -> None:
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()

    async def _acquire(self, origin: tuple[str, str, int], fresh: bool = False) -> tuple[_Connection, bool]:
        idle = self._idle.get(origin)
        while idle and not fresh:
            connection = idle.pop()
            if connection.open:
                return connection, True
        scheme, host, port = origin
        ssl_context = self._ssl_context() if scheme == "https" else None
        loop = asyncio.get_running_loop()
        _, connection = await asyncio.wait_for(
            loop.create_connection(_Connection, host, port, ssl=ssl_context), self._timeout_s
        )
        return connection, False

    def _release(self, origin: tuple[str, str, int], connection: _Connection) -> None:
        if connection.reusable and connection.open:
            self._idle.setdefault(origin, []).append(connection)
        else:
            connection.close()

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

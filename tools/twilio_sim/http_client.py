"""A lean HTTP/1.1 client with keep-alive connection reuse, for webhook POSTs.

General-purpose clients spend several times more CPU per request than the
simulator's own request handling; at thousands of callbacks per second that
would make the simulator the bottleneck. This client only does what webhook
delivery needs: POST a small body, read the status and body, reuse the socket.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import Sequence
from functools import lru_cache
from typing import NamedTuple, cast
from urllib.parse import unquote, urlsplit

import httptools


class HttpResult(NamedTuple):
    status: int
    body: bytes


class _Target(NamedTuple):
    origin: tuple[str, str, int]
    host_header: str
    path: str
    # Twilio turns user:password in a webhook URL into HTTP Basic auth.
    authorization: str | None


@lru_cache(maxsize=4096)
def _target(url: str) -> _Target:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"unsupported webhook URL: {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    authorization = None
    if parts.username is not None:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        authorization = "Basic " + base64.b64encode(credentials.encode()).decode()
    host_header = parts.netloc.rpartition("@")[2]
    return _Target((parts.scheme, parts.hostname, port), host_header, path, authorization)


class _Connection(asyncio.Protocol):
    """One socket; at most one request in flight."""

    def __init__(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[HttpResult] | None = None
        self._chunks: list[bytes] = []
        self._headers_done = False
        self.deadline = 0.0
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
            self.fail(ConnectionError(f"malformed HTTP response: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self._headers_done and self._waiter is not None:
            # A response without a length is delimited by the server closing the socket.
            self.on_message_complete()
        self.reusable = False
        self.fail(ConnectionError("connection closed before the response completed"))

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
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(result)

    # client side

    @property
    def open(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    def request(self, payload: bytes, deadline: float) -> asyncio.Future[HttpResult]:
        assert self._transport is not None
        self.reusable = False
        self.got_response_bytes = False
        self.deadline = deadline
        self._waiter = asyncio.get_running_loop().create_future()
        self._transport.write(payload)
        return self._waiter

    @property
    def busy(self) -> bool:
        return self._waiter is not None and not self._waiter.done()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def fail(self, exc: Exception) -> None:
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
        # Timeouts are enforced by one sweeper over in-flight requests: a loop
        # timer per request costs more than the rest of the request handling.
        self._in_flight: set[_Connection] = set()
        self._sweeper: asyncio.Task[None] | None = None

    async def post(self, url: str, body: bytes, headers: Sequence[tuple[str, str]]) -> HttpResult:
        target = _target(url)
        lines = [
            f"POST {target.path} HTTP/1.1",
            f"Host: {target.host_header}",
            f"Content-Length: {len(body)}",
        ]
        if target.authorization is not None:
            lines.append(f"Authorization: {target.authorization}")
        lines.extend(f"{name}: {value}" for name, value in headers)
        payload = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
        connection, reused = await self._acquire(target.origin)
        try:
            result = await self._exchange(connection, payload)
        except ConnectionError:
            if not reused or connection.got_response_bytes:
                raise
            # The server closed an idle keep-alive socket just as it was reused:
            # nothing was processed, so one retry on a fresh socket is safe.
            connection, _ = await self._acquire(target.origin, fresh=True)
            result = await self._exchange(connection, payload)
        self._release(target.origin, connection)
        return result

    async def _exchange(self, connection: _Connection, payload: bytes) -> HttpResult:
        loop = asyncio.get_running_loop()
        if self._sweeper is None:
            self._sweeper = loop.create_task(self._sweep())
        self._in_flight.add(connection)
        try:
            return await connection.request(payload, loop.time() + self._timeout_s)
        finally:
            self._in_flight.discard(connection)

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(self._timeout_s / 4, 0.5))
            now = loop.time()
            for connection in [c for c in self._in_flight if c.busy and c.deadline < now]:
                connection.fail(TimeoutError("webhook timed out"))

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
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

"""A lean HTTP/1.1 client: keep-alive connections, one request at a time on each.

It carries the two hottest HTTP paths of the system: the sender's message creates and the
Twilio simulator's status callbacks. General-purpose clients spend several times more CPU per
request than that: measured on a 2-core machine against the simulator, aiohttp's client cost
the sender about 0.23 ms of CPU per create, half of everything the sender did per message.
This client only does what those paths need — a small request, the status, headers and body of
the answer (``Content-Length``, chunked or close-delimited; interim 1xx answers skipped), socket
reuse, TLS — and nothing else: no redirects, cookies, proxies, compression or streaming.

Failures say how far the request got, which is what the sender's duplicate protection rests on:

- ``NotSent``: no connection could be made (refused, unreachable, TLS failed, none became free
  in time); the request was never written.
- ``ResponseLost``: the request was written, but the connection broke before a complete answer.
- ``TimeoutError``: written, and no complete answer within the timeout.
- ``ResponseTooLarge`` (a ``ResponseLost``): written, and the answer grew past the client's
  ``max_response_bytes`` (headers and body); the connection is dropped rather than read on.

A keep-alive socket the server closed just as it was reused fails with ``ResponseLost`` too:
the server most likely never read the request, but that cannot be proven. So sockets are kept
fresh instead: one idle for ``max_idle_s`` (set it below the server's keep-alive timeout; real
edges and common servers close idle connections after 5 s or more) is closed by this side and
never reused, and a socket is checked to be open before each reuse. Callers for whom a repeat is
harmless (a webhook delivery) can also ask for one retry on a fresh socket.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import time
from collections.abc import Iterable, Iterator, Mapping
from functools import lru_cache
from typing import NamedTuple, cast
from urllib.parse import unquote, urlsplit

import httptools

Origin = tuple[str, str, int]
# Request prefixes kept per (method, URL): a few per tenant in practice.
PREFIX_CACHE_SIZE = 4096
# No answer of the services this client talks to comes near this; a server that keeps sending
# must not grow a sender's memory without end.
DEFAULT_MAX_RESPONSE_BYTES = 4 * 1024 * 1024


class Headers(Mapping[str, str]):
    """Response headers by lower-case name (a repeated header keeps its last value), decoded on
    first use: most responses are judged by their status alone."""

    __slots__ = ("_decoded", "_raw")

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self._raw = raw
        self._decoded: dict[str, str] | None = None

    def _all(self) -> dict[str, str]:
        if self._decoded is None:
            self._decoded = {
                name.decode("latin-1").lower(): value.decode("latin-1") for name, value in self._raw
            }
        return self._decoded

    def __getitem__(self, name: str) -> str:
        return self._all()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


class HttpResponse(NamedTuple):
    status: int
    headers: Headers
    body: bytes


class NotSent(ConnectionError):
    """The request was never written: the connection could not be made in time."""


class WriteDeadlinePassed(NotSent):
    """The request was never written: its ``write_by`` passed before it could be."""


class ResponseLost(ConnectionError):
    """The request was written (or may have been) but no complete response came back."""


class ResponseTooLarge(ResponseLost):
    """The request was written and the answer grew past the size cap."""


class _Target(NamedTuple):
    origin: Origin
    host_header: str
    path: str
    # user:password in a URL becomes HTTP Basic auth (Twilio does this for webhook URLs).
    authorization: str | None


@lru_cache(maxsize=4096)
def _target(url: str) -> _Target:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"unsupported URL: {url!r}")
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

    def __init__(self, max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._max_response_bytes = max_response_bytes
        self._received = 0
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[HttpResponse] | None = None
        self._chunks: list[bytes] = []
        self._headers: list[tuple[bytes, bytes]] = []
        self._headers_done = False
        self.deadline = 0.0
        # When it last went back to the pool (loop time).
        self.idle_since = 0.0
        self.reusable = False
        self.got_response_bytes = False

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing it.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.got_response_bytes = True
        self._received += len(data)
        if self._received > self._max_response_bytes:
            self.reusable = False
            self.fail(ResponseTooLarge(f"response larger than {self._max_response_bytes} bytes"))
            self.close()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.fail(ResponseLost(f"malformed HTTP response: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self._headers_done and self._waiter is not None:
            # A response without a length is delimited by the server closing the socket.
            self.on_message_complete()
        self.reusable = False
        self.fail(ResponseLost("connection closed before the response completed"))

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._headers_done = True

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)

    def on_message_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            # An interim answer (100 Continue, 103 Early Hints): the final one follows on the wire.
            self._chunks = []
            self._headers = []
            self._headers_done = False
            return
        self.reusable = self._parser.should_keep_alive()
        response = HttpResponse(
            self._parser.get_status_code(), Headers(self._headers), b"".join(self._chunks)
        )
        self._chunks = []
        self._headers = []
        self._headers_done = False
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(response)

    # client side

    @property
    def open(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    def request(self, payload: bytes, deadline: float) -> asyncio.Future[HttpResponse]:
        assert self._transport is not None
        self.reusable = False
        self.got_response_bytes = False
        self._received = 0
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
    """Pools idle connections per origin.

    ``timeout_s`` bounds the wait for a complete response once the request is written;
    ``connect_timeout_s`` the wait for a connection (a free one from the pool, or a new one).
    ``max_connections`` caps the connections open at once (None: the callers bound concurrency).
    ``default_headers`` go on every request. ``max_idle_s`` (None: no limit) is how long a
    connection may sit idle in the pool before it is closed rather than reused.
    ``max_response_bytes`` caps an answer's size.
    """

    def __init__(
        self,
        timeout_s: float = 10.0,
        *,
        connect_timeout_s: float | None = None,
        max_connections: int | None = None,
        default_headers: Iterable[tuple[str, str]] = (),
        retry_stale: bool = False,
        max_idle_s: float | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        self._timeout_s = timeout_s
        self._max_response_bytes = max_response_bytes
        self._connect_timeout_s = connect_timeout_s if connect_timeout_s is not None else timeout_s
        self._slots = asyncio.Semaphore(max_connections) if max_connections else None
        self._default_headers = "".join(f"{name}: {value}\r\n" for name, value in default_headers)
        self._retry_stale = retry_stale
        self._max_idle_s = max_idle_s
        self._idle: dict[Origin, list[_Connection]] = {}
        self._prefixes: dict[tuple[str, str], tuple[Origin, bytes]] = {}
        self._ssl: ssl.SSLContext | None = None
        # Timeouts are enforced by one sweeper over in-flight requests: a loop timer per request
        # costs more than the rest of the request handling.
        self._in_flight: set[_Connection] = set()
        self._sweeper: asyncio.Task[None] | None = None

    async def post(self, url: str, body: bytes, headers: Iterable[tuple[str, str]] = ()) -> HttpResponse:
        return await self.request("POST", url, headers=headers, body=body)

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        write_by: float | None = None,
    ) -> HttpResponse:
        """``write_by`` (``time.monotonic()``): raise NotSent rather than write the request later
        than this — checked as the bytes are handed to the socket, with nothing awaited between,
        so a process frozen or starved past it never sends a request its caller gave up on."""
        origin, prefix = self._prefix(method, url)
        head = [prefix]
        if body or method == "POST":
            head.append(b"Content-Length: %d\r\n" % len(body))
        for name, value in headers:
            head.append(f"{name}: {value}\r\n".encode("latin-1"))
        head.append(b"\r\n")
        head.append(body)
        payload = b"".join(head)
        await self._take_slot()
        try:
            return await self._send(origin, payload, write_by)
        finally:
            if self._slots is not None:
                self._slots.release()

    def _prefix(self, method: str, url: str) -> tuple[Origin, bytes]:
        """The request line and the headers every request to ``url`` starts with."""
        cached = self._prefixes.get((method, url))
        if cached is None:
            target = _target(url)
            lines = (
                f"{method} {target.path} HTTP/1.1\r\nHost: {target.host_header}\r\n{self._default_headers}"
            )
            if target.authorization is not None:
                lines += f"Authorization: {target.authorization}\r\n"
            cached = (target.origin, lines.encode("latin-1"))
            if len(self._prefixes) >= PREFIX_CACHE_SIZE:
                self._prefixes.clear()
            self._prefixes[(method, url)] = cached
        return cached

    async def _take_slot(self) -> None:
        if self._slots is None:
            return
        if not self._slots.locked():
            await self._slots.acquire()
            return
        try:
            await asyncio.wait_for(self._slots.acquire(), self._connect_timeout_s)
        except TimeoutError as exc:
            raise NotSent("no connection became free in time") from exc

    async def _send(self, origin: Origin, payload: bytes, write_by: float | None = None) -> HttpResponse:
        connection, reused = await self._acquire(origin)
        try:
            response = await self._exchange(connection, payload, write_by)
        except WriteDeadlinePassed:
            # Nothing was written on it: the connection is as good as before.
            self._release(origin, connection)
            raise
        except ResponseLost:
            if not (self._retry_stale and reused) or connection.got_response_bytes:
                raise
            # The server closed an idle keep-alive socket just as it was reused.
            connection, _ = await self._acquire(origin, fresh=True)
            response = await self._exchange(connection, payload, write_by)
        self._release(origin, connection)
        return response

    async def _exchange(
        self, connection: _Connection, payload: bytes, write_by: float | None = None
    ) -> HttpResponse:
        if write_by is not None and time.monotonic() > write_by:
            raise WriteDeadlinePassed("the request was not written before its deadline")
        loop = asyncio.get_running_loop()
        if self._sweeper is None:
            self._sweeper = loop.create_task(self._sweep())
        self._in_flight.add(connection)
        try:
            return await connection.request(payload, loop.time() + self._timeout_s)
        except BaseException:
            # Failed, timed out or cancelled: the socket may still get the answer; never reuse it.
            connection.close()
            raise
        finally:
            self._in_flight.discard(connection)

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        period = min(self._timeout_s / 4, 0.5)
        if self._max_idle_s is not None:
            period = min(period, self._max_idle_s / 4)
        while True:
            await asyncio.sleep(period)
            now = loop.time()
            for connection in [c for c in self._in_flight if c.busy and c.deadline < now]:
                connection.fail(TimeoutError(f"no response within {self._timeout_s:g} s"))
            self._drop_idle(now)

    def _drop_idle(self, now: float) -> None:
        """Close pooled connections idle too long, before the server closes them under a request."""
        if self._max_idle_s is None:
            return
        for origin, connections in self._idle.items():
            kept = []
            for connection in connections:
                if self._reusable(connection, now):
                    kept.append(connection)
                else:
                    connection.close()
            self._idle[origin] = kept

    def _reusable(self, connection: _Connection, now: float) -> bool:
        if not connection.open:
            return False
        return self._max_idle_s is None or now - connection.idle_since < self._max_idle_s

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()

    async def _acquire(self, origin: Origin, fresh: bool = False) -> tuple[_Connection, bool]:
        idle = self._idle.get(origin)
        loop = asyncio.get_running_loop()
        while idle and not fresh:
            connection = idle.pop()
            if self._reusable(connection, loop.time()):
                return connection, True
            connection.close()
        scheme, host, port = origin
        ssl_context = self._ssl_context() if scheme == "https" else None
        try:
            _, connection = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Connection(self._max_response_bytes),
                    host,
                    port,
                    ssl=ssl_context,
                    server_hostname=host if ssl_context else None,
                ),
                self._connect_timeout_s,
            )
        except (OSError, TimeoutError) as exc:  # ssl.SSLError is an OSError
            raise NotSent(f"cannot connect to {host}:{port}: {type(exc).__name__} {exc}".strip()) from exc
        return connection, False

    def _release(self, origin: Origin, connection: _Connection) -> None:
        if connection.reusable and connection.open:
            connection.idle_since = asyncio.get_running_loop().time()
            self._idle.setdefault(origin, []).append(connection)
        else:
            connection.close()

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

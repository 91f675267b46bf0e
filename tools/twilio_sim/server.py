"""The simulator's HTTP/1.1 server: httptools parsing straight into the app's routes.

A general ASGI server spends more CPU per request than the simulator's own work
for a create: a task, an event and message dicts per request, a keep-alive
timer re-armed per response. Here a complete request is routed in the parser's
callback and the reply written at once; only replies that must wait (simulated
latency, a hang, an admin call doing I/O) get a timer or a task.

A request counts as received when it reached the host, as Twilio counts it at its edge, not when
this process got round to parsing it: plain TCP connections are read by ``stamped``, with the
kernel's receive timestamp of each read, so a simulator starved of CPU on a loaded machine does
not bunch into one second what arrived spread over several (over TLS, the stamp is the parse).

Like a real server it does not work for a client that has gone. A request is served only while
its client still waits: one whose client closed the connection before the request's turn came
(it gave up on its timeout, or died; the close is queued behind the request on the socket, so
the socket is peeked for it) is dropped unanswered and unprocessed, as a proxy in front of an
API drops a request whose client aborted. And a request that waited longer than the maximum
request age for its turn is answered 503 (Twilio's 20503) unprocessed. So a create is processed
before its client gave up or never, however late a starved simulator reads it: the engine's
duplicate protection (services/sender/maintenance.py) counts on Twilio's edge doing the same.

A fault (``read_delay``) makes the simulator that starved server: a new connection is left
unread for a while, as in a listen queue, and so is a request arriving on a reused keep-alive
connection, as a process that does not get round to reading its sockets leaves it. Clients that
keep their connections alive open few new ones, so the second half is what reaches them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl as ssl_module
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from http import HTTPStatus
from typing import cast
from urllib.parse import unquote

import httptools

from .app import Request, SimulatorApp
from .simulator import Reply
from .stamped import StampedServer

log = logging.getLogger(__name__)

_STATUS_LINES = {s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode() for s in HTTPStatus}
_JSON = b"content-type: application/json\r\n"
_CLOSE = b"connection: close\r\n"
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_INVALID = "Invalid HTTP request received."
_INTERNAL_ERROR = "Internal Server Error"
# Seconds an idle keep-alive connection is kept, like a real edge (uvicorn's default is 5 s).
KEEP_ALIVE_S = 5.0
# Seconds a request may wait for its turn (behind a slow reply on its connection) and still be
# processed; Twilio's own webhook timeout is 15 s.
MAX_REQUEST_AGE_S = 15.0
_EXPIRED = b'{"code": 20503, "message": "Service Unavailable", "more_info": "", "status": 503}'
_PEEK = socket.MSG_PEEK | socket.MSG_DONTWAIT


class _DateHeader:
    """The ``date`` header line, formatted once per second."""

    __slots__ = ("_line", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._line = b""

    def __call__(self) -> bytes:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._line = f"date: {formatdate(second, usegmt=True)}\r\n".encode()
        return self._line


_date = _DateHeader()


def _head(status: int, content_type: bytes, length: int, extra: bytes, keep_alive: bool) -> bytes:
    return b"".join(
        (
            _STATUS_LINES.get(status) or f"HTTP/1.1 {status} \r\n".encode(),
            _date(),
            content_type,
            extra,
            b"content-length: %d\r\n" % length,
            b"" if keep_alive else _CLOSE,
            b"\r\n",
        )
    )


class _Pending:
    """A parsed request waiting for its turn on a pipelined connection."""

    __slots__ = ("keep_alive", "received_at", "request")

    def __init__(self, request: Request, keep_alive: bool, received_at: float) -> None:
        self.request = request
        self.keep_alive = keep_alive
        self.received_at = received_at


class HttpProtocol(asyncio.Protocol):
    """One client connection; requests are answered in the order they arrived."""

    def __init__(self, server: SimulatorServer) -> None:
        self._server = server
        self._app = server.app
        self._loop = server.loop
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._headers: dict[bytes, bytes] = {}
        self._body: list[bytes] = []
        # A reply is being waited for; later requests queue behind it.
        self._busy = False
        self._queue: deque[_Pending] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        # The client closed its side (the loop read the end of its stream).
        self._peer_closed = False
        # A second handle on a plain TCP socket, to peek for a close not read yet (None: TLS,
        # whose close arrives as a record the loop must decrypt).
        self._peek: socket.socket | None = None
        # Left unread on purpose (a fault): as if still in the listen queue, so not idle either;
        # what arrives meanwhile is held, as the socket would hold it.
        self._unread = False
        self._held: list[bytes] = []
        # A request has been read on this connection: the next one arrives on a reused connection.
        self._reused = False
        # When the data being parsed reached this host (``received``).
        self._read_at = 0.0
        self.idle_since = self._loop.time()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        self._server.connections.add(self)
        raw = transport.get_extra_info("socket")
        if raw is not None and transport.get_extra_info("ssl_object") is None:
            self._peek = socket.socket(fileno=os.dup(raw.fileno()))
        delay = self._server.read_delay() if self._server.read_delay is not None else 0.0
        if delay > 0:
            self._unread = True
            self._loop.call_later(delay, self._read_again)

    def _read_again(self) -> None:
        # Accepted only now, as far as the keep-alive timeout is concerned; the client may have
        # closed meanwhile, and its close is seen behind what it wrote, as in the socket.
        self._unread = False
        self._server.events["read_late_done"] += 1
        self.idle_since = self._loop.time()
        held, self._held = b"".join(self._held), []
        if held:
            self.received(held, time.time())

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.forget(self)
        self._transport = None
        if self._peek is not None:
            # The duplicate handle would keep the socket open after the transport closed it.
            self._peek.close()
            self._peek = None
        self._queue.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def data_received(self, data: bytes) -> None:
        # Over TLS the loop's transport reads: the request is stamped as it is parsed.
        self.received(data, time.time())

    def received(self, data: bytes, at: float) -> None:
        """``data`` read from the socket, which it reached at ``at`` (``tools/twilio_sim/stamped``)."""
        if self._unread:
            self._held.append(data)
            return
        now = self._loop.time()
        if self.idle and not self._url and now - self.idle_since >= self._server.keep_alive_s:
            # The idle timer has fired: a real server closes the socket at that instant, and a
            # request crossing the close on the wire is never read. The sweep below closes most
            # such connections before a client reuses them; this closes the rest the same way.
            self._server.events["closed_under_request"] += 1
            self._close()
            return
        self.idle_since = now
        self._read_at = at
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # No protocol to switch to: the request was answered over HTTP/1.1.
            pass
        except httptools.HttpParserError:
            log.warning(_INVALID)
            self._write_plain(400, _INVALID)

    def eof_received(self) -> None:
        # Nothing more will come and nobody waits for an answer: the transport closes.
        self._peer_closed = True

    def pause_writing(self) -> None:
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        if self._transport is not None:
            self._transport.resume_reading()

    # httptools callbacks

    # Only the callbacks needed are defined: each one costs a call per request.
    # The per-request state is reset once a request has been taken.

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        # The first of repeated headers counts, as it did for the routes before.
        self._headers.setdefault(name, value)
        if name == b"expect" and value.lower() == b"100-continue" and self._transport is not None:
            self._transport.write(_CONTINUE)

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        parser = self._parser
        url = httptools.parse_url(self._url)
        path = url.path.decode("ascii")
        if "%" in path:
            path = unquote(path)
        request = Request(
            parser.get_method().decode("ascii"),
            path,
            url.query or b"",
            self._headers,
            b"".join(self._body),
        )
        self._url = b""
        self._headers = {}
        self._body = []
        keep_alive = parser.get_http_version() != "1.0" and parser.should_keep_alive()
        reused, self._reused = self._reused, True
        if reused and not self._busy and self._left_unread(request, keep_alive):
            return
        pending = _Pending(request, keep_alive, self._read_at)
        if self._busy:
            self._queue.append(pending)
        else:
            self._serve(pending)

    def _left_unread(self, request: Request, keep_alive: bool) -> bool:
        """Whether a request on a reused connection is left unread for a while (the fault), as a
        starved process leaves its sockets: then it is served only once read, with its age counted
        from then, and later requests wait behind it. Admin calls are never held: they switch
        the fault itself off."""
        if self._server.read_delay is None or request.path.startswith("/admin/"):
            return False
        delay = self._server.read_delay()
        if delay <= 0:
            return False
        self._busy = True
        self._loop.call_later(delay, self._read_late, request, keep_alive)
        return True

    def _read_late(self, request: Request, keep_alive: bool) -> None:
        # Its client may have given up meanwhile (then _serve drops it), or closed altogether.
        self._server.events["read_late_done"] += 1
        self._busy = False
        self._serve(_Pending(request, keep_alive, time.time()))
        self._serve_queued()

    # replies

    def _client_gone(self) -> bool:
        """Whether the client closed the connection: seen by the loop, or queued on the socket
        behind the requests already read (an empty peek is the end of the stream)."""
        if self._transport is None or self._peer_closed:
            return True
        if self._peek is None:
            return False
        try:
            return self._peek.recv(1, _PEEK) == b""
        except BlockingIOError:
            return False
        except OSError:
            # Reset by the peer.
            return True

    def _serve(self, pending: _Pending) -> None:
        if self._client_gone():
            self._server.events["dropped_client_gone"] += 1
            self._close()
            return
        age = time.time() - pending.received_at
        if age > self._server.max_request_age_s and not pending.request.path.startswith("/admin/"):
            self._server.events["expired"] += 1
            self._reply(pending, Reply(503, _EXPIRED))
            return
        try:
            result = self._app.handle(pending.request, pending.received_at)
        except Exception:
            log.exception("request to %s failed", pending.request.path)
            self._write_plain(500, _INTERNAL_ERROR)
            return
        if isinstance(result, Reply):
            if result.delay_s > 0:
                self._busy = True
                self._timer = self._loop.call_later(result.delay_s, self._finish, pending, result)
            else:
                self._reply(pending, result)
        else:
            self._busy = True
            self._task = self._loop.create_task(self._await(pending, result))

    async def _await(self, pending: _Pending, result: Awaitable[Reply]) -> None:
        try:
            reply = await result
        except Exception:
            log.exception("request to %s failed", pending.request.path)
            self._busy = False
            self._write_plain(500, _INTERNAL_ERROR)
            return
        finally:
            self._task = None
        if reply.delay_s > 0:
            self._timer = self._loop.call_later(reply.delay_s, self._finish, pending, reply)
        else:
            self._finish(pending, reply)

    def _finish(self, pending: _Pending, reply: Reply) -> None:
        self._timer = None
        self._busy = False
        self._reply(pending, reply)
        self._serve_queued()

    def _serve_queued(self) -> None:
        while self._queue and not self._busy and self._transport is not None:
            self._serve(self._queue.popleft())

    def _reply(self, pending: _Pending, reply: Reply) -> None:
        transport = self._transport
        if transport is None:
            return
        keep_alive = pending.keep_alive and not self._closing
        extra = b"" if reply.retry_after_s is None else b"retry-after: %d\r\n" % reply.retry_after_s
        head = _head(reply.status, _JSON, len(reply.body), extra, keep_alive)
        transport.write(head if pending.request.method == "HEAD" else head + reply.body)
        if keep_alive:
            self.idle_since = self._loop.time()
        else:
            self._close()

    def _write_plain(self, status: int, text: str) -> None:
        if self._transport is not None:
            body = text.encode("ascii")
            head = _head(status, b"content-type: text/plain; charset=utf-8\r\n", len(body), b"", False)
            self._transport.write(head + body)
        self._close()

    def _close(self) -> None:
        self._queue.clear()
        if self._transport is not None:
            self._transport.close()

    # server side

    @property
    def idle(self) -> bool:
        return not self._busy and not self._queue and not self._unread

    def shutdown(self) -> None:
        """Close now if idle, else after the reply being waited for."""
        self._closing = True
        if self.idle:
            self._close()

    def abort(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._transport is not None:
            self._transport.abort()


class SimulatorServer:
    def __init__(
        self,
        app: SimulatorApp,
        loop: asyncio.AbstractEventLoop,
        keep_alive_s: float = KEEP_ALIVE_S,
        events: Counter[str] | None = None,
        *,
        sweep_s: float | None = None,
        max_request_age_s: float = MAX_REQUEST_AGE_S,
        read_delay: Callable[[], float] | None = None,
    ) -> None:
        self.app = app
        self.loop = loop
        self.keep_alive_s = keep_alive_s
        self.max_request_age_s = max_request_age_s
        # How long to leave a new connection, or a request on a reused one, unread (a fault: a
        # starved server's listen queue, or its process not reading its sockets).
        self.read_delay = read_delay
        self._sweep_s = sweep_s if sweep_s is not None else keep_alive_s
        # Connections closed by the keep-alive timeout: "closed_idle" by the sweep,
        # "closed_under_request" when a request arrived after the timeout; requests not processed:
        # "dropped_client_gone" (its client had closed the connection), "expired" (answered 503).
        self.events: Counter[str] = events if events is not None else Counter()
        self.connections: set[HttpProtocol] = set()
        self._server: asyncio.AbstractServer | None = None
        self._listener: StampedServer | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._all_closed = asyncio.Event()

    def forget(self, connection: HttpProtocol) -> None:
        self.connections.discard(connection)
        if not self.connections:
            self._all_closed.set()

    async def start(
        self, host: str, port: int, *, backlog: int = 4096, ssl: ssl_module.SSLContext | None = None
    ) -> None:
        if ssl is None:
            # Plain TCP is read by the simulator itself, for each request's arrival time.
            self._listener = StampedServer(self.loop, lambda: HttpProtocol(self), host, port, backlog)
        else:
            self._server = await self.loop.create_server(
                lambda: HttpProtocol(self), host, port, backlog=backlog, reuse_address=True, ssl=ssl
            )
        self._sweeper = self.loop.create_task(self._sweep())

    async def stop(self, grace_s: float) -> None:
        """Stop accepting, let replies in progress finish for up to ``grace_s``, then close."""
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._server is not None:
            self._server.close()
        if self._listener is not None:
            self._listener.close()
        self._all_closed.clear()
        for connection in list(self.connections):
            connection.shutdown()
        if self.connections:
            try:
                await asyncio.wait_for(self._all_closed.wait(), grace_s)
            except TimeoutError:
                pass
        for connection in list(self.connections):
            connection.abort()
        if self._server is not None:
            await self._server.wait_closed()

    async def _sweep(self) -> None:
        # One periodic pass instead of a keep-alive timer re-armed on every response: idle
        # connections close between one and two keep-alive periods after their last request.
        while True:
            await asyncio.sleep(self._sweep_s)
            stale = self.loop.time() - self.keep_alive_s
            for connection in [c for c in self.connections if c.idle and c.idle_since < stale]:
                self.events["closed_idle"] += 1
                connection.shutdown()

"""The simulator's HTTP/1.1 server over a real socket, with a stand-in for the routes."""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, cast

import pytest
import uvloop

from shared.http1 import KeepAliveClient, ResponseLost
from tools.twilio_sim.app import Request, SimulatorApp
from tools.twilio_sim.server import SimulatorServer
from tools.twilio_sim.simulator import Reply


class _Routes:
    """Answers by path: /slow waits, /admin awaits, /boom raises, anything else echoes."""

    def __init__(self) -> None:
        self.seen: list[Request] = []
        self.received_at: list[float] = []

    def handle(self, request: Request, received_at: float) -> Reply | Awaitable[Reply]:
        self.seen.append(request)
        self.received_at.append(received_at)
        if request.path == "/slow":
            return Reply(201, b'{"slow":true}', delay_s=0.2, retry_after_s=3)
        if request.path == "/admin":
            return self._admin()
        if request.path == "/boom":
            raise RuntimeError("boom")
        return Reply(200, b'{"path":"%s"}' % request.path.encode())

    async def _admin(self) -> Reply:
        await asyncio.sleep(0.05)
        return Reply(200, b'{"admin":true}')


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
async def server() -> AsyncIterator[tuple[SimulatorServer, _Routes, int]]:
    routes = _Routes()
    port = _free_port()
    server = SimulatorServer(cast(SimulatorApp, routes), asyncio.get_running_loop())
    await server.start("127.0.0.1", port)
    try:
        yield server, routes, port
    finally:
        await server.stop(0.5)


async def _exchange(port: int, raw: bytes, *, until_closed: bool = True, wait_s: float = 2.0) -> bytes:
    """Everything the server sends back, until it closes (or ``wait_s`` passes, if allowed)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    data = b""
    try:
        async with asyncio.timeout(wait_s):
            while chunk := await reader.read(65536):
                data += chunk
    except TimeoutError:
        if until_closed:
            raise
    writer.close()
    return data


def _responses(data: bytes) -> list[tuple[str, dict[str, str], bytes]]:
    out = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines[1:])
        length = int(headers["content-length"])
        out.append((lines[0], headers, rest[:length]))
        data = rest[length:]
    return out


async def test_a_request_is_answered_with_length_date_and_json_type(server: Any) -> None:
    _, routes, port = server

    request = b"GET /hello%20there?a=1&b=2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"

    data = await _exchange(port, request)

    [(status, headers, body)] = _responses(data)
    assert status == "HTTP/1.1 200 OK"
    assert headers["content-type"] == "application/json"
    assert headers["date"].endswith(" GMT")
    assert headers["connection"] == "close"
    assert body == b'{"path":"/hello there"}'
    assert routes.seen[0].query_string == b"a=1&b=2"
    assert routes.seen[0].headers[b"host"] == b"x"


async def test_a_request_counts_as_received_when_it_arrived_not_when_a_busy_server_read_it(
    server: Any,
) -> None:
    _, routes, port = server
    # Given a connection the server has accepted
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await asyncio.sleep(0.05)

    # When a request arrives while the server's process is busy for 0.3 s
    writer.write(b"GET /busy HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    written_at = time.time()
    time.sleep(0.3)  # noqa: ASYNC251 - the server shares this loop: it is kept busy on purpose
    await reader.readuntil(b'{"path":"/busy"}')
    writer.close()

    # Then it is stamped with its arrival, not with the moment it was read and parsed
    [received_at] = routes.received_at
    assert abs(received_at - written_at) < 0.05, received_at - written_at


async def test_pipelined_requests_are_answered_in_order_behind_slow_ones(server: Any) -> None:
    _, routes, port = server
    raw = (
        b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
        b"GET /admin HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )

    data = await _exchange(port, raw)

    answers = _responses(data)
    assert [a[0] for a in answers] == ["HTTP/1.1 201 Created", "HTTP/1.1 200 OK", "HTTP/1.1 200 OK"]
    assert answers[0][1]["retry-after"] == "3"
    assert [a[2] for a in answers] == [b'{"slow":true}', b'{"admin":true}', b'{"path":"/last"}']
    assert routes.seen[0].body == b"hello"


async def test_keep_alive_holds_the_connection_and_http_1_0_closes_it(server: Any) -> None:
    _, _, port = server

    kept = await _exchange(port, b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n", until_closed=False, wait_s=0.3)
    closed = await _exchange(port, b"GET /b HTTP/1.0\r\n\r\n")

    assert "connection" not in _responses(kept)[0][1]
    assert _responses(closed)[0][1]["connection"] == "close"


async def test_chunked_bodies_head_requests_and_expect_continue(server: Any) -> None:
    _, routes, port = server

    data = await _exchange(
        port,
        b"POST /c HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
        b"HEAD /h HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )

    assert data.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n")
    assert routes.seen[0].body == b"abcde"
    head_answer = data[data.rindex(b"HTTP/1.1 200 OK") :]
    assert head_answer.endswith(b"\r\n\r\n") and b"content-length: 13\r\n" in head_answer


async def test_garbage_gets_400_and_a_crashing_route_500(server: Any) -> None:
    _, _, port = server

    garbage = await _exchange(port, b"NOT HTTP AT ALL\r\n\r\n")
    crash = await _exchange(port, b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n")

    assert garbage.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert garbage.endswith(b"connection: close\r\n\r\nInvalid HTTP request received.")
    assert crash.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    assert crash.endswith(b"\r\n\r\nInternal Server Error")


async def test_stopping_waits_for_a_reply_in_progress_then_closes(server: Any) -> None:
    srv, _, port = server
    pending = asyncio.create_task(_exchange(port, b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"))
    await asyncio.sleep(0.05)

    await srv.stop(1.0)

    [(status, headers, _)] = _responses(await pending)
    assert status == "HTTP/1.1 201 Created"
    assert headers["connection"] == "close"
    assert not srv.connections


@asynccontextmanager
async def _short_keep_alive(
    keep_alive_s: float, sweep_s: float
) -> AsyncIterator[tuple[SimulatorServer, str]]:
    port = _free_port()
    server = SimulatorServer(
        cast(SimulatorApp, _Routes()), asyncio.get_running_loop(), keep_alive_s, sweep_s=sweep_s
    )
    await server.start("127.0.0.1", port)
    try:
        yield server, f"http://127.0.0.1:{port}"
    finally:
        await server.stop(0.5)


async def test_idle_connections_are_closed_after_the_keep_alive_timeout() -> None:
    # Given a server that keeps idle connections for 0.2 s, swept every 0.1 s
    async with _short_keep_alive(0.2, 0.1) as (server, url):
        reader, writer = await asyncio.open_connection("127.0.0.1", int(url.rsplit(":", 1)[1]))
        writer.write(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        await reader.readuntil(b'{"path":"/a"}')

        # When the connection stays idle past the timeout
        async with asyncio.timeout(2):
            rest = await reader.read()

        # Then the server closed it
        assert rest == b""
        assert server.events["closed_idle"] == 1
        writer.close()


async def test_a_request_on_a_connection_past_its_timeout_is_never_answered() -> None:
    # Given a server whose idle timer (0.2 s) fires before its sweep gets to the connection
    async with _short_keep_alive(0.2, 60) as (server, url):
        client = KeepAliveClient(2.0)
        await client.request("GET", f"{url}/first")

        # When a client without an idle limit reuses the connection after the timeout
        await asyncio.sleep(0.3)
        with pytest.raises(ResponseLost):
            await client.request("GET", f"{url}/second")
        await client.close()

    # Then the request crossed the close and was lost, as with a real server
    assert server.events["closed_under_request"] == 1


async def test_a_client_with_an_idle_limit_below_the_timeout_never_reuses_a_closing_socket() -> None:
    # Given the same server and a client that drops sockets idle for 0.15 s
    async with _short_keep_alive(0.2, 60) as (server, url):
        client = KeepAliveClient(2.0, max_idle_s=0.15)
        outcomes = []

        # When requests come in bursts separated by gaps around the server's timeout
        for gap in (0.05, 0.1, 0.16, 0.25, 0.4):
            replies = await asyncio.gather(*(client.request("GET", f"{url}/{gap}") for _ in range(5)))
            outcomes.extend(reply.status for reply in replies)
            await asyncio.sleep(gap)
        await client.close()

    # Then every request was answered and none was sent on a socket past the timeout
    assert outcomes == [200] * 25
    assert server.events["closed_under_request"] == 0


def _write_and_leave(port: int, raw: bytes, *, close: bool) -> socket.socket | None:
    """A blocking client: writes ``raw`` (the kernel queues it, and the connection, until the
    server's loop gets round to them) and closes at once, or returns the open socket."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(raw)
    if close:
        sock.close()
        return None
    return sock


async def _while_the_loop_is_starved(close: bool) -> tuple[list[str], Counter[str], bytes]:
    """A create written while the server's loop cannot run (called without awaiting, so the loop
    is blocked as a CPU-starved one is), then read once it runs; returns the paths processed, the
    server's events, and what the client got back when it stayed."""
    routes = _Routes()
    port = _free_port()
    server = SimulatorServer(cast(SimulatorApp, routes), asyncio.get_running_loop())
    await server.start("127.0.0.1", port)
    answer = b""
    try:
        sock = _write_and_leave(
            port, b"POST /create HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", close=close
        )
        await asyncio.sleep(0.3)
        if sock is not None:
            sock.settimeout(2)
            answer = sock.recv(65536)
            sock.close()
    finally:
        await server.stop(0.5)
    return [request.path for request in routes.seen], server.events, answer


@pytest.mark.parametrize(
    "loop_factory", [asyncio.new_event_loop, uvloop.new_event_loop], ids=["asyncio", "uvloop"]
)
async def test_a_request_whose_client_left_before_it_was_read_is_never_processed(
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    # Given a server whose loop is starved while a client writes a create and gives up (closes)
    def run() -> tuple[list[str], Counter[str], bytes]:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(_while_the_loop_is_starved(close=True))

    # When the loop runs again and reads the request
    seen, events, _ = await asyncio.to_thread(run)

    # Then the request is dropped unprocessed: nobody waits for its answer
    assert seen == []
    assert events["dropped_client_gone"] == 1


@pytest.mark.parametrize(
    "loop_factory", [asyncio.new_event_loop, uvloop.new_event_loop], ids=["asyncio", "uvloop"]
)
async def test_a_request_read_late_whose_client_still_waits_is_processed(
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    # Given the same starved loop, and a client that keeps waiting
    def run() -> tuple[list[str], Counter[str], bytes]:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(_while_the_loop_is_starved(close=False))

    # When the loop runs again
    seen, events, answer = await asyncio.to_thread(run)

    # Then the request is processed and answered
    assert seen == ["/create"]
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert events["dropped_client_gone"] == 0


async def test_a_request_that_waited_past_the_maximum_age_is_answered_503_unprocessed() -> None:
    # Given a server that serves requests at most 0.1 s old, and a request pipelined behind a
    # reply that takes 0.2 s
    routes = _Routes()
    port = _free_port()
    server = SimulatorServer(cast(SimulatorApp, routes), asyncio.get_running_loop(), max_request_age_s=0.1)
    await server.start("127.0.0.1", port)
    try:
        # When both are sent at once
        data = await _exchange(
            port,
            b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
            b"POST /late HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )
    finally:
        await server.stop(0.5)

    # Then the second is answered 503 with Twilio's 20503, without being processed
    answers = _responses(data)
    assert [a[0] for a in answers] == ["HTTP/1.1 201 Created", "HTTP/1.1 503 Service Unavailable"]
    assert b'"code": 20503' in answers[1][2]
    assert [r.path for r in routes.seen] == ["/slow"]
    assert server.events["expired"] == 1


@asynccontextmanager
async def _reading_late(
    delays: list[float],
) -> AsyncIterator[tuple[SimulatorServer, _Routes, str, list[float]]]:
    """A server whose ``read_delay`` fault gives ``delays`` in turn (then 0): one draw for each
    new connection and each request on a reused one. Yields what is left of ``delays``."""
    routes = _Routes()
    port = _free_port()
    left = list(delays)
    server = SimulatorServer(
        cast(SimulatorApp, routes),
        asyncio.get_running_loop(),
        read_delay=lambda: left.pop(0) if left else 0.0,
    )
    await server.start("127.0.0.1", port)
    try:
        yield server, routes, f"http://127.0.0.1:{port}", left
    finally:
        await server.stop(0.5)


async def test_a_request_on_a_reused_connection_left_unread_past_its_timeout_is_never_processed() -> None:
    # Given a keep-alive connection that served a request, and a fault that leaves the next
    # request arriving on it unread for 0.6 s
    async with _reading_late([0.0, 0.6]) as (server, routes, url, _):
        client = KeepAliveClient(0.2)
        await client.request("GET", f"{url}/first")

        # When a create is written on it and its client gives up after 0.2 s, while another
        # client on a connection of its own is served meanwhile
        with pytest.raises(TimeoutError):
            await client.request("POST", f"{url}/create")
        other = KeepAliveClient(2.0)
        assert (await other.request("GET", f"{url}/other")).status == 200
        await asyncio.sleep(0.8)
        await client.close()
        await other.close()

    # Then the create, read once its client had gone, was dropped unprocessed
    assert [request.path for request in routes.seen] == ["/first", "/other"]
    assert server.events["read_late_done"] == 1
    assert server.events["dropped_client_gone"] == 1


async def test_a_request_on_a_reused_connection_read_late_is_processed_if_its_client_waits() -> None:
    # Given a keep-alive connection that served a request, and a fault that would leave each
    # later request on it unread for 0.3 s
    async with _reading_late([0.0, 0.3, 5.0]) as (server, routes, url, left):
        client = KeepAliveClient(3.0)
        await client.request("GET", f"{url}/first")

        # When a create is written on it by a client that waits, then an admin call
        started = time.monotonic()
        created = await client.request("POST", f"{url}/create")
        waited = time.monotonic() - started
        admin_started = time.monotonic()
        admin = await client.request("GET", f"{url}/admin/faults")
        admin_waited = time.monotonic() - admin_started
        await client.close()

    # Then the create is answered once read, and the admin call at once: the fault never
    # holds the calls that switch it off
    assert created.status == 200 and waited >= 0.3
    assert admin.status == 200 and admin_waited < 2.0 and left == [5.0]
    assert [request.path for request in routes.seen] == ["/first", "/create", "/admin/faults"]
    assert server.events["read_late_done"] == 1
    assert server.events["dropped_client_gone"] == 0

"""The lean HTTP/1.1 client against raw local servers (real sockets): response framing, socket
reuse, and how far a failed request got."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from urllib.parse import urlencode

import pytest

from shared.http1 import KeepAliveClient, NotSent, ResponseLost
from shared.twilio_client import encode_form
from tests.support import free_port

Reply = Callable[[bytes, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def raw_server(reply: Reply) -> AsyncIterator[tuple[str, list[int]]]:
    """Reads each request head (and a Content-Length body), answers with ``reply``; yields the URL
    and the number of requests seen per connection."""
    per_connection: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        per_connection.append(0)
        index = len(per_connection) - 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = await reader.readexactly(length) if length else b""
                per_connection[index] += 1
                await reply(head + body, writer)
                if writer.is_closing():
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    port = free_port()
    server = await asyncio.start_server(handle, "127.0.0.1", port)
    try:
        yield f"http://127.0.0.1:{port}", per_connection
    finally:
        server.close()


async def test_content_length_responses_reuse_one_socket() -> None:
    async def ok(request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 201 Created\r\nContent-Length: 5\r\nX-Thing: a\r\n\r\nhello")

    async with raw_server(ok) as (url, per_connection):
        client = KeepAliveClient(2.0)
        first = await client.post(f"{url}/a", b"x=1", [("Content-Type", "application/x-www-form-urlencoded")])
        second = await client.request("GET", f"{url}/b?q=1")
        await client.close()
    assert (first.status, first.body, first.headers["x-thing"]) == (201, b"hello", "a")
    assert second.body == b"hello"
    assert per_connection == [2]


async def test_chunked_and_close_delimited_bodies_are_read_whole() -> None:
    async def chunked(request: bytes, writer: asyncio.StreamWriter) -> None:
        if b"/chunked" in request:
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            writer.write(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil-close")
            await writer.drain()
            writer.close()

    async with raw_server(chunked) as (url, _):
        client = KeepAliveClient(2.0)
        assert (await client.request("GET", f"{url}/chunked")).body == b"abcde"
        assert (await client.request("GET", f"{url}/close")).body == b"until-close"
        await client.close()


async def test_a_refused_connection_is_not_sent() -> None:
    client = KeepAliveClient(1.0)
    with pytest.raises(NotSent):
        await client.post(f"http://127.0.0.1:{free_port()}/", b"x")
    await client.close()


async def test_a_connection_closed_after_the_request_was_read_lost_the_response() -> None:
    async def hang_up(request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.close()

    async with raw_server(hang_up) as (url, per_connection):
        client = KeepAliveClient(2.0)
        with pytest.raises(ResponseLost):
            await client.post(f"{url}/", b"x")
        await client.close()
    assert per_connection == [1]


async def test_no_answer_in_time_is_a_timeout_and_the_socket_is_dropped() -> None:
    async def slow(request: bytes, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(1.0)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

    async with raw_server(slow) as (url, _):
        client = KeepAliveClient(0.2)
        with pytest.raises(TimeoutError):
            await client.post(f"{url}/", b"x")
        await client.close()


async def test_waiting_too_long_for_a_free_connection_is_not_sent() -> None:
    async def slow(request: bytes, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(0.5)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

    async with raw_server(slow) as (url, per_connection):
        client = KeepAliveClient(2.0, connect_timeout_s=0.1, max_connections=1)
        first = asyncio.create_task(client.post(f"{url}/", b"x"))
        await asyncio.sleep(0.05)
        with pytest.raises(NotSent):
            await client.post(f"{url}/", b"y")
        assert (await first).status == 200
        await client.close()
    # The second request never reached the server.
    assert sum(per_connection) == 1


async def test_an_idle_socket_the_server_closed_is_not_reused() -> None:
    async def once_then_close(request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.close()

    async with raw_server(once_then_close) as (url, per_connection):
        for retry_stale in (True, False):
            client = KeepAliveClient(2.0, retry_stale=retry_stale)
            await client.post(f"{url}/", b"x")
            await asyncio.sleep(0.2)
            # The server has closed the idle socket; the client notices before reusing it.
            assert (await client.post(f"{url}/", b"y")).status == 200
            await client.close()
    assert per_connection == [1, 1, 1, 1]


def test_the_form_encoding_matches_urlencode() -> None:
    params = {
        "To": "whatsapp:+14155550100",
        "From": "whatsapp:+14155238886",
        "Body": "Hi Zoë & co, 50% off? a+b=c / ok",
        "ContentVariables": '{"1": "Ann"}',
        "StatusCallback": "https://x.test/twilio/status/t?a=1&b=2",
        "ValidityPeriod": 14400,
    }
    assert encode_form(params) == urlencode({k: str(v) for k, v in params.items()}).encode()
    every_ascii = "".join(chr(code) for code in range(128))
    assert encode_form({"Body": every_ascii}) == urlencode({"Body": every_ascii}).encode()


async def test_interim_1xx_responses_are_skipped_for_the_final_answer() -> None:
    async def interim_then_final(request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(
            b"HTTP/1.1 100 Continue\r\n\r\n"
            b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
            b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\nX-Final: yes\r\n\r\nok"
        )

    async with raw_server(interim_then_final) as (url, per_connection):
        client = KeepAliveClient(2.0)
        first = await client.post(f"{url}/a", b"x=1")
        second = await client.post(f"{url}/b", b"x=2")
        await client.close()

    assert (first.status, first.body, first.headers.get("x-final")) == (201, b"ok", "yes")
    assert "link" not in first.headers
    assert second.status == 201 and per_connection == [2]

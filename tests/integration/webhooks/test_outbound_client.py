"""The webhook client against hostile endpoints on real sockets: redirects, huge answers, answers
trickled byte by byte, hosts that resolve to this machine."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from services.tracker.outbound_client import EXCERPT_CHARS, AttemptResult, WebhookClient
from shared.webhook_signature import SIGNATURE_HEADER, verify
from tests.support import free_port

SECRET = "whsec_client_test"
bodies: list[bytes] = []


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, list[web.Request]]]:
    seen: list[web.Request] = []
    bodies.clear()

    async def redirect(request: web.Request) -> web.Response:
        seen.append(request)
        raise web.HTTPFound("/ok")

    async def ok(request: web.Request) -> web.Response:
        seen.append(request)
        bodies.append(await request.read())
        return web.Response(status=200, text="thanks")

    async def huge(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=200)
        await response.prepare(request)
        for _ in range(10_000):  # 100 MB unless the client stops reading
            await response.write(b"x" * 10_000)
        return response

    async def trickle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=200)
        await response.prepare(request)
        for _ in range(100):
            await response.write(b"x")
            await asyncio.sleep(0.2)
        return response

    app = web.Application()
    for path, handler in (("/redirect", redirect), ("/ok", ok), ("/huge", huge), ("/trickle", trickle)):
        app.router.add_post(path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


def _client(*, public_only: bool = False, timeout_s: float = 2.0) -> WebhookClient:
    return WebhookClient(
        max_connections=4, timeout_s=timeout_s, max_response_bytes=64 * 1024, public_only=public_only
    )


async def _post(client: WebhookClient, url: str) -> AttemptResult:
    return await client.post(
        url, b'{"id":"evt_1"}', secret=SECRET, event_id="evt_1", event_type="campaign.started", delivery_id=7
    )


async def test_a_delivery_is_signed_and_its_answer_kept(server: tuple[str, list[web.Request]]) -> None:
    base, seen = server
    client = _client()
    try:
        result = await _post(client, f"{base}/ok")
    finally:
        await client.close()
    assert result.status_code == 200 and result.response == "thanks" and result.error is None
    request = seen[0]
    assert request.headers["WCE-Event-Id"] == "evt_1" and request.headers["WCE-Delivery-Id"] == "7"
    verify(SECRET, request.headers[SIGNATURE_HEADER], bodies[0], now=time.time())


async def test_a_redirect_is_an_answer_not_followed(server: tuple[str, list[web.Request]]) -> None:
    base, seen = server
    client = _client()
    try:
        result = await _post(client, f"{base}/redirect")
    finally:
        await client.close()
    assert result.status_code == 302
    assert [r.path for r in seen] == ["/redirect"]


async def test_a_huge_answer_is_read_only_up_to_the_limit(server: tuple[str, list[web.Request]]) -> None:
    base, _ = server
    client = _client()
    try:
        result = await _post(client, f"{base}/huge")
    finally:
        await client.close()
    assert result.status_code == 200 and len(result.response) == EXCERPT_CHARS


async def test_an_answer_trickled_past_the_deadline_is_cut_off_there(
    server: tuple[str, list[web.Request]],
) -> None:
    # Given an endpoint that sends a byte every 0.2 s (each read is quick, the whole takes 20 s)
    base, _ = server
    client = _client(timeout_s=1.5)
    try:
        result = await _post(client, f"{base}/trickle")
    finally:
        await client.close()
    # Then the attempt ends at its deadline, as a failure
    assert result.error is not None and "within 1.5 s" in result.error
    assert result.duration_ms < 10_000


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_strict_deliveries_never_connect_to_this_machine(
    server: tuple[str, list[web.Request]], host: str
) -> None:
    base, seen = server
    client = _client(public_only=True)
    try:
        result = await _post(client, base.replace("127.0.0.1", host) + "/ok")
    finally:
        await client.close()
    assert result.status_code is None and "not public" in (result.error or "")
    assert seen == []

"""The Twilio client against a small local HTTP server (real sockets): request shape, response
parsing, pagination, and its verdict on whether a failed request may have reached Twilio."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
import pytest
from aiohttp import web

from shared.twilio_client import (
    ProxyConfigured,
    TwilioClient,
    TwilioCredentials,
    TwilioError,
    approved_content_sids,
    parse_retry_after,
    parse_twilio_date,
    refuse_proxies,
)
from tests.support import free_port

CREDS = TwilioCredentials("AC" + "1" * 32, "token")
SID = "SM" + "f" * 32

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class FakeTwilio:
    """Answers with ``handler`` and keeps every request it saw (with its form body)."""

    handler: Handler | None = None
    seen: list[tuple[web.Request, dict[str, str]]] = field(default_factory=list)
    url: str = ""

    def client(self, timeout_s: float = 2.0) -> TwilioClient:
        return TwilioClient(
            api_base_url=self.url, content_base_url=self.url, timeout_s=timeout_s, max_connections=4
        )


@pytest.fixture
async def twilio() -> AsyncIterator[FakeTwilio]:
    fake = FakeTwilio()

    async def dispatch(request: web.Request) -> web.StreamResponse:
        form = dict(await request.post()) if request.method == "POST" else {}
        fake.seen.append((request, {k: str(v) for k, v in form.items()}))
        assert fake.handler is not None
        return await fake.handler(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", dispatch)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    fake.url = f"http://127.0.0.1:{port}"
    try:
        yield fake
    finally:
        await runner.cleanup()


def json_response(payload: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(payload), status=status, content_type="application/json", headers=headers
    )


async def test_create_posts_form_with_basic_auth_and_drops_missing_parameters(twilio: FakeTwilio) -> None:
    # Given a Twilio that answers 201
    async def created(request: web.Request) -> web.Response:
        return json_response({"sid": SID, "status": "queued"}, 201)

    twilio.handler = created
    client = twilio.client()
    # When a content message is created
    message = await client.create_message(
        CREDS,
        to="whatsapp:+14155550100",
        from_="whatsapp:+14155550199",
        content_sid="HX" + "a" * 32,
        content_variables={"1": "Ann"},
        status_callback="http://cb.test/twilio/status/t",
    )
    await client.aclose()
    # Then the sid comes back and the request follows the reference checklist
    assert message.sid == SID and message.status == "queued"
    request, form = twilio.seen[0]
    assert request.path == f"/2010-04-01/Accounts/{CREDS.account_sid}/Messages.json"
    expected_auth = base64.b64encode(f"{CREDS.account_sid}:token".encode()).decode()
    assert request.headers["Authorization"] == f"Basic {expected_auth}"
    assert request.headers["Accept"] == "application/json"
    assert request.headers["Content-Type"].startswith("application/x-www-form-urlencoded")
    assert form["To"] == "whatsapp:+14155550100"
    assert orjson.loads(form["ContentVariables"]) == {"1": "Ann"}
    assert "Body" not in form and "MessagingServiceSid" not in form


async def test_an_error_body_becomes_a_twilio_error_with_code_and_retry_after(twilio: FakeTwilio) -> None:
    async def too_many(request: web.Request) -> web.Response:
        return json_response({"code": 20429, "message": "Too Many Requests"}, 429, {"Retry-After": "7"})

    twilio.handler = too_many
    client = twilio.client()
    with pytest.raises(TwilioError) as caught:
        await client.create_message(CREDS, to="whatsapp:+1", from_="whatsapp:+2", body="x")
    await client.aclose()
    error = caught.value
    assert (error.http_status, error.code, error.message, error.retry_after_s, error.reached) == (
        429,
        20429,
        "Too Many Requests",
        7.0,
        True,
    )


async def test_an_unparseable_error_body_falls_back_to_the_status(twilio: FakeTwilio) -> None:
    async def bad_gateway(request: web.Request) -> web.Response:
        return web.Response(text="<html>bad gateway</html>", status=502)

    twilio.handler = bad_gateway
    client = twilio.client()
    with pytest.raises(TwilioError) as caught:
        await client.create_message(CREDS, to="whatsapp:+1", from_="whatsapp:+2", body="x")
    await client.aclose()
    assert caught.value.http_status == 502 and caught.value.code is None


async def test_a_refused_connection_never_reached_twilio() -> None:
    # Given nothing listening on a port
    url = f"http://127.0.0.1:{free_port()}"
    client = TwilioClient(api_base_url=url, content_base_url=url, timeout_s=1.0, max_connections=2)
    # When a message is created / Then the error says the request never left
    with pytest.raises(TwilioError) as caught:
        await client.create_message(CREDS, to="whatsapp:+1", from_="whatsapp:+2", body="x")
    await client.aclose()
    assert caught.value.reached is False and caught.value.http_status is None


async def test_a_read_timeout_after_sending_may_have_reached_twilio(twilio: FakeTwilio) -> None:
    # Given a server that takes the request and never answers in time
    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(1)
        return json_response({}, 201)

    twilio.handler = hang
    client = twilio.client(timeout_s=0.3)
    # When a message is created / Then the outcome is "may have reached"
    with pytest.raises(TwilioError) as caught:
        await client.create_message(CREDS, to="whatsapp:+1", from_="whatsapp:+2", body="x")
    await client.aclose()
    assert caught.value.reached is True and caught.value.http_status is None


async def test_listing_messages_follows_pagination_on_the_configured_host(twilio: FakeTwilio) -> None:
    # Given two pages, the first pointing to the second on another host
    async def pages(request: web.Request) -> web.Response:
        if "PageToken" not in request.query:
            first = {
                "sid": "SM1",
                "to": "whatsapp:+1",
                "from": "whatsapp:+2",
                "status": "sent",
                "date_created": "Thu, 24 Aug 2023 05:01:45 +0000",
                "date_sent": None,
            }
            return json_response(
                {
                    "messages": [first],
                    "next_page_uri": "https://api.twilio.com/2010-04-01/Accounts/AC/Messages.json?PageToken=p2",
                }
            )
        return json_response({"messages": [{"sid": "SM2"}], "next_page_uri": None})

    twilio.handler = pages
    client = twilio.client()
    # When listed with a DateSent lower bound
    found = await client.list_messages(
        CREDS, to="whatsapp:+1", from_="whatsapp:+2", sent_after=datetime(2023, 8, 24, 5, 0, tzinfo=UTC)
    )
    await client.aclose()
    # Then both pages are read from the configured server, with the filters on the first request
    assert [m.sid for m in found] == ["SM1", "SM2"]
    assert found[0].date_created == datetime(2023, 8, 24, 5, 1, 45, tzinfo=UTC)
    first = twilio.seen[0][0].query
    assert first["To"] == "whatsapp:+1" and first["DateSent>"] == "2023-08-24T05:00:00Z"
    assert twilio.seen[1][0].query["PageToken"] == "p2"


async def test_only_approved_content_templates_can_be_chosen(twilio: FakeTwilio) -> None:
    async def contents(request: web.Request) -> web.Response:
        assert request.path == "/v1/ContentAndApprovals"
        return json_response(
            {
                "contents": [
                    {
                        "sid": "HX1",
                        "friendly_name": "a",
                        "types": {"twilio/text": {}},
                        "approval_requests": {"status": "approved", "category": "UTILITY"},
                    },
                    {"sid": "HX2", "approval_requests": {"status": "rejected"}},
                    {"sid": "HX3", "approval_requests": {"whatsapp": {"status": "approved"}}},
                    {"sid": "HX4"},
                ],
                "meta": {"next_page_url": None},
            }
        )

    twilio.handler = contents
    client = twilio.client()
    templates = await client.list_content_templates(CREDS)
    assert await approved_content_sids(client, CREDS) == {"HX1", "HX3"}
    await client.aclose()
    assert templates[0].types == ("twilio/text",) and templates[0].category == "UTILITY"


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("3", now) == 3.0
    assert parse_retry_after("Wed, 01 Jan 2025 12:00:10 GMT", now) == 10.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None) is None


def test_dates_in_either_twilio_format_parse() -> None:
    assert parse_twilio_date("2025-01-01T10:00:00Z") == datetime(2025, 1, 1, 10, tzinfo=UTC)
    assert parse_twilio_date("Wed, 01 Jan 2025 10:00:00 +0000") == datetime(2025, 1, 1, 10, tzinfo=UTC)
    assert parse_twilio_date("") is None


def test_a_proxy_configured_for_twilio_is_refused_with_a_clear_error() -> None:
    # Given HTTPS_PROXY set for everything
    environ = {"HTTPS_PROXY": "http://proxy.internal:3128"}
    # Then a client for real Twilio refuses to start, naming the variable and the way out
    with pytest.raises(ProxyConfigured, match=r"HTTPS_PROXY.*NO_PROXY"):
        refuse_proxies(["https://api.twilio.com", "https://content.twilio.com"], environ)
    # And one whose hosts NO_PROXY exempts, or that talks to this machine, starts
    refuse_proxies(["https://api.twilio.com"], {**environ, "NO_PROXY": ".twilio.com"})
    refuse_proxies(["http://127.0.0.1:8010", "https://localhost:8443"], environ)
    refuse_proxies(["https://api.twilio.com"], {"HTTP_PROXY": "http://proxy.internal:3128"})


async def test_a_create_whose_write_deadline_passed_is_never_written(twilio: FakeTwilio) -> None:
    # Given a sender that was frozen past the time its claim allowed it to write the request
    calls: list[web.Request] = []

    async def created(request: web.Request) -> web.Response:
        calls.append(request)
        return json_response({"sid": "SM" + "0" * 32, "status": "queued"}, 201)

    twilio.handler = created
    client = twilio.client()
    # When it creates the message with that deadline behind it
    with pytest.raises(TwilioError) as caught:
        await client.create_message(
            CREDS, to="whatsapp:+1", from_="whatsapp:+2", body="x", write_by=time.monotonic() - 0.001
        )
    # Then nothing reached the server and the error says so; with time left, it is sent
    assert caught.value.reached is False and caught.value.missed_write_by is True and not calls
    await client.create_message(
        CREDS, to="whatsapp:+1", from_="whatsapp:+2", body="x", write_by=time.monotonic() + 5
    )
    assert len(calls) == 1
    # And a deadline missed on a kept-alive connection leaves it in use for the next create
    with pytest.raises(TwilioError) as again:
        await client.create_message(
            CREDS, to="whatsapp:+1", from_="whatsapp:+2", body="x", write_by=time.monotonic() - 0.001
        )
    assert again.value.missed_write_by is True
    await client.create_message(CREDS, to="whatsapp:+1", from_="whatsapp:+2", body="x")
    await client.aclose()
    assert len(calls) == 2
    assert calls[0].transport is calls[1].transport

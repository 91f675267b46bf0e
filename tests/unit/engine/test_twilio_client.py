"""The Twilio client's request shape, response parsing, pagination, and its verdict on whether a
failed request may have reached Twilio (real sockets for the transport cases)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from urllib.parse import parse_qs

import httpx
import orjson
import pytest

from shared.twilio_client import (
    TwilioClient,
    TwilioCredentials,
    TwilioError,
    approved_content_sids,
    parse_retry_after,
    parse_twilio_date,
)
from tests.support import free_port

CREDS = TwilioCredentials("AC" + "1" * 32, "token")
SID = "SM" + "f" * 32


def client_with(handler: object, timeout_s: float = 2.0) -> TwilioClient:
    return TwilioClient(
        api_base_url="http://twilio.test",
        content_base_url="http://content.test",
        timeout_s=timeout_s,
        max_connections=4,
        transport=httpx.MockTransport(handler),  # type: ignore[arg-type]
    )


async def test_create_posts_form_with_basic_auth_and_drops_missing_parameters() -> None:
    # Given a Twilio that records the request and answers 201
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"sid": SID, "status": "queued"})

    client = client_with(handler)
    # When a content message is created
    created = await client.create_message(
        CREDS,
        to="whatsapp:+14155550100",
        from_="whatsapp:+14155550199",
        content_sid="HX" + "a" * 32,
        content_variables={"1": "Ann"},
        status_callback="http://cb.test/twilio/status/t",
    )
    await client.aclose()
    # Then the sid comes back and the request follows the reference checklist
    assert created.sid == SID and created.status == "queued"
    request = seen[0]
    assert request.url.path == f"/2010-04-01/Accounts/{CREDS.account_sid}/Messages.json"
    assert (
        request.headers["Authorization"]
        == "Basic " + base64.b64encode(f"{CREDS.account_sid}:token".encode()).decode()
    )
    assert request.headers["Accept"] == "application/json"
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    form = parse_qs(request.content.decode())
    assert form["To"] == ["whatsapp:+14155550100"]
    assert orjson.loads(form["ContentVariables"][0]) == {"1": "Ann"}
    assert "Body" not in form and "MessagingServiceSid" not in form


async def test_an_error_body_becomes_a_twilio_error_with_code_and_retry_after() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            429,
            json={"code": 20429, "message": "Too Many Requests", "status": 429},
            headers={"Retry-After": "7"},
        )

    client = client_with(handler)
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


async def test_an_unparseable_error_body_falls_back_to_the_status() -> None:
    client = client_with(lambda request: httpx.Response(502, text="<html>bad gateway</html>"))
    with pytest.raises(TwilioError) as caught:
        await client.create_message(CREDS, to="whatsapp:+1", from_="whatsapp:+2", body="x")
    await client.aclose()
    assert caught.value.http_status == 502 and caught.value.code is None


async def test_a_refused_connection_never_reached_twilio() -> None:
    # Given nothing listening on a port
    port = free_port()
    client = TwilioClient(
        api_base_url=f"http://127.0.0.1:{port}", content_base_url="http://x", timeout_s=1.0, max_connections=2
    )
    # When a message is created / Then the error says the request never left
    with pytest.raises(TwilioError) as caught:
        await client.create_message(CREDS, to="whatsapp:+1", from_="whatsapp:+2", body="x")
    await client.aclose()
    assert caught.value.reached is False and caught.value.http_status is None


@pytest.fixture
async def silent_server() -> AsyncIterator[int]:
    """Accepts connections, reads the request, never answers."""

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        await asyncio.sleep(30)

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        server.close()


async def test_a_read_timeout_after_sending_may_have_reached_twilio(silent_server: int) -> None:
    # Given a server that takes the request and never answers
    client = TwilioClient(
        api_base_url=f"http://127.0.0.1:{silent_server}",
        content_base_url="http://x",
        timeout_s=0.3,
        max_connections=2,
    )
    # When a message is created / Then the outcome is "may have reached"
    with pytest.raises(TwilioError) as caught:
        await client.create_message(CREDS, to="whatsapp:+1", from_="whatsapp:+2", body="x")
    await client.aclose()
    assert caught.value.reached is True and caught.value.http_status is None


async def test_listing_messages_follows_pagination_on_the_configured_host() -> None:
    # Given two pages, the first pointing to the second on another host
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if "PageToken" not in str(request.url):
            return httpx.Response(
                200,
                json={
                    "messages": [
                        {
                            "sid": "SM1",
                            "to": "whatsapp:+1",
                            "from": "whatsapp:+2",
                            "status": "sent",
                            "date_created": "Thu, 24 Aug 2023 05:01:45 +0000",
                            "date_sent": None,
                        }
                    ],
                    "next_page_uri": "https://api.twilio.com/2010-04-01/Accounts/AC/Messages.json?PageToken=p2",
                },
            )
        return httpx.Response(200, json={"messages": [{"sid": "SM2"}], "next_page_uri": None})

    client = client_with(handler)
    # When listed with a DateSent lower bound
    found = await client.list_messages(
        CREDS, to="whatsapp:+1", from_="whatsapp:+2", sent_after=datetime(2023, 8, 24, 5, 0, tzinfo=UTC)
    )
    await client.aclose()
    # Then both pages are read, from the configured host, with the filters on the first request
    assert [m.sid for m in found] == ["SM1", "SM2"]
    assert found[0].date_created == datetime(2023, 8, 24, 5, 1, 45, tzinfo=UTC)
    assert {c.url.host for c in calls} == {"twilio.test"}
    first = dict(calls[0].url.params)
    assert first["To"] == "whatsapp:+1" and first["DateSent>"] == "2023-08-24T05:00:00Z"


async def test_only_approved_content_templates_can_be_chosen() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/ContentAndApprovals"
        return httpx.Response(
            200,
            json={
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
            },
        )

    client = client_with(handler)
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

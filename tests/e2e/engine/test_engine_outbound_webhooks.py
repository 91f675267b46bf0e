"""Outbound webhooks end to end: campaigns run through the whole stack while a real HTTP receiver
in this test takes (or refuses, or hangs on) the deliveries the tracker makes."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import orjson
import pytest
from aiohttp import web

from shared.webhook_signature import SIGNATURE_HEADER, verify
from tests.e2e.helpers import (
    FINAL_STATES,
    TenantHandle,
    create_campaign,
    customers,
    import_customers,
    new_tenant,
    wait_for_state,
)
from tests.integration.tracker.helpers import eventually
from tests.support import OPERATOR_TOKEN, Stack, free_port

# Short tiers and a short deadline so retries and hangs play out in seconds; few slots, so a
# hanging endpoint would hold the worker if the bounds did not hold.
STACK_ENV = {
    "WCE_WEBHOOK_RETRY_TIERS_S": "1,2",
    "WCE_WEBHOOK_TIMEOUT_S": "3",
    "WCE_WEBHOOK_POLL_S": "0.1",
    "WCE_WEBHOOK_CONCURRENCY": "4",
    "WCE_WEBHOOK_ENDPOINT_CONCURRENCY": "2",
    "WCE_WEBHOOK_TENANT_CONCURRENCY": "2",
    "WCE_WEBHOOK_DISABLE_AFTER_S": "0",
    "WCE_WEBHOOK_DISABLE_AFTER_FAILURES": "12",
}
SENDERS = 1


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = orjson.loads(self.body)
        return parsed


@dataclass
class Receiver:
    """An HTTP server taking deliveries: ``/ok/<name>`` answers 204, ``/fail/<name>`` 500 with a
    long body, ``/hang/<name>`` never answers (and counts the requests it holds)."""

    port: int = field(default_factory=free_port)
    received: dict[str, list[Received]] = field(default_factory=lambda: defaultdict(list))
    hanging_now: int = 0
    hanging_most: int = 0

    def url(self, kind: str, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{kind}/{name}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        kind, name = request.match_info["kind"], request.match_info["name"]
        self.received[name].append(Received(kind, dict(request.headers), await request.read(), time.time()))
        if kind == "fail":
            return web.Response(status=500, text="upstream broke " * 1000)
        if kind == "hang":
            self.hanging_now += 1
            self.hanging_most = max(self.hanging_most, self.hanging_now)
            try:
                await asyncio.sleep(3600)
            finally:
                self.hanging_now -= 1
        return web.Response(status=204)

    async def __aenter__(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/{kind}/{name}", self._handle)
        self._runner = web.AppRunner(app, handler_cancellation=True)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._runner.cleanup()


@pytest.fixture
def stack(engine_stack: Stack) -> Stack:
    return engine_stack


async def _endpoint(stack: Stack, tenant: TenantHandle, url: str, event_types: list[str]) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=stack.api_url, headers=tenant.headers, timeout=30) as api:
        response = await api.post("/v1/webhooks/endpoints", json={"url": url, "event_types": event_types})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def _deliveries(stack: Stack, tenant: TenantHandle, **params: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=stack.api_url, headers=tenant.headers, timeout=30) as api:
        response = await api.get("/v1/webhooks/deliveries", params={"limit": 500, **params})
    response.raise_for_status()
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def _campaign_of(stack: Stack, tenant: TenantHandle, count: int, start: int = 0) -> dict[str, Any]:
    await import_customers(stack, tenant, customers(count, start=start))
    return await create_campaign(stack, tenant)


def _types(received: list[Received]) -> list[str]:
    return [r.event["type"] for r in received]


async def test_a_campaigns_lifecycle_and_status_events_arrive_signed(stack: Stack) -> None:
    async with Receiver() as receiver:
        # Given a tenant with an endpoint for lifecycle and status events
        tenant = await new_tenant(stack)
        created = await _endpoint(
            stack,
            tenant,
            receiver.url("ok", "signed"),
            ["campaign.started", "campaign.completed", "recipient.sent", "recipient.delivered"],
        )
        secret = created["secret"]
        assert created["endpoint"]["enabled"] is True and "secret" not in created["endpoint"]

        # When a campaign to three customers runs to its end
        campaign = await _campaign_of(stack, tenant, 3)
        await wait_for_state(stack, tenant, campaign["id"], {"completed"}, timeout_s=120)

        # Then the receiver gets the campaign's start and end and each recipient's sent and delivered
        def complete() -> bool:
            types = _types(receiver.received["signed"])
            return (
                types.count("recipient.sent") == 3
                and types.count("recipient.delivered") == 3
                and ("campaign.completed" in types)
            )

        assert await eventually(lambda: asyncio.sleep(0, complete()), timeout_s=60, every_s=0.2), _types(
            receiver.received["signed"]
        )
        received = receiver.received["signed"]
        assert "campaign.started" in _types(received)
        # And every delivery verifies with the documented procedure, with the endpoint's secret
        for delivery in received:
            verify(secret, delivery.headers[SIGNATURE_HEADER], delivery.body, now=time.time())
            event = delivery.event
            assert delivery.headers["WCE-Event-Id"] == event["id"]
            assert delivery.headers["WCE-Event-Type"] == event["type"]
            assert event["tenant_id"] == tenant.id
            assert event["data"]["campaign_id"] == campaign["id"]
        delivered = [r.event["data"] for r in received if r.event["type"] == "recipient.delivered"]
        assert {d["customer_external_id"] for d in delivered} == {"cust-0", "cust-1", "cust-2"}
        assert all(d["status"] == "delivered" and d["twilio_sid"].startswith("SM") for d in delivered)
        # And the delivery log says each one succeeded at its first attempt
        log = await eventually(
            lambda: _deliveries(stack, tenant, state="succeeded"), timeout_s=10, every_s=0.2
        )
        assert len(log) == len(received)
        assert all(d["attempts"] == 1 and d["last_status_code"] == 204 for d in log)


async def test_a_failing_endpoint_is_retried_with_back_off_then_disabled_with_a_notice(stack: Stack) -> None:
    async with Receiver() as receiver:
        # Given an endpoint that answers 500 to everything (12 failures disable it; 3 attempts each)
        tenant = await new_tenant(stack)
        created = await _endpoint(stack, tenant, receiver.url("fail", "failing"), ["recipient.sent"])
        endpoint_id = created["endpoint"]["id"]

        # When a campaign to five customers sends
        await _campaign_of(stack, tenant, 5)

        # Then the endpoint is disabled once it has failed twelve times, and says why
        async def endpoint() -> dict[str, Any]:
            async with httpx.AsyncClient(base_url=stack.api_url, headers=tenant.headers, timeout=30) as api:
                found: dict[str, Any] = (await api.get(f"/v1/webhooks/endpoints/{endpoint_id}")).json()
            return found

        disabled = await eventually(
            lambda: _when(endpoint(), lambda e: not e["enabled"]), timeout_s=90, every_s=0.5
        )
        assert disabled and disabled["disabled_at"] and "failed" in disabled["disabled_reason"]
        assert disabled["consecutive_failures"] >= 12

        # And a delivery that used its three attempts failed, each retry after its tier's delay
        deliveries = await _deliveries(stack, tenant, endpoint_id=endpoint_id)
        assert len(deliveries) == 5
        finished = [d for d in deliveries if d["state"] == "failed"]
        assert finished, deliveries
        async with httpx.AsyncClient(base_url=stack.api_url, headers=tenant.headers, timeout=30) as api:
            detail = (await api.get(f"/v1/webhooks/deliveries/{finished[0]['id']}")).json()
        attempts = detail["attempt_log"]
        assert [a["attempt"] for a in attempts] == [1, 2, 3]
        assert all(a["status_code"] == 500 and a["error"] == "answered 500" for a in attempts)
        assert all(len(a["response"]) <= 500 and a["response"].startswith("upstream broke") for a in attempts)
        times = [_epoch(a["at"]) for a in attempts]
        assert times[1] - times[0] >= 0.9 and times[2] - times[1] >= 1.9
        assert detail["last_status_code"] == 500 and detail["next_attempt_at"] is None
        # And a receiver got the same event each time
        event_ids = [r.headers["WCE-Event-Id"] for r in receiver.received["failing"]]
        assert event_ids.count(detail["event_id"]) == 3

        # And the operator's audit log has the notice
        async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as api:
            audit = (
                await api.get(
                    "/v1/operator/audit",
                    params={"tenant_id": tenant.id, "action": "webhook_endpoint.disabled"},
                    headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"},
                )
            ).json()
        assert [e["detail"]["endpoint_id"] for e in audit["entries"]] == [endpoint_id]

        # And nothing more reaches the disabled endpoint
        count = len(receiver.received["failing"])
        await asyncio.sleep(3)
        assert len(receiver.received["failing"]) == count


async def test_a_hanging_endpoint_holds_neither_another_tenants_deliveries_nor_its_campaign(
    stack: Stack,
) -> None:
    async with Receiver() as receiver:
        # Given tenant A whose endpoint never answers, with a campaign of 30 sending
        a, b = await new_tenant(stack), await new_tenant(stack)
        await _endpoint(stack, a, receiver.url("hang", "a"), ["recipient.sent"])
        await _endpoint(stack, b, receiver.url("ok", "b"), ["recipient.sent"])
        a_campaign = await _campaign_of(stack, a, 30, start=100)
        assert await eventually(
            lambda: asyncio.sleep(0, receiver.hanging_now >= 2), timeout_s=60, every_s=0.1
        )

        # When tenant B's campaign sends while A's endpoint holds its slots
        b_campaign = await _campaign_of(stack, b, 3, start=200)

        # Then B's deliveries arrive while A's are still waiting on the hanging endpoint
        assert await eventually(
            lambda: asyncio.sleep(0, len(receiver.received["b"]) == 3), timeout_s=60, every_s=0.1
        ), receiver.received.keys()
        a_waiting = [d for d in await _deliveries(stack, a) if d["state"] in ("pending", "delivering")]
        assert len(a_waiting) >= 20
        # And A's endpoint never held more than its bound of two attempts at once
        assert receiver.hanging_most <= 2
        # And both campaigns sent everything, A's as if no endpoint were listening
        for tenant, campaign in ((a, a_campaign), (b, b_campaign)):
            done = await wait_for_state(stack, tenant, campaign["id"], {"completed"}, timeout_s=120)
            assert done["state"] == "completed"
        async with httpx.AsyncClient(base_url=stack.tracker_url, headers=a.headers, timeout=30) as reads:
            page = (
                await reads.get(f"/v1/campaigns/{a_campaign['id']}/recipients", params={"limit": 100})
            ).json()
        assert len(page["items"]) == 30 and all(r["state"] in FINAL_STATES for r in page["items"])


async def test_a_delivery_is_resent_with_the_same_event_and_a_fresh_signature(stack: Stack) -> None:
    async with Receiver() as receiver:
        # Given a delivered campaign.started event
        tenant = await new_tenant(stack)
        created = await _endpoint(stack, tenant, receiver.url("ok", "resend"), ["campaign.started"])
        await _campaign_of(stack, tenant, 1)
        first = await eventually(
            lambda: _deliveries(stack, tenant, state="succeeded"), timeout_s=60, every_s=0.2
        )
        assert len(first) == 1

        # When the tenant resends it
        async with httpx.AsyncClient(base_url=stack.api_url, headers=tenant.headers, timeout=30) as api:
            response = await api.post(f"/v1/webhooks/deliveries/{first[0]['id']}/resend")
        assert response.status_code == 202, response.text
        resent = response.json()
        assert resent["resend_of"] == first[0]["id"] and resent["event_id"] == first[0]["event_id"]

        # Then the receiver gets the same event again, signed anew
        assert await eventually(
            lambda: asyncio.sleep(0, len(receiver.received["resend"]) == 2), timeout_s=30, every_s=0.1
        )
        original, again = receiver.received["resend"]
        assert original.body == again.body
        assert again.headers["WCE-Delivery-Id"] == str(resent["id"])
        verify(created["secret"], again.headers[SIGNATURE_HEADER], again.body, now=time.time())
        # And the log lists both deliveries
        assert {d["id"] for d in await _deliveries(stack, tenant)} == {first[0]["id"], resent["id"]}


async def test_another_tenants_endpoints_and_deliveries_answer_404(stack: Stack) -> None:
    async with Receiver() as receiver:
        # Given tenant A with an endpoint and a delivery, and tenant B
        a, b = await new_tenant(stack), await new_tenant(stack)
        created = await _endpoint(stack, a, receiver.url("ok", "matrix"), ["campaign.started"])
        endpoint_id = created["endpoint"]["id"]
        await _campaign_of(stack, a, 1, start=300)
        delivery = (await eventually(lambda: _deliveries(stack, a), timeout_s=60, every_s=0.2))[0]

        # When B reads, changes, resends and deletes them
        async with httpx.AsyncClient(base_url=stack.api_url, headers=b.headers, timeout=30) as api:
            answers = [
                (await api.get(f"/v1/webhooks/endpoints/{endpoint_id}")).status_code,
                (
                    await api.patch(f"/v1/webhooks/endpoints/{endpoint_id}", json={"enabled": False})
                ).status_code,
                (await api.delete(f"/v1/webhooks/endpoints/{endpoint_id}")).status_code,
                (await api.get(f"/v1/webhooks/deliveries/{delivery['id']}")).status_code,
                (await api.post(f"/v1/webhooks/deliveries/{delivery['id']}/resend")).status_code,
            ]
            listed = (await api.get("/v1/webhooks/deliveries", params={"endpoint_id": endpoint_id})).json()
            endpoints = (await api.get("/v1/webhooks/endpoints")).json()

        # Then every answer is 404, B's lists are empty, and A's endpoint is as it was
        assert answers == [404] * 5
        assert listed["items"] == [] and endpoints == []
        async with httpx.AsyncClient(base_url=stack.api_url, headers=a.headers, timeout=30) as api:
            mine = (await api.get(f"/v1/webhooks/endpoints/{endpoint_id}")).json()
        assert mine["enabled"] is True


async def test_bad_endpoints_are_refused_naming_the_field(stack: Stack) -> None:
    tenant = await new_tenant(stack)
    async with httpx.AsyncClient(base_url=stack.api_url, headers=tenant.headers, timeout=30) as api:
        bad_url = await api.post(
            "/v1/webhooks/endpoints", json={"url": "ftp://example.com/x", "event_types": ["campaign.started"]}
        )
        bad_type = await api.post(
            "/v1/webhooks/endpoints",
            json={"url": "https://example.com/x", "event_types": ["campaign.exploded"]},
        )
        none = await api.post(
            "/v1/webhooks/endpoints", json={"url": "https://example.com/x", "event_types": []}
        )
        listed = (await api.get("/v1/webhooks/endpoints")).json()
    assert bad_url.status_code == 422 and bad_url.json()["errors"][0]["field"] == "url"
    assert bad_type.status_code == 422 and bad_type.json()["errors"][0]["field"] == "event_types.0"
    assert none.status_code == 422 and none.json()["errors"][0]["field"] == "event_types"
    assert listed == []


async def _when(value: Any, condition: Any) -> Any:
    result = await value
    return result if condition(result) else None


def _epoch(at: str) -> float:
    return datetime.fromisoformat(at).timestamp()

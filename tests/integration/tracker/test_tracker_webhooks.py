"""The webhook endpoints: a valid signature is published and answered 200; anything else is 403
and reaches neither the broker nor the database."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import asyncpg
import httpx
import orjson
from aio_pika.abc import AbstractQueue
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.tracker.helpers import (
    RunningTracker,
    eventually,
    new_sid,
    seed_campaign,
    seed_recipients,
    seed_tenant,
    signed_headers,
    start_tracker,
    status_params,
)
from tests.support import IsolatedEnvironment


async def _published_for(
    spy: AbstractQueue, tenant_id: uuid.UUID, wait_s: float = 0.5
) -> list[dict[str, object]]:
    await asyncio.sleep(wait_s)
    found = []
    while (message := await spy.get(no_ack=True, fail=False)) is not None:
        body = orjson.loads(message.body)
        # Status callbacks travel in groups, inbound messages one by one.
        for entry in body.get("callbacks", [body]):
            if entry["tenant_id"] == str(tenant_id):
                found.append(entry)
    return found


async def _rejections(tracker: RunningTracker, client: httpx.AsyncClient) -> dict[str, float]:
    text = (await client.get(f"{tracker.url}/metrics")).text
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "wce_webhook_rejections":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    counts[sample.labels["reason"]] = sample.value
    return counts


async def test_a_signed_status_callback_is_published_answered_200_and_persisted(
    tracker: RunningTracker, pool: asyncpg.Pool, status_spy: AbstractQueue
) -> None:
    # Given a sent message of a tenant
    tenant = await seed_tenant(pool)
    campaign_id = await seed_campaign(pool, tenant.id)
    [recipient] = await seed_recipients(pool, tenant.id, campaign_id, 1)
    assert recipient.sid is not None

    # When Twilio posts its delivered callback
    async with httpx.AsyncClient(timeout=10) as client:
        response = await tracker.post_status(client, tenant, status_params(recipient.sid, "delivered"))

    # Then it is answered 200 with no body, published once, and the recipient is delivered
    assert response.status_code == 200
    assert response.content == b""
    [published] = await _published_for(status_spy, tenant.id, wait_s=0.2)
    assert published["params"]["MessageSid"] == recipient.sid  # type: ignore[index]
    state = await eventually(
        lambda: pool.fetchval(
            "SELECT state FROM recipients WHERE id = $1 AND state = 'delivered'", recipient.id
        )
    )
    assert state == "delivered"


async def test_tampered_unsigned_foreign_and_unknown_tenant_callbacks_get_403_and_write_nothing(
    tracker: RunningTracker, pool: asyncpg.Pool, status_spy: AbstractQueue
) -> None:
    # Given a tenant with a sent message, and another tenant
    tenant = await seed_tenant(pool)
    other = await seed_tenant(pool)
    campaign_id = await seed_campaign(pool, tenant.id)
    [recipient] = await seed_recipients(pool, tenant.id, campaign_id, 1)
    assert recipient.sid is not None
    url = tracker.status_url(tenant.id)
    params = status_params(recipient.sid, "failed", error_code=63014)
    genuine = signed_headers(tenant.auth_token, url, params)

    async with httpx.AsyncClient(timeout=10) as client:
        before = await _rejections(tracker, client)

        # When callbacks arrive tampered, unsigned, signed with another tenant's token, or for a
        # tenant that does not exist
        tampered = await client.post(url, data={**params, "ErrorCode": "30008"}, headers=genuine)
        unsigned = await client.post(url, data=params)
        foreign = await client.post(url, data=params, headers=signed_headers(other.auth_token, url, params))
        missing_url = tracker.status_url(uuid.uuid4())
        missing = await client.post(
            missing_url, data=params, headers=signed_headers(tenant.auth_token, missing_url, params)
        )
        garbage = await client.post(f"{tracker.url}/twilio/status/not-a-tenant", data=params, headers=genuine)
        after = await _rejections(tracker, client)

    # Then every one is 403
    assert [r.status_code for r in (tampered, unsigned, foreign, missing, garbage)] == [403] * 5

    # And nothing reached the broker or the database
    assert await _published_for(status_spy, tenant.id) == []
    assert await pool.fetchval("SELECT count(*) FROM callback_receipts WHERE tenant_id = $1", tenant.id) == 0
    assert await pool.fetchval("SELECT count(*) FROM orphan_callbacks WHERE tenant_id = $1", tenant.id) == 0
    assert await pool.fetchval("SELECT state FROM recipients WHERE id = $1", recipient.id) == "sent"
    assert await pool.fetchval("SELECT count(*) FROM suppressions WHERE tenant_id = $1", tenant.id) == 0

    # And each rejection was counted by its reason
    def grew(reason: str) -> float:
        return after.get(reason, 0) - before.get(reason, 0)

    assert grew("bad_signature") == 2
    assert grew("missing_signature") == 1
    assert grew("unknown_tenant") == 2


async def test_behind_a_proxy_the_signature_is_checked_against_the_public_url_with_either_port_form(
    isolated_env: IsolatedEnvironment, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    # Given a tracker published as https://hooks.example.com through a proxy
    public = "https://hooks.example.com"
    proxied = start_tracker(isolated_env, tmp_path, WCE_PUBLIC_BASE_URL=public)
    try:
        tenant = await seed_tenant(pool)
        path = f"/twilio/status/{tenant.id}"
        params = status_params(new_sid(), "sent")
        local = f"{proxied.url}{path}?source=proxy"

        async with httpx.AsyncClient(timeout=10) as client:
            # When Twilio signed the public URL without the port, with :443, or signed the local URL
            without_port = signed_headers(tenant.auth_token, f"{public}{path}?source=proxy", params)
            with_port = signed_headers(
                tenant.auth_token, f"https://hooks.example.com:443{path}?source=proxy", params
            )
            local_signed = signed_headers(tenant.auth_token, local, params)
            answers = [
                await client.post(local, data=params, headers=without_port),
                await client.post(local, data=params, headers=with_port),
                await client.post(local, data=params, headers=local_signed),
            ]

        # Then both public forms are accepted and the internal URL is not
        assert [a.status_code for a in answers] == [200, 200, 403]
    finally:
        proxied.process.stop()


async def test_inbound_webhooks_answer_empty_twiml(tracker: RunningTracker, pool: asyncpg.Pool) -> None:
    tenant = await seed_tenant(pool)
    async with httpx.AsyncClient(timeout=10) as client:
        response = await tracker.post_inbound(client, tenant, sender="+14155550199", body="hello")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/xml")
    assert response.text.endswith("<Response/>")


async def test_only_post_is_accepted_for_status_callbacks(
    tracker: RunningTracker, pool: asyncpg.Pool
) -> None:
    tenant = await seed_tenant(pool)
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(tracker.status_url(tenant.id))
    assert response.status_code == 405


async def test_a_signed_status_callback_without_sid_or_status_is_a_bad_request(
    tracker: RunningTracker, pool: asyncpg.Pool, status_spy: AbstractQueue
) -> None:
    tenant = await seed_tenant(pool)
    url = tracker.status_url(tenant.id)
    params = {"AccountSid": tenant.account_sid, "MessageStatus": "delivered"}
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(url, data=params, headers=signed_headers(tenant.auth_token, url, params))
    assert response.status_code == 400
    assert await _published_for(status_spy, tenant.id) == []

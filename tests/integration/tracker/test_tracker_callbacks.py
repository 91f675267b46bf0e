"""Status callbacks through the broker into PostgreSQL: replays, ordering, orphans, opt-out codes."""

from __future__ import annotations

import asyncio
import random

import aio_pika
import asyncpg
import httpx
import orjson

from shared import topology
from tests.integration.tracker.helpers import (
    RunningTracker,
    eventually,
    new_sid,
    seed_campaign,
    seed_recipients,
    seed_tenant,
    status_params,
)
from tests.support import IsolatedEnvironment


async def _callback_events(pool: asyncpg.Pool, recipient_id: int) -> list[tuple[str, str]]:
    rows = await pool.fetch(
        "SELECT from_state, to_state FROM message_events"
        " WHERE recipient_id = $1 AND source = 'callback' ORDER BY id",
        recipient_id,
    )
    return [(row["from_state"], row["to_state"]) for row in rows]


async def test_read_before_delivered_and_sent_each_three_times_ends_read_with_one_event_per_transition(
    tracker: RunningTracker, pool: asyncpg.Pool
) -> None:
    # Given a message the sender recorded as sent
    tenant = await seed_tenant(pool)
    campaign_id = await seed_campaign(pool, tenant.id)
    [recipient] = await seed_recipients(pool, tenant.id, campaign_id, 1)
    assert recipient.sid is not None

    # When its callbacks arrive read first, then delivered, then sent, each three times over
    async with httpx.AsyncClient(timeout=10) as client:
        for status in ("read", "delivered", "sent"):
            answers = await asyncio.gather(
                *(tracker.post_status(client, tenant, status_params(recipient.sid, status)) for _ in range(3))
            )
            assert [a.status_code for a in answers] == [200, 200, 200]
            await asyncio.sleep(0.1)

    # Then the recipient ends read, delivered time implied, with one event for the one transition
    async def settled() -> asyncpg.Record | None:
        receipts = await pool.fetchval(
            "SELECT count(*) FROM callback_receipts WHERE tenant_id = $1", tenant.id
        )
        return (
            await pool.fetchrow("SELECT * FROM recipients WHERE id = $1", recipient.id)
            if receipts == 3
            else None
        )

    row = await eventually(settled)
    assert row is not None
    await asyncio.sleep(0.3)
    assert row["state"] == "read"
    assert row["read_at"] is not None
    assert row["delivered_at"] == row["read_at"]
    assert await _callback_events(pool, recipient.id) == [("sent", "read")]


async def test_shuffled_callbacks_of_many_messages_never_move_a_state_backwards(
    tracker: RunningTracker, pool: asyncpg.Pool
) -> None:
    # Given 50 sent messages, and each one's sent/delivered/read callbacks twice, all shuffled
    tenant = await seed_tenant(pool)
    campaign_id = await seed_campaign(pool, tenant.id)
    recipients = await seed_recipients(pool, tenant.id, campaign_id, 50)
    posts = [(r.sid, s) for r in recipients for s in ("sent", "delivered", "read") * 2]
    random.Random(7).shuffle(posts)

    # When they are posted concurrently over 50 connections (each answer within 10 s; the posts
    # may queue for the client's connections for longer on a busy machine, not the tracker's doing)
    limits = httpx.Limits(max_connections=50)
    async with httpx.AsyncClient(timeout=httpx.Timeout(10, pool=None), limits=limits) as client:
        answers = await asyncio.gather(
            *(tracker.post_status(client, tenant, status_params(sid or "", status)) for sid, status in posts)
        )
    assert {a.status_code for a in answers} == {200}

    # Then every message ends read, and no recipient has a transition twice or a backwards one
    async def all_read() -> bool:
        count = await pool.fetchval(
            "SELECT count(*) FROM recipients WHERE campaign_id = $1 AND state = 'read'", campaign_id
        )
        return bool(count == 50)

    assert await eventually(all_read)
    await asyncio.sleep(0.3)
    rows = await pool.fetch(
        "SELECT recipient_id, from_state, to_state, count(*) AS n FROM message_events"
        " WHERE campaign_id = $1 AND source = 'callback' GROUP BY 1, 2, 3",
        campaign_id,
    )
    assert all(row["n"] == 1 for row in rows)
    assert {(row["from_state"], row["to_state"]) for row in rows} <= {
        ("sent", "delivered"),
        ("delivered", "read"),
        ("sent", "read"),
    }
    assert (
        await pool.fetchval("SELECT count(*) FROM callback_receipts WHERE tenant_id = $1", tenant.id) == 150
    )


async def test_replays_with_the_same_idempotency_token_count_once(
    tracker: RunningTracker, pool: asyncpg.Pool
) -> None:
    # Given a sent message
    tenant = await seed_tenant(pool)
    campaign_id = await seed_campaign(pool, tenant.id)
    [recipient] = await seed_recipients(pool, tenant.id, campaign_id, 1)
    assert recipient.sid is not None

    # When Twilio retries one delivered callback three times with its idempotency token
    async with httpx.AsyncClient(timeout=10) as client:
        for _ in range(3):
            answer = await tracker.post_status(
                client, tenant, status_params(recipient.sid, "delivered"), idempotency="token-abc"
            )
            assert answer.status_code == 200

    # Then one receipt, one transition
    async def delivered() -> bool:
        return await pool.fetchval("SELECT state FROM recipients WHERE id = $1", recipient.id) == "delivered"

    assert await eventually(delivered)
    await asyncio.sleep(0.3)
    keys = await pool.fetch("SELECT dedupe_key FROM callback_receipts WHERE tenant_id = $1", tenant.id)
    assert [row["dedupe_key"] for row in keys] == ["t:token-abc"]
    assert await _callback_events(pool, recipient.id) == [("sent", "delivered")]


async def test_a_callback_for_an_unknown_sid_is_kept_and_applied_once_the_sender_records_the_sid(
    tracker: RunningTracker, pool: asyncpg.Pool
) -> None:
    # Given a message still being sent: the sender has not recorded its SID yet
    tenant = await seed_tenant(pool)
    campaign_id = await seed_campaign(pool, tenant.id)
    [recipient] = await seed_recipients(pool, tenant.id, campaign_id, 1, state="sending", with_sid=False)
    sid = new_sid()

    # When its delivered callback arrives first
    async with httpx.AsyncClient(timeout=10) as client:
        answer = await tracker.post_status(client, tenant, status_params(sid, "delivered"))
    assert answer.status_code == 200

    # Then it is kept, not dropped, and the recipient is untouched
    async def kept() -> asyncpg.Record | None:
        return await pool.fetchrow(
            "SELECT status, matched_at FROM orphan_callbacks WHERE tenant_id = $1 AND message_sid = $2",
            tenant.id,
            sid,
        )

    orphan = await eventually(kept)
    assert orphan is not None and orphan["status"] == "delivered" and orphan["matched_at"] is None
    assert await pool.fetchval("SELECT state FROM recipients WHERE id = $1", recipient.id) == "sending"

    # When the sender records the SID but has not settled the send, it still waits
    await pool.execute("UPDATE recipients SET twilio_sid = $2 WHERE id = $1", recipient.id, sid)
    await asyncio.sleep(0.6)
    assert await pool.fetchval("SELECT state FROM recipients WHERE id = $1", recipient.id) == "sending"

    # When the sender marks it sent
    await pool.execute("UPDATE recipients SET state = 'sent', sent_at = now() WHERE id = $1", recipient.id)

    # Then the kept callback is applied and marked matched
    async def delivered() -> bool:
        return await pool.fetchval("SELECT state FROM recipients WHERE id = $1", recipient.id) == "delivered"

    assert await eventually(delivered)
    orphan = await kept()
    assert orphan is not None and orphan["matched_at"] is not None
    assert await _callback_events(pool, recipient.id) == [("sent", "delivered")]


async def test_a_failure_with_an_opt_out_code_records_the_error_and_suppresses_the_number(
    tracker: RunningTracker, pool: asyncpg.Pool
) -> None:
    # Given a sent message
    tenant = await seed_tenant(pool)
    campaign_id = await seed_campaign(pool, tenant.id)
    [recipient] = await seed_recipients(pool, tenant.id, campaign_id, 1)
    assert recipient.sid is not None

    # When Twilio reports it failed because the user blocked the business (63014)
    async with httpx.AsyncClient(timeout=10) as client:
        params = status_params(recipient.sid, "failed", to=recipient.phone, error_code=63014)
        assert (await tracker.post_status(client, tenant, params)).status_code == 200

    # Then the recipient failed with the code and message, and the number is suppressed with a record
    async def failed() -> asyncpg.Record | None:
        return await pool.fetchrow(
            "SELECT state, error_code, error_message, failed_at FROM recipients"
            " WHERE id = $1 AND state = 'failed_delivery'",
            recipient.id,
        )

    row = await eventually(failed)
    assert row is not None
    assert row["error_code"] == 63014
    assert row["error_message"] == "channel error 63014"
    assert row["failed_at"] is not None
    suppression = await pool.fetchrow(
        "SELECT source, reason FROM suppressions WHERE tenant_id = $1 AND phone_e164 = $2",
        tenant.id,
        recipient.phone,
    )
    assert suppression is not None and suppression["source"] == "error_code"
    events = await pool.fetch(
        "SELECT action, source FROM suppression_events WHERE tenant_id = $1 AND phone_e164 = $2",
        tenant.id,
        recipient.phone,
    )
    assert [(e["action"], e["source"]) for e in events] == [("added", "error_code")]


async def test_a_failure_after_delivery_is_ignored(tracker: RunningTracker, pool: asyncpg.Pool) -> None:
    tenant = await seed_tenant(pool)
    campaign_id = await seed_campaign(pool, tenant.id)
    [recipient] = await seed_recipients(pool, tenant.id, campaign_id, 1)
    assert recipient.sid is not None
    async with httpx.AsyncClient(timeout=10) as client:
        await tracker.post_status(client, tenant, status_params(recipient.sid, "delivered"))
        await asyncio.sleep(0.3)
        await tracker.post_status(
            client, tenant, status_params(recipient.sid, "undelivered", error_code=30008)
        )

    async def both_received() -> bool:
        count = await pool.fetchval("SELECT count(*) FROM callback_receipts WHERE tenant_id = $1", tenant.id)
        return bool(count == 2)

    assert await eventually(both_received)
    await asyncio.sleep(0.2)
    row = await pool.fetchrow("SELECT state, error_code FROM recipients WHERE id = $1", recipient.id)
    assert (row["state"], row["error_code"]) == ("delivered", None)


async def test_a_malformed_status_message_is_parked_with_its_reason_and_callbacks_keep_flowing(
    tracker: RunningTracker, pool: asyncpg.Pool, isolated_env: IsolatedEnvironment
) -> None:
    # Given garbage published straight onto the status queue
    connection = await aio_pika.connect_robust(isolated_env.amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.default_exchange.publish(
            aio_pika.Message(b'{"callbacks": "not a list"}', delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=topology.STATUS_QUEUE,
        )

        # Then it lands in the parked queue with the reason
        parked = await channel.get_queue(topology.parked_queue_name(topology.STATUS_QUEUE))

        async def parked_message() -> aio_pika.abc.AbstractIncomingMessage | None:
            return await parked.get(no_ack=True, fail=False)

        message = await eventually(parked_message)
        assert message is not None
        assert message.body == b'{"callbacks": "not a list"}'
        assert "invalid" in str(message.headers[topology.PARK_ERROR_HEADER])

    # And a genuine callback after it is still written
    tenant = await seed_tenant(pool)
    campaign_id = await seed_campaign(pool, tenant.id)
    [recipient] = await seed_recipients(pool, tenant.id, campaign_id, 1)
    assert recipient.sid is not None
    async with httpx.AsyncClient(timeout=10) as client:
        await tracker.post_status(client, tenant, status_params(recipient.sid, "read"))

    async def read() -> bool:
        return await pool.fetchval("SELECT state FROM recipients WHERE id = $1", recipient.id) == "read"

    assert await eventually(read)


async def test_a_rate_refusal_in_a_callback_sends_the_recipient_back_to_wait_once_and_a_delivery_still_wins(
    tracker: RunningTracker, pool: asyncpg.Pool, isolated_env: IsolatedEnvironment
) -> None:
    # Given three sent messages, and a spy on the retry tier a pair-rate refusal waits (120 s:
    # the first of the default tiers at least WCE_PAIR_RATE_RETRY_S, 60 s)
    tenant = await seed_tenant(pool)
    campaign_id = await seed_campaign(pool, tenant.id)
    refused, delivered_after_all, failed = await seed_recipients(pool, tenant.id, campaign_id, 3)
    connection = await aio_pika.connect_robust(isolated_env.amqp_url)
    async with connection:
        channel = await connection.channel()
        spy = await channel.declare_queue(exclusive=True, auto_delete=True)
        await spy.bind(topology.retry_exchange_name(120))

        # When the first is refused for the pair rate (reported twice, tokens apart), the second
        # refused and then reported delivered, and the third fails for another reason
        async with httpx.AsyncClient(timeout=10) as client:
            for recipient, status, code in (
                (refused, "failed", 131056),
                (delivered_after_all, "failed", 131056),
                (failed, "failed", 63016),
            ):
                assert recipient.sid is not None
                params = status_params(recipient.sid, status, to=recipient.phone, error_code=code)
                assert (await tracker.post_status(client, tenant, params)).status_code == 200
            await asyncio.sleep(0.3)
            assert refused.sid is not None and delivered_after_all.sid is not None
            again = status_params(refused.sid, "failed", to=refused.phone, error_code=131056)
            assert (await tracker.post_status(client, tenant, again, idempotency="other")).status_code == 200
            assert (
                await tracker.post_status(client, tenant, status_params(delivered_after_all.sid, "delivered"))
            ).status_code == 200

        async def all_received() -> bool:
            count = await pool.fetchval(
                "SELECT count(*) FROM callback_receipts WHERE tenant_id = $1", tenant.id
            )
            return bool(count == 5)

        assert await eventually(all_received)
        await asyncio.sleep(0.3)
        retried: list[int] = []
        while (published := await spy.get(timeout=5, fail=False)) is not None:
            await published.ack()
            retried += orjson.loads(published.body)["recipient_ids"]

    # Then the refused one waits, its attempt given back, no longer sent, the refusal its error,
    # once (the replay changed nothing), and its retry was published into the tier
    rows = {
        row["id"]: row
        for row in await pool.fetch(
            "SELECT id, state, attempts, deferrals, error_code, sent_at, delivered_at,"
            " next_attempt_at - now() AS due_in FROM recipients WHERE campaign_id = $1",
            campaign_id,
        )
    }
    waiting = rows[refused.id]
    assert (waiting["state"], waiting["attempts"], waiting["deferrals"], waiting["error_code"]) == (
        "retry_wait",
        0,
        1,
        131056,
    )
    assert waiting["sent_at"] is None and 100 < waiting["due_in"].total_seconds() <= 120
    assert await _callback_events(pool, refused.id) == [("sent", "retry_wait")]
    assert refused.id in retried
    # And the one delivered after all is delivered, its attempt counted, its error cleared
    done = rows[delivered_after_all.id]
    assert (done["state"], done["attempts"], done["deferrals"], done["error_code"]) == (
        "delivered",
        1,
        0,
        None,
    )
    assert done["sent_at"] is not None and done["delivered_at"] is not None
    assert await _callback_events(pool, delivered_after_all.id) == [
        ("sent", "retry_wait"),
        ("retry_wait", "delivered"),
    ]
    # And another failure code still fails its recipient
    assert (rows[failed.id]["state"], rows[failed.id]["error_code"]) == ("failed_delivery", 63016)

"""The frequency cap at the claim, on the real database: a capped tenant's number is claimed at most
N times in D days across campaigns, even when claims of two campaigns race on two connections;
other tenants, test and manual sends, and messages that were never sent are not held back."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from services.sender import queries
from tests.integration.engine.test_engine_claims import claim, phones, row_states, settle

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def capped_tenant(pool: asyncpg.Pool, cap: tuple[int, int] | None) -> uuid.UUID:
    tenant_id = uuid.uuid4()
    await pool.execute(
        "INSERT INTO tenants (id, name, twilio_account_sid, twilio_auth_token_enc, whatsapp_from,"
        " frequency_cap_messages, frequency_cap_days) VALUES ($1, 't', $2, 'x', '+14155238886', $3, $4)",
        tenant_id,
        "AC" + uuid.uuid4().hex,
        *(cap or (None, None)),
    )
    await pool.execute(
        "INSERT INTO credit_accounts (tenant_id, purchased_balance) VALUES ($1, 100000)", tenant_id
    )
    return tenant_id


async def campaign(
    pool: asyncpg.Pool, tenant_id: uuid.UUID, numbers: list[str], *, kind: str = "campaign"
) -> tuple[uuid.UUID, list[int]]:
    campaign_id = uuid.uuid4()
    await pool.execute(
        "INSERT INTO campaigns (id, tenant_id, name, kind, audience, template, state)"
        " VALUES ($1, $2, 'c', $3, '{}', '{}', 'running')",
        campaign_id,
        tenant_id,
        kind,
    )
    ids = await pool.fetch(
        "INSERT INTO recipients (tenant_id, campaign_id, phone_e164)"
        " SELECT $1, $2, p FROM unnest($3::text[]) p RETURNING id",
        tenant_id,
        campaign_id,
        numbers,
    )
    return campaign_id, sorted(row["id"] for row in ids)


def claimed_ids(rows: list[asyncpg.Record]) -> list[int]:
    return [row["id"] for row in rows if row["id"] is not None]


async def test_two_campaigns_claimed_at_once_give_each_number_exactly_one_message(pool: asyncpg.Pool) -> None:
    # Given a tenant capped at 1 message per 7 days and another without a cap, each with two
    # running campaigns to the same 60 numbers
    numbers = phones(60)
    capped = await capped_tenant(pool, (1, 7))
    free = await capped_tenant(pool, None)
    campaigns = {
        tenant: [await campaign(pool, tenant, numbers), await campaign(pool, tenant, numbers)]
        for tenant in (capped, free)
    }

    # When both campaigns of each tenant are claimed in chunks of 10, the two campaigns' chunks
    # racing each other on separate connections
    async def claim_all(tenant: uuid.UUID, campaign_id: uuid.UUID, ids: list[int]) -> list[int]:
        taken: list[int] = []
        for start in range(0, len(ids), 10):
            taken += claimed_ids(await claim(pool, tenant, campaign_id, ids[start : start + 10]))
        return taken

    results = {
        tenant: await asyncio.gather(*(claim_all(tenant, cid, ids) for cid, ids in pairs))
        for tenant, pairs in campaigns.items()
    }

    # Then each capped number was claimed exactly once, by one campaign or the other
    phone_of = {
        row["id"]: row["phone_e164"]
        for row in await pool.fetch(
            "SELECT id, phone_e164 FROM recipients WHERE tenant_id = ANY($1)", [capped, free]
        )
    }
    capped_claims = [phone_of[i] for taken in results[capped] for i in taken]
    assert sorted(capped_claims) == sorted(numbers)
    # And the other rows are skipped with the reason, logged as such
    skipped = await pool.fetch(
        "SELECT r.phone_e164, r.skip_reason, e.detail FROM recipients r"
        " JOIN message_events e ON e.recipient_id = r.id AND e.to_state = 'skipped'"
        " WHERE r.tenant_id = $1 AND r.state = 'skipped'",
        capped,
    )
    assert sorted(row["phone_e164"] for row in skipped) == sorted(numbers)
    assert {(row["skip_reason"], row["detail"]) for row in skipped} == {
        ("frequency_capped", "frequency_capped")
    }
    # And the tenant without a cap sent every number twice
    assert [len(taken) for taken in results[free]] == [60, 60]


async def test_a_cap_of_two_takes_the_second_campaign_and_stops_the_third(pool: asyncpg.Pool) -> None:
    numbers = phones(5)
    tenant = await capped_tenant(pool, (2, 30))
    taken = []
    for _ in range(3):
        campaign_id, ids = await campaign(pool, tenant, numbers)
        rows = await claim(pool, tenant, campaign_id, ids)
        taken.append((len(claimed_ids(rows)), rows[0]["capped_count"], rows[0]["short_of_credits"]))
    assert taken == [(5, 0, False), (5, 0, False), (0, 5, False)]


async def test_test_and_manual_sends_are_neither_capped_nor_counted(pool: asyncpg.Pool) -> None:
    # Given a tenant capped at 1 per 7 days whose numbers already got a campaign message
    numbers = phones(3)
    tenant = await capped_tenant(pool, (1, 7))
    first, first_ids = await campaign(pool, tenant, numbers)
    assert len(claimed_ids(await claim(pool, tenant, first, first_ids))) == 3

    # When a test send and a manual send go to the same numbers
    test_send, test_ids = await campaign(pool, tenant, numbers, kind="test")
    manual, manual_ids = await campaign(pool, tenant, numbers[:1], kind="manual")

    # Then both are claimed, and they took no place under the cap
    assert claimed_ids(await claim(pool, tenant, test_send, test_ids)) == test_ids
    assert claimed_ids(await claim(pool, tenant, manual, manual_ids)) == manual_ids
    counted = await pool.fetch(
        "SELECT cardinality(recipient_ids) AS n FROM contact_frequency WHERE tenant_id = $1", tenant
    )
    assert [row["n"] for row in counted] == [1, 1, 1]


async def test_a_message_never_sent_or_older_than_the_window_frees_its_place(pool: asyncpg.Pool) -> None:
    # Given a capped tenant's first campaign: one number's message failed before Twilio accepted
    # it, one was cancelled in its retry wait, one was sent 8 days ago, one was sent yesterday
    numbers = phones(4)
    tenant = await capped_tenant(pool, (1, 7))
    first, ids = await campaign(pool, tenant, numbers)
    rows = await claim(pool, tenant, first, ids)
    by_id = {row["id"]: row["claimed_at"] for row in rows}
    await settle(pool, tenant, [(ids[0], by_id[ids[0]], "failed"), (ids[1], by_id[ids[1]], "retry_wait")])
    await pool.execute("UPDATE recipients SET state = 'cancelled' WHERE id = $1", ids[1])
    await settle(pool, tenant, [(ids[2], by_id[ids[2]], "sent"), (ids[3], by_id[ids[3]], "sent")])
    await pool.execute(
        "UPDATE contact_frequency SET claimed_at = ARRAY[now() - interval '8 days']"
        " WHERE tenant_id = $1 AND phone_e164 = $2",
        tenant,
        numbers[2],
    )

    # When a second campaign goes to the same numbers
    second, second_ids = await campaign(pool, tenant, numbers)
    taken = claimed_ids(await claim(pool, tenant, second, second_ids))

    # Then the first three numbers get it, the one messaged yesterday is skipped
    assert taken == second_ids[:3]
    assert await row_states(pool, second_ids) == ["sending", "sending", "sending", "skipped"]


async def test_a_row_claimed_again_is_not_capped_by_its_own_first_claim(pool: asyncpg.Pool) -> None:
    # Given a capped tenant's message that was handed back for a retry after its claim
    tenant = await capped_tenant(pool, (1, 7))
    campaign_id, ids = await campaign(pool, tenant, phones(1))
    rows = await claim(pool, tenant, campaign_id, ids)
    await settle(pool, tenant, [(ids[0], rows[0]["claimed_at"], "retry_wait")])

    # When it is claimed again
    again = await claim(pool, tenant, campaign_id, ids)

    # Then it is claimed, and still counts once
    assert claimed_ids(again) == ids
    assert (
        await pool.fetchval(
            "SELECT cardinality(recipient_ids) FROM contact_frequency WHERE tenant_id = $1", tenant
        )
        == 1
    )


async def test_capped_rows_spend_no_credits(pool: asyncpg.Pool) -> None:
    numbers = phones(4)
    tenant = await capped_tenant(pool, (1, 7))
    first, first_ids = await campaign(pool, tenant, numbers[:2])
    await claim(pool, tenant, first, first_ids)
    second, second_ids = await campaign(pool, tenant, numbers)
    rows = await claim(pool, tenant, second, second_ids)
    assert claimed_ids(rows) == second_ids[2:]
    assert (rows[0]["capped_count"], rows[0]["short_of_credits"]) == (2, False)
    reserved = await pool.fetchval("SELECT reserved FROM credit_accounts WHERE tenant_id = $1", tenant)
    assert reserved == 4
    assert queries.CLAIM.count("frequency_capped") >= 1

"""The sender's claim and settlement statements on the real database: what may be claimed, what
credits allow, and that a settlement only ever applies to the claim it belongs to."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg
import pytest

from services.segmenter import queries as segmenter_queries
from services.sender import queries

pytestmark = pytest.mark.asyncio(loop_scope="session")

LEASE_S = 60.0
WINDOW_S = 86_400.0


async def tenant_and_campaign(
    pool: asyncpg.Pool,
    *,
    phones: list[str],
    account: tuple[int, int] | None = (0, 1000),
    state: str = "running",
) -> tuple[uuid.UUID, uuid.UUID, list[int]]:
    """A tenant (with a credit account of (plan, purchased) credits unless None), a campaign in
    ``state`` and one pending recipient per phone; returns their ids."""
    tenant_id, campaign_id = uuid.uuid4(), uuid.uuid4()
    await pool.execute(
        "INSERT INTO tenants (id, name, twilio_account_sid, twilio_auth_token_enc, whatsapp_from)"
        " VALUES ($1, 't', $2, 'x', '+14155238886')",
        tenant_id,
        "AC" + uuid.uuid4().hex,
    )
    if account is not None:
        await pool.execute(
            "INSERT INTO credit_accounts (tenant_id, plan_monthly, plan_balance, purchased_balance)"
            " VALUES ($1, $2, $2, $3)",
            tenant_id,
            *account,
        )
    await pool.execute(
        "INSERT INTO campaigns (id, tenant_id, name, audience, template, state)"
        " VALUES ($1, $2, 'c', '{}', '{}', $3)",
        campaign_id,
        tenant_id,
        state,
    )
    ids = [
        await pool.fetchval(
            "INSERT INTO recipients (tenant_id, campaign_id, phone_e164) VALUES ($1, $2, $3) RETURNING id",
            tenant_id,
            campaign_id,
            phone,
        )
        for phone in phones
    ]
    return tenant_id, campaign_id, ids


def phones(count: int) -> list[str]:
    prefix = uuid.uuid4().int % 900 + 100
    return [f"+1415{prefix}{i:04d}" for i in range(count)]


async def claim(
    pool: asyncpg.Pool, tenant_id: uuid.UUID, campaign_id: uuid.UUID, ids: list[int]
) -> list[asyncpg.Record]:
    return await pool.fetch(queries.CLAIM, tenant_id, campaign_id, ids, LEASE_S, True, WINDOW_S, False)


async def settle(
    pool: asyncpg.Pool, tenant_id: uuid.UUID, rows: list[tuple[int, datetime, str]], *, sid_prefix: str = "SM"
) -> list[asyncpg.Record]:
    return await pool.fetch(
        queries.SETTLE,
        tenant_id,
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
        [f"{sid_prefix}{uuid.uuid4().hex}" if r[2] == "sent" else None for r in rows],
        [None] * len(rows),
        [None] * len(rows),
        [False] * len(rows),
        [None] * len(rows),
        "sender",
        [False] * len(rows),
        [None] * len(rows),
    )


async def row_states(pool: asyncpg.Pool, ids: list[int]) -> list[str]:
    return [
        r["state"]
        for r in await pool.fetch("SELECT state FROM recipients WHERE id = ANY($1) ORDER BY id", ids)
    ]


async def test_a_claim_takes_the_claimable_rows_of_a_running_campaign_once(pool: asyncpg.Pool) -> None:
    # Given three pending recipients, one of them already sent
    tenant_id, campaign_id, ids = await tenant_and_campaign(pool, phones=phones(3))
    await pool.execute("UPDATE recipients SET state = 'sent' WHERE id = $1", ids[0])
    # When the chunk is claimed twice (a redelivery)
    first = await claim(pool, tenant_id, campaign_id, ids)
    second = await claim(pool, tenant_id, campaign_id, ids)
    # Then the first claim took the two pending ones under a lease, the second nothing
    assert [r["id"] for r in first] == ids[1:]
    assert all(r["attempts"] == 1 for r in first)
    assert [r["id"] for r in second] == [None]
    assert await row_states(pool, ids) == ["sent", "sending", "sending"]
    events = await pool.fetchval(
        "SELECT count(*) FROM message_events WHERE campaign_id = $1 AND to_state = 'sending'", campaign_id
    )
    assert events == 2


async def test_nothing_is_claimed_for_a_paused_campaign(pool: asyncpg.Pool) -> None:
    tenant_id, campaign_id, ids = await tenant_and_campaign(pool, phones=phones(2), state="paused")
    assert [r["id"] for r in await claim(pool, tenant_id, campaign_id, ids)] == [None]
    assert await row_states(pool, ids) == ["pending", "pending"]


async def test_a_suppressed_number_is_marked_suppressed_at_claim(pool: asyncpg.Pool) -> None:
    numbers = phones(2)
    tenant_id, campaign_id, ids = await tenant_and_campaign(pool, phones=numbers)
    await pool.execute(
        "INSERT INTO suppressions (tenant_id, phone_e164, source) VALUES ($1, $2, 'manual')",
        tenant_id,
        numbers[1],
    )
    rows = await claim(pool, tenant_id, campaign_id, ids)
    assert [r["id"] for r in rows] == [ids[0]] and rows[0]["suppressed_count"] == 1
    assert await row_states(pool, ids) == ["sending", "suppressed"]


async def test_credits_bound_the_claim_and_are_reserved(pool: asyncpg.Pool) -> None:
    # Given 3 credits and 5 recipients
    tenant_id, campaign_id, ids = await tenant_and_campaign(pool, phones=phones(5), account=(1, 2))
    # When the chunk is claimed / Then only 3 are, the shortfall is reported, 3 credits reserved
    rows = await claim(pool, tenant_id, campaign_id, ids)
    assert [r["id"] for r in rows] == ids[:3] and rows[0]["short_of_credits"]
    assert await pool.fetchval("SELECT reserved FROM credit_accounts WHERE tenant_id = $1", tenant_id) == 3
    # And with no credits left nothing more is claimed
    again = await claim(pool, tenant_id, campaign_id, ids)
    assert [r["id"] for r in again] == [None] and again[0]["short_of_credits"]


async def test_a_tenant_without_a_credit_account_has_no_credits(pool: asyncpg.Pool) -> None:
    tenant_id, campaign_id, ids = await tenant_and_campaign(pool, phones=phones(2), account=None)
    rows = await claim(pool, tenant_id, campaign_id, ids)
    assert [r["id"] for r in rows] == [None] and rows[0]["short_of_credits"]


async def test_settling_debits_plan_credits_first_and_releases_every_reservation(pool: asyncpg.Pool) -> None:
    # Given 2 plan and 5 purchased credits and 4 claimed recipients
    tenant_id, campaign_id, ids = await tenant_and_campaign(pool, phones=phones(4), account=(2, 5))
    claimed = await claim(pool, tenant_id, campaign_id, ids)
    # When 3 were accepted and 1 failed
    outcomes = [(r["id"], r["claimed_at"], "sent" if i < 3 else "failed") for i, r in enumerate(claimed)]
    settled = await settle(pool, tenant_id, outcomes)
    # Then 3 credits were debited, 2 from the plan, and nothing stays reserved
    assert settled[0]["debited"] == 3
    account = await pool.fetchrow("SELECT * FROM credit_accounts WHERE tenant_id = $1", tenant_id)
    assert (account["plan_balance"], account["purchased_balance"], account["reserved"]) == (0, 4, 0)
    ledger = await pool.fetch(
        "SELECT bucket, recipient_id FROM credit_ledger"
        " WHERE tenant_id = $1 AND kind = 'debit' ORDER BY recipient_id",
        tenant_id,
    )
    assert [(r["bucket"], r["recipient_id"]) for r in ledger] == [
        ("plan", ids[0]),
        ("plan", ids[1]),
        ("purchased", ids[2]),
    ]


async def test_a_settlement_for_an_older_claim_changes_nothing(pool: asyncpg.Pool) -> None:
    tenant_id, campaign_id, ids = await tenant_and_campaign(pool, phones=phones(1))
    await claim(pool, tenant_id, campaign_id, ids)
    # When an answer arrives for a claim made at another time / Then it is ignored
    stale = [(ids[0], datetime(2000, 1, 1, tzinfo=UTC), "sent")]
    assert await settle(pool, tenant_id, stale) == []
    assert await row_states(pool, ids) == ["sending"]


async def test_a_row_handed_back_after_its_campaign_was_cancelled_ends_cancelled(pool: asyncpg.Pool) -> None:
    tenant_id, campaign_id, ids = await tenant_and_campaign(pool, phones=phones(2))
    claimed = await claim(pool, tenant_id, campaign_id, ids)
    await pool.execute("UPDATE campaigns SET state = 'cancelled' WHERE id = $1", campaign_id)
    settled = await settle(pool, tenant_id, [(r["id"], r["claimed_at"], "queued") for r in claimed])
    assert {r["to_state"] for r in settled} == {"cancelled"}
    assert await pool.fetchval("SELECT reserved FROM credit_accounts WHERE tenant_id = $1", tenant_id) == 0


async def test_the_monthly_plan_rolls_once(pool: asyncpg.Pool) -> None:
    # Given an account whose plan period is last year's, with 7 plan credits left
    tenant_id, _, _ = await tenant_and_campaign(pool, phones=[], account=(50, 0))
    await pool.execute(
        "UPDATE credit_accounts SET plan_balance = 7, plan_period_start = '2020-01-01' WHERE tenant_id = $1",
        tenant_id,
    )
    month = datetime.now(UTC).date().replace(day=1)
    # When the period is rolled twice
    await pool.execute(queries.ROLL_CREDIT_PERIOD, tenant_id, month)
    await pool.execute(queries.ROLL_CREDIT_PERIOD, tenant_id, month)
    # Then the 7 expired and 50 were granted, once
    assert (
        await pool.fetchval("SELECT plan_balance FROM credit_accounts WHERE tenant_id = $1", tenant_id) == 50
    )
    ledger = await pool.fetch(
        "SELECT kind, amount FROM credit_ledger WHERE tenant_id = $1 ORDER BY id", tenant_id
    )
    assert [(r["kind"], r["amount"]) for r in ledger] == [("plan_expiry", -7), ("plan_grant", 50)]


async def test_cancelling_records_the_state_each_waiting_row_was_really_in(pool: asyncpg.Pool) -> None:
    # Given a campaign with rows pending, queued, waiting for a retry, and one being sent
    tenant_id, campaign_id, ids = await tenant_and_campaign(pool, phones=phones(4))
    for recipient_id, state in zip(ids, ("pending", "queued", "retry_wait", "sending"), strict=True):
        await pool.execute("UPDATE recipients SET state = $2 WHERE id = $1", recipient_id, state)

    # When the campaign is cancelled
    await pool.execute(segmenter_queries.CANCEL_LEFT_RECIPIENTS, tenant_id, campaign_id)

    # Then the waiting rows are cancelled and their history says where each came from
    events = await pool.fetch(
        "SELECT recipient_id, from_state, to_state FROM message_events WHERE campaign_id = $1 ORDER BY id",
        campaign_id,
    )
    assert [(e["recipient_id"], e["from_state"], e["to_state"]) for e in events] == [
        (ids[0], "pending", "cancelled"),
        (ids[1], "queued", "cancelled"),
        (ids[2], "retry_wait", "cancelled"),
    ]
    assert await row_states(pool, ids) == ["cancelled", "cancelled", "cancelled", "sending"]


async def test_an_uncounted_retry_gives_the_attempt_back_and_counts_a_deferral(pool: asyncpg.Pool) -> None:
    # Given a recipient claimed once
    tenant_id, campaign_id, ids = await tenant_and_campaign(pool, phones=phones(1))
    claimed = await claim(pool, tenant_id, campaign_id, ids)
    assert [(r["attempts"], r["deferrals"]) for r in claimed] == [(1, 0)]

    # When its create is answered 429 (retry_wait, not counted)
    await pool.fetch(
        queries.SETTLE,
        tenant_id,
        ids,
        [claimed[0]["claimed_at"]],
        ["retry_wait"],
        [None],
        [20429],
        ["Too Many Requests"],
        [True],
        [datetime.now(UTC)],
        "sender",
        [False],
        [None],
    )

    # Then the attempt is given back, the deferral counted, and the next claim shows both
    again = await claim(pool, tenant_id, campaign_id, ids)
    assert [(r["attempts"], r["deferrals"]) for r in again] == [(1, 1)]


async def make_unknown(pool: asyncpg.Pool, rows: list[asyncpg.Record], tenant_id: uuid.UUID) -> None:
    await settle(pool, tenant_id, [(r["id"], r["claimed_at"], "unknown") for r in rows])


async def due_for_lookup(pool: asyncpg.Pool, ids: list[int], bound_s: float) -> dict[int, asyncpg.Record]:
    rows = await pool.fetch(queries.UNKNOWN_DUE, 0.0, 10_000, bound_s)
    return {r["id"]: r for r in rows if r["id"] in ids}


async def test_an_ambiguous_answer_records_when_its_create_was_last_possibly_written(
    pool: asyncpg.Pool,
) -> None:
    # Given a claimed row
    tenant_id, campaign_id, ids = await tenant_and_campaign(pool, phones=phones(1))
    claimed = await claim(pool, tenant_id, campaign_id, ids)
    # When its answer is ambiguous
    before = await pool.fetchval("SELECT now()")
    await make_unknown(pool, claimed, tenant_id)
    # Then the row records the moment the answer was recorded (the call had ended by then)
    row = await pool.fetchrow(
        "SELECT state, latest_write_at, claimed_at FROM recipients WHERE id = $1", ids[0]
    )
    assert row["state"] == "unknown"
    assert row["claimed_at"] <= before <= row["latest_write_at"]


async def test_a_lease_that_runs_out_records_its_end_as_the_latest_write(pool: asyncpg.Pool) -> None:
    # Given a claimed row whose lease ended a second ago (its sender died)
    tenant_id, campaign_id, ids = await tenant_and_campaign(pool, phones=phones(1))
    await claim(pool, tenant_id, campaign_id, ids)
    lease_end = await pool.fetchval(
        "UPDATE recipients SET lease_until = now() - interval '1 second' WHERE id = $1 RETURNING lease_until",
        ids[0],
    )
    # When leases are expired
    await pool.execute(queries.EXPIRE_LEASES, 1000)
    # Then the row is unknown, and its create counts as written at the lease's end at the latest
    row = await pool.fetchrow("SELECT state, latest_write_at FROM recipients WHERE id = $1", ids[0])
    assert (row["state"], row["latest_write_at"]) == ("unknown", lease_end)


async def test_after_an_empty_look_a_row_is_looked_up_again_only_past_the_late_create_bound(
    pool: asyncpg.Pool,
) -> None:
    # Given two unknown rows whose creates were last possibly written 5 s ago, one not looked up
    # yet and one whose first look found nothing
    tenant_id, campaign_id, ids = await tenant_and_campaign(pool, phones=phones(2))
    claimed = await claim(pool, tenant_id, campaign_id, ids)
    await make_unknown(pool, claimed, tenant_id)
    await pool.execute(
        "UPDATE recipients SET latest_write_at = now() - interval '5 seconds',"
        " claimed_at = now() - interval '6 seconds' WHERE id = ANY($1)",
        ids,
    )
    await pool.execute("UPDATE recipients SET lookups = 1 WHERE id = $1", ids[1])

    # When the reconciler asks for due rows with a bound of 10 s, then of 3 s
    within = await due_for_lookup(pool, ids, 10.0)
    past = await due_for_lookup(pool, ids, 3.0)

    # Then the first look is due at once, the second only once the write is older than the bound
    assert set(within) == {ids[0]}
    assert set(past) == set(ids)
    # And each due row says when its create was last possibly written and when the look began
    row = past[ids[1]]
    assert (row["looked_at"] - row["latest_write_at"]).total_seconds() >= 5


async def test_a_row_without_a_recorded_write_counts_from_its_last_change_pinned_at_the_first_look(
    pool: asyncpg.Pool,
) -> None:
    # Given an unknown row whose latest write was not recorded for its claim (made unknown before
    # the column existed), last changed 20 s ago
    tenant_id, campaign_id, ids = await tenant_and_campaign(pool, phones=phones(1))
    claimed = await claim(pool, tenant_id, campaign_id, ids)
    await make_unknown(pool, claimed, tenant_id)
    changed = await pool.fetchval(
        "UPDATE recipients SET latest_write_at = NULL, claimed_at = now() - interval '30 seconds',"
        " updated_at = now() - interval '20 seconds' WHERE id = $1 RETURNING updated_at",
        ids[0],
    )
    [due] = (await due_for_lookup(pool, ids, 10.0)).values()
    assert due["latest_write_at"] == changed

    # When a look finds nothing
    await pool.execute(queries.LOOK_AGAIN, tenant_id, ids, [due["claimed_at"]], [0])

    # Then the row's last change is kept as its latest write, not the change the look made
    row = await pool.fetchrow(
        "SELECT lookups, latest_write_at, updated_at FROM recipients WHERE id = $1", ids[0]
    )
    assert (row["lookups"], row["latest_write_at"]) == (1, changed)
    assert row["updated_at"] > changed

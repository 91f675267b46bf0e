"""Credits: a tenant's balance and ledger, and the operator's top-up and plan settings.

Reading or changing an account first rolls its monthly plan period if a new month began (the
same lazy rollover the sender applies when it reserves credits). A top-up resumes the tenant's
campaigns that ran out of credits, through ``campaign.resume`` commands, so they continue the
same way as a resume from the API.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from uuid import UUID

import asyncpg

from shared import credits, topology
from shared.broker import Publisher
from shared.db import OneTenant, tenant_transaction
from shared.events import CampaignCommand
from shared.logging import get_logger

log = get_logger(__name__)

INSUFFICIENT_CREDITS = "insufficient_credits"

LOCK_ACCOUNT = """
SELECT tenant_id, enabled, plan_monthly, plan_balance, plan_period_start, purchased_balance, reserved,
       updated_at
FROM credit_accounts WHERE tenant_id = $1
FOR UPDATE
"""

CREATE_ACCOUNT = """
INSERT INTO credit_accounts (tenant_id, plan_monthly, plan_balance)
SELECT id, 0, 0 FROM tenants WHERE id = $1
ON CONFLICT (tenant_id) DO NOTHING
"""

ROLL_PERIOD = """
UPDATE credit_accounts SET plan_balance = $2, plan_period_start = $3, updated_at = now() WHERE tenant_id = $1
"""

UPDATE_ACCOUNT = """
UPDATE credit_accounts
SET purchased_balance = purchased_balance + $2,
    plan_monthly = coalesce($3, plan_monthly),
    enabled = coalesce($4, enabled),
    updated_at = now()
WHERE tenant_id = $1
"""

INSERT_LEDGER = """
INSERT INTO credit_ledger (tenant_id, kind, bucket, amount, note) VALUES ($1, $2, $3, $4, $5)
"""

LEDGER_PAGE = """
SELECT id, kind, bucket, amount, campaign_id, recipient_id, note, at FROM credit_ledger
WHERE tenant_id = $1 AND ($2::bigint IS NULL OR id < $2)
ORDER BY id DESC
LIMIT $3
"""

OUT_OF_CREDITS = """
SELECT id FROM campaigns WHERE tenant_id = $1 AND state = 'paused' AND pause_reason = $2
"""


class AccountNotFound(LookupError):
    pass


@dataclass(frozen=True)
class Balance:
    enabled: bool
    plan_monthly: int
    plan_balance: int
    plan_period_start: date
    purchased_balance: int
    reserved: int
    updated_at: datetime

    @property
    def available(self) -> int:
        return credits.available(
            plan_balance=self.plan_balance, purchased_balance=self.purchased_balance, reserved=self.reserved
        )


@dataclass(frozen=True)
class LedgerEntry:
    id: int
    kind: str
    bucket: str
    amount: int
    campaign_id: UUID | None
    recipient_id: int | None
    note: str | None
    at: datetime


async def _locked_balance(conn: asyncpg.Connection, tenant_id: UUID, today: date) -> Balance:
    row = await conn.fetchrow(LOCK_ACCOUNT, tenant_id)
    if row is None:
        raise AccountNotFound(tenant_id)
    roll = credits.rollover(
        current_period=row["plan_period_start"],
        plan_balance=row["plan_balance"],
        plan_monthly=row["plan_monthly"],
        today=today,
    )
    if roll is not None:
        await conn.execute(ROLL_PERIOD, tenant_id, roll.grant, roll.period_start)
        for kind, amount in (("plan_expiry", -roll.expire), ("plan_grant", roll.grant)):
            if amount:
                await conn.execute(INSERT_LEDGER, tenant_id, kind, "plan", amount, "monthly plan")
        row = await conn.fetchrow(LOCK_ACCOUNT, tenant_id)
    return Balance(**{key: row[key] for key in Balance.__dataclass_fields__})


async def balance(pool: asyncpg.Pool, tenant_id: UUID, *, today: date | None = None) -> Balance:
    async with tenant_transaction(pool, tenant_id) as conn:
        return await _locked_balance(conn, tenant_id, today or date.today())


async def ledger(
    pool: asyncpg.Pool, tenant_id: UUID, *, before_id: int | None, limit: int
) -> list[LedgerEntry]:
    return [
        LedgerEntry(**dict(row))
        for row in await OneTenant(pool).fetch(tenant_id, LEDGER_PAGE, tenant_id, before_id, limit)
    ]


async def change_account(
    pool: asyncpg.Pool,
    publisher: Publisher,
    tenant_id: UUID,
    *,
    top_up: int,
    plan_monthly: int | None,
    enabled: bool | None,
    note: str | None,
    today: date | None = None,
) -> Balance:
    """Top up purchased credits and/or change the plan; then resume campaigns that ran out."""
    async with tenant_transaction(pool, tenant_id) as conn:
        await conn.execute(CREATE_ACCOUNT, tenant_id)
        await _locked_balance(conn, tenant_id, today or date.today())
        await conn.execute(UPDATE_ACCOUNT, tenant_id, top_up, plan_monthly, enabled)
        if top_up:
            await conn.execute(INSERT_LEDGER, tenant_id, "topup", "purchased", top_up, note)
        result = await _locked_balance(conn, tenant_id, today or date.today())
        waiting = [row["id"] for row in await conn.fetch(OUT_OF_CREDITS, tenant_id, INSUFFICIENT_CREDITS)]
    if result.available > 0 or not result.enabled:
        for campaign_id in waiting:
            command = CampaignCommand(
                tenant_id=tenant_id, campaign_id=campaign_id, reason="credits topped up"
            )
            await publisher.publish(topology.COMMANDS_EXCHANGE, "campaign.resume", command)
            log.info("resuming campaign after top-up", tenant_id=str(tenant_id), campaign_id=str(campaign_id))
    return result

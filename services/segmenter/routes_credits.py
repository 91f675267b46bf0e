"""Credits: the tenant's balance and ledger; the operator's top-up and plan settings."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.segmenter import credits
from services.segmenter.deps import PublisherDep, SettingsDep
from shared import audit
from shared.http import Operator, Pool, Tenant, not_found
from shared.validation import INT8_MAX, Text

router = APIRouter(prefix="/v1", tags=["credits"])


class BalanceOut(BaseModel):
    credits_enabled: bool = Field(
        description="False when this installation or this tenant does not use credits."
    )
    plan_monthly: int
    plan_balance: int
    plan_period_start: date
    purchased_balance: int
    reserved: int = Field(description="Held by messages being sent right now.")
    available: int


class LedgerOut(BaseModel):
    id: int
    kind: str
    bucket: str
    amount: int
    campaign_id: UUID | None
    recipient_id: int | None
    note: str | None
    at: datetime


class CreditsOut(BaseModel):
    balance: BalanceOut
    ledger: list[LedgerOut]
    next_before_id: int | None = Field(
        description="Pass as `before_id` for older entries; null on the last page."
    )


class CreditsChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    top_up: int = Field(
        default=0, ge=0, le=100_000_000, description="Purchased credits to add (never expire)."
    )
    plan_monthly: int | None = Field(
        default=None, ge=0, le=100_000_000, description="From the next month on."
    )
    enabled: bool | None = Field(default=None, description="Whether this tenant's sends use credits at all.")
    note: Annotated[str, Text(500)] | None = None

    @model_validator(mode="after")
    def _something(self) -> CreditsChange:
        if not self.top_up and self.plan_monthly is None and self.enabled is None:
            raise ValueError("give top_up, plan_monthly or enabled")
        return self


def balance_out(balance: credits.Balance, installation_enabled: bool) -> BalanceOut:
    return BalanceOut(
        credits_enabled=installation_enabled and balance.enabled,
        plan_monthly=balance.plan_monthly,
        plan_balance=balance.plan_balance,
        plan_period_start=balance.plan_period_start,
        purchased_balance=balance.purchased_balance,
        reserved=balance.reserved,
        available=balance.available,
    )


@router.get("/credits", response_model=CreditsOut)
async def show_credits(
    tenant: Tenant,
    pool: Pool,
    settings: SettingsDep,
    before_id: Annotated[int | None, Query(ge=1, le=INT8_MAX)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> CreditsOut:
    """Balance (plan credits are spent before purchased ones) and the ledger, newest first."""
    try:
        balance = await credits.balance(pool, tenant.tenant_id)
    except credits.AccountNotFound:
        raise not_found("no credit account") from None
    entries = await credits.ledger(pool, tenant.tenant_id, before_id=before_id, limit=limit)
    return CreditsOut(
        balance=balance_out(balance, settings.credits_enabled),
        ledger=[LedgerOut(**vars(entry)) for entry in entries],
        next_before_id=entries[-1].id if len(entries) == limit else None,
    )


@router.post("/operator/tenants/{tenant_id}/credits", response_model=BalanceOut)
async def change_credits(
    tenant_id: UUID,
    body: CreditsChange,
    operator: Operator,
    pool: Pool,
    publisher: PublisherDep,
    settings: SettingsDep,
) -> BalanceOut:
    """Top up a tenant, or change its monthly plan. Campaigns paused for lack of credits resume."""
    try:
        balance = await credits.change_account(
            pool,
            publisher,
            tenant_id,
            top_up=body.top_up,
            plan_monthly=body.plan_monthly,
            enabled=body.enabled,
            note=body.note,
        )
    except credits.AccountNotFound:
        raise not_found("tenant not found") from None
    await audit.record(
        pool,
        actor=operator,
        action="credits.changed",
        tenant_id=tenant_id,
        detail=body.model_dump(exclude_none=True),
    )
    return balance_out(balance, settings.credits_enabled)

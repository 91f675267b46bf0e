"""Tenants: creation with credentials encrypted at rest and an API key shown once; settings."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any
from uuid import UUID

import asyncpg

from services.segmenter import queries
from services.segmenter.schemas import (
    FrequencyCap,
    OperatorTenantUpdate,
    TenantCreate,
    TenantOut,
    TenantPage,
    TenantSettingsUpdate,
    TenantSummary,
)
from shared import credits, topology
from shared.apikeys import display_prefix, hash_api_key, new_api_key
from shared.broker import Publisher
from shared.crypto import SecretBox
from shared.db import AllTenants, tenant_transaction
from shared.events import TenantChanged
from shared.webhooks import inbound_url, status_callback_url


class TenantNotFound(LookupError):
    pass


def tenant_out(row: asyncpg.Record, public_base_url: str) -> TenantOut:
    data: dict[str, Any] = {key: row[key] for key in TenantOut.model_fields if key in row.keys()}
    data["frequency_cap"] = (
        FrequencyCap(messages=row["frequency_cap_messages"], days=row["frequency_cap_days"])
        if row["frequency_cap_messages"] is not None
        else None
    )
    data["status_callback_url"] = status_callback_url(public_base_url, row["id"])
    data["inbound_url"] = inbound_url(public_base_url, row["id"])
    return TenantOut(**data)


async def create_tenant(
    pool: asyncpg.Pool,
    publisher: Publisher,
    box: SecretBox,
    data: TenantCreate,
    *,
    default_rate: int,
) -> tuple[asyncpg.Record, str]:
    """Create the tenant, its credit account and its dispatch queue; return the row and the API key."""
    tenant_id = uuid.uuid4()
    api_key = new_api_key()
    rate = None if data.unlimited_rate else (data.rate_per_second or default_rate)
    async with tenant_transaction(pool, tenant_id) as conn:
        row = await conn.fetchrow(
            queries.INSERT_TENANT,
            tenant_id,
            data.name,
            data.twilio_account_sid,
            box.encrypt(data.twilio_auth_token),
            data.whatsapp_from,
            data.messaging_service_sid,
            rate,
            data.timezone,
            data.default_region,
            data.locale,
            data.business_name,
            data.test_numbers or [],
            data.opt_out_keywords or [],
            data.opt_in_keywords or [],
            data.frequency_cap.messages if data.frequency_cap else None,
            data.frequency_cap.days if data.frequency_cap else None,
            data.messaging_limit_value(),
        )
        await conn.execute(queries.INSERT_API_KEY, tenant_id, hash_api_key(api_key), display_prefix(api_key))
        await conn.execute(
            queries.INSERT_CREDIT_ACCOUNT, tenant_id, data.credits.plan_monthly, data.credits.purchased
        )
        for bucket, amount in (("plan", data.credits.plan_monthly), ("purchased", data.credits.purchased)):
            if amount:
                kind = "plan_grant" if bucket == "plan" else "topup"
                await conn.execute(queries.INSERT_CREDIT_GRANT, tenant_id, kind, bucket, amount, "initial")
    # The dispatch queue must exist before the first recipient event is published to it.
    await topology.declare_tenant(publisher.channel, str(tenant_id))
    await announce(publisher, row)
    return row, api_key


async def get_tenant(pool: asyncpg.Pool, tenant_id: UUID) -> asyncpg.Record:
    row = await pool.fetchrow(queries.SELECT_TENANT, tenant_id)
    if row is None:
        raise TenantNotFound(tenant_id)
    return row


async def update_tenant(
    pool: asyncpg.Pool,
    publisher: Publisher,
    box: SecretBox,
    tenant_id: UUID,
    data: TenantSettingsUpdate | OperatorTenantUpdate,
    *,
    active: bool | None = None,
    messaging_window_s: float = 86_400.0,
) -> asyncpg.Record:
    rate_given = data.unlimited_rate is not None or data.rate_per_second is not None
    rate = None if data.unlimited_rate else data.rate_per_second
    # An explicit null removes the cap; leaving the field out keeps it.
    cap_given = "frequency_cap" in data.model_fields_set
    cap = data.frequency_cap
    operator = isinstance(data, OperatorTenantUpdate)
    limit = data.messaging_limit_value() if isinstance(data, OperatorTenantUpdate) else None
    async with tenant_transaction(pool, tenant_id) as conn:
        row = await conn.fetchrow(
            queries.UPDATE_TENANT,
            tenant_id,
            rate_given,
            rate,
            data.timezone,
            data.default_region,
            data.locale,
            data.business_name,
            data.whatsapp_from,
            data.messaging_service_sid,
            data.twilio_account_sid,
            box.encrypt(data.twilio_auth_token) if data.twilio_auth_token else None,
            data.test_numbers,
            data.opt_out_keywords,
            data.opt_in_keywords,
            active,
            cap_given,
            cap.messages if cap else None,
            cap.days if cap else None,
            operator and data.messaging_limit is not None,
            limit,
        )
        if row is None:
            raise TenantNotFound(tenant_id)
        if limit is not None:
            await count_contacts(conn, tenant_id, messaging_window_s)
    await announce(publisher, row)
    return row


async def count_contacts(conn: asyncpg.Connection, tenant_id: UUID, window_s: float) -> None:
    """Start a limited tenant's messaging-limit count from what it really sent in the window."""
    await conn.execute(queries.LOCK_SEND_LIMIT, tenant_id)
    await conn.execute(queries.SEED_CONTACTS, tenant_id, window_s)
    await conn.execute(queries.RECOUNT_SEND_LIMIT, tenant_id, window_s)


async def announce(publisher: Publisher, row: asyncpg.Record) -> None:
    event = TenantChanged(tenant_id=row["id"], rate_per_second=row["rate_per_second"], active=row["active"])
    await publisher.publish(topology.EVENTS_EXCHANGE, TenantChanged.ROUTING_KEY, event, mandatory=False)


async def list_tenants(
    pool: asyncpg.Pool,
    *,
    name: str | None,
    active: bool | None,
    before: datetime | None,
    before_id: UUID | None,
    limit: int,
    today: date | None = None,
) -> TenantPage:
    """A page of every tenant, newest first: the operator's view across tenants (an all-tenants
    read, since credit accounts are tenant rows). Balances are read, never rolled over here: a
    plan whose month ended counts as its new grant, as the next debit would find it."""
    rows = await AllTenants(pool).fetch(queries.LIST_TENANTS, name, active, before, before_id, limit)
    on = today or date.today()
    items = [TenantSummary(**dict(row), credits_available=_available(row, on)) for row in rows]
    last = items[-1] if len(items) == limit else None
    return TenantPage(
        items=items,
        next_before=last.created_at if last else None,
        next_before_id=last.id if last else None,
    )


def _available(row: asyncpg.Record, today: date) -> int | None:
    if row["plan_period_start"] is None:
        return None
    roll = credits.rollover(
        current_period=row["plan_period_start"],
        plan_balance=row["plan_balance"],
        plan_monthly=row["plan_monthly"],
        today=today,
    )
    return credits.available(
        plan_balance=row["plan_balance"] if roll is None else roll.grant,
        purchased_balance=row["purchased_balance"],
        reserved=row["reserved"],
    )

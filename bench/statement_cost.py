"""For benchmarks that time the engine's statements directly on a database (``claim_cost``,
``state_count_cost``): a PostgreSQL backend's CPU time, and a tenant with a running campaign of
pending recipients to run them on."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import asyncpg

TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def backend_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a local PostgreSQL backend."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # After the command name: state is field 3, utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_S


async def seed_running_campaign(
    conn: asyncpg.Connection, recipients: int, offset: int, *, credits: bool = True
) -> tuple[uuid.UUID, uuid.UUID]:
    """A tenant with ``recipients`` customers (numbers from ``offset`` on, so tenants seeded with
    different offsets never share one), a running campaign of one pending recipient each, and,
    with ``credits``, a credit account far larger than any run. Returns (tenant, campaign)."""
    tenant_id, campaign_id = uuid.uuid4(), uuid.uuid4()
    await conn.execute(
        "INSERT INTO tenants (id, name, twilio_account_sid, twilio_auth_token_enc, whatsapp_from)"
        " VALUES ($1, 'bench', $2, 'x', '+14155238886')",
        tenant_id,
        "AC" + uuid.uuid4().hex,
    )
    if credits:
        await conn.execute(
            "INSERT INTO credit_accounts (tenant_id, purchased_balance) VALUES ($1, 100000000)", tenant_id
        )
    await conn.execute(
        """
        INSERT INTO customers (tenant_id, external_id, first_name, last_name, phone_raw, phone_e164)
        SELECT $1, 'c-' || i, 'First' || i, 'Last' || i, p, p
        FROM generate_series($2::int, $2::int + $3::int - 1) AS i,
             LATERAL (SELECT '+1415' || lpad(i::text, 7, '0')) AS x(p)
        """,
        tenant_id,
        offset,
        recipients,
    )
    await conn.execute(
        "INSERT INTO campaigns (id, tenant_id, name, audience, template, state)"
        " VALUES ($1, $2, 'bench', '{}', '{\"body\": \"Hi\"}', 'running')",
        campaign_id,
        tenant_id,
    )
    await conn.execute(
        "INSERT INTO recipients (tenant_id, campaign_id, customer_id, phone_e164, state)"
        " SELECT $1, $2, id, phone_e164, 'pending' FROM customers WHERE tenant_id = $1 ORDER BY id",
        tenant_id,
        campaign_id,
    )
    return tenant_id, campaign_id

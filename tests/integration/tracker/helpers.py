"""Seeding tenants, campaigns and recipients with SQL, and talking to a running tracker the way
Twilio and tenants do."""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from shared.apikeys import hash_api_key, new_api_key
from shared.crypto import SecretBox
from shared.settings import DEVELOPMENT_ENCRYPTION_KEY
from shared.twilio_signature import compute_signature
from shared.webhooks import inbound_url, status_callback_url
from tests.support import IsolatedEnvironment, ManagedProcess, free_port

# Tenants seeded here are named with this prefix, so a module can remove all it seeded.
SEEDED_TENANT_PREFIX = "tracker-test "


@dataclass(frozen=True)
class SeededTenant:
    id: uuid.UUID
    auth_token: str
    api_key: str
    account_sid: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


@dataclass(frozen=True)
class SeededRecipient:
    id: int
    phone: str
    sid: str | None


def phone(index: int) -> str:
    """A valid, distinct US number per index."""
    return f"+1415{3000000 + index:07d}"


async def seed_tenant(
    pool: asyncpg.Pool, *, opt_out_keywords: list[str] | None = None, opt_in_keywords: list[str] | None = None
) -> SeededTenant:
    tenant_id = uuid.uuid4()
    token = secrets.token_hex(16)
    account_sid = "AC" + secrets.token_hex(16)
    api_key = new_api_key()
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO tenants (id, name, twilio_account_sid, twilio_auth_token_enc, whatsapp_from,"
            " opt_out_keywords, opt_in_keywords) VALUES ($1, $2, $3, $4, '+14155238886', $5, $6)",
            tenant_id,
            f"{SEEDED_TENANT_PREFIX}{account_sid[-6:]}",
            account_sid,
            SecretBox([DEVELOPMENT_ENCRYPTION_KEY]).encrypt(token),
            opt_out_keywords or [],
            opt_in_keywords or [],
        )
        await conn.execute(
            "INSERT INTO api_keys (tenant_id, key_hash, prefix) VALUES ($1, $2, $3)",
            tenant_id,
            hash_api_key(api_key),
            api_key[:10],
        )
    return SeededTenant(tenant_id, token, api_key, account_sid)


async def seed_campaign(pool: asyncpg.Pool, tenant_id: uuid.UUID, *, state: str = "running") -> uuid.UUID:
    """A campaign whose snapshot and publication count as done, so a segmenter running on the same
    database leaves it alone: its recipients are whatever the test seeds."""
    campaign_id = uuid.uuid4()
    await pool.execute(
        "INSERT INTO campaigns (id, tenant_id, name, audience, template, state, started_at,"
        " snapshot_completed_at, published_upto)"
        " VALUES ($1, $2, 'seeded', '{}', '{\"body\": \"Hi\"}', $3, now(), now(), 9223372036854775807)",
        campaign_id,
        tenant_id,
        state,
    )
    return campaign_id


async def seed_recipients(
    pool: asyncpg.Pool,
    tenant_id: uuid.UUID,
    campaign_id: uuid.UUID,
    count: int,
    *,
    state: str = "sent",
    with_sid: bool = True,
    start: int = 0,
) -> list[SeededRecipient]:
    """``count`` recipients with customers (First<i> Last<i>); sent ones have a SID and sent_at."""
    rows = await pool.fetch(
        """
        WITH c AS (
            INSERT INTO customers (tenant_id, external_id, first_name, last_name, phone_raw, phone_e164)
            SELECT $1, $2::text || '-' || g, 'First' || g, 'Last' || g, p, p
            FROM generate_series($3::int, $3::int + $4::int - 1) AS g,
                 LATERAL (SELECT '+1415' || lpad((3000000 + g)::text, 7, '0') AS p) AS ph
            RETURNING id, phone_e164
        )
        INSERT INTO recipients (tenant_id, campaign_id, customer_id, phone_e164, state, attempts, twilio_sid,
                                claimed_at, sent_at)
        SELECT $1, $5::uuid, c.id, c.phone_e164, $6, CASE WHEN $7 THEN 1 ELSE 0 END,
               CASE WHEN $7 THEN 'SM' || md5($2::text || c.phone_e164) END,
               CASE WHEN $7 THEN now() END, CASE WHEN $7 THEN now() END
        FROM c
        ORDER BY c.id
        RETURNING id, phone_e164, twilio_sid
        """,
        tenant_id,
        str(campaign_id),
        start,
        count,
        campaign_id,
        state,
        with_sid,
    )
    return sorted(
        (SeededRecipient(r["id"], r["phone_e164"], r["twilio_sid"]) for r in rows), key=lambda r: r.id
    )


async def forget_seeded_tenants(pool: asyncpg.Pool) -> None:
    """Delete the seeded tenants with their campaigns, recipients and customers, so the services
    of later tests on the same database never meet them."""
    await pool.execute("DELETE FROM tenants WHERE name LIKE $1", SEEDED_TENANT_PREFIX + "%", timeout=120)


def new_sid() -> str:
    return "SM" + secrets.token_hex(16)


def status_params(
    sid: str, status: str, *, to: str = "+14155550100", error_code: int | None = None
) -> dict[str, str]:
    params = {
        "AccountSid": "AC" + "0" * 32,
        "ApiVersion": "2010-04-01",
        "ChannelPrefix": "whatsapp",
        "From": "whatsapp:+14155238886",
        "To": f"whatsapp:{to}",
        "MessageSid": sid,
        "MessageStatus": status,
        "SmsSid": sid,
        "SmsStatus": status,
    }
    if error_code is not None:
        params["ErrorCode"] = str(error_code)
        params["ChannelStatusMessage"] = f"channel error {error_code}"
    return params


def signed_headers(
    token: str, url: str, params: Mapping[str, str], idempotency: str | None = None
) -> dict[str, str]:
    headers = {"X-Twilio-Signature": compute_signature(token, url, params)}
    if idempotency:
        headers["I-Twilio-Idempotency-Token"] = idempotency
    return headers


@dataclass
class RunningTracker:
    process: ManagedProcess
    url: str

    def status_url(self, tenant_id: uuid.UUID | str) -> str:
        return status_callback_url(self.url, tenant_id)

    def inbound_url(self, tenant_id: uuid.UUID | str) -> str:
        return inbound_url(self.url, tenant_id)

    async def post_status(
        self,
        client: httpx.AsyncClient,
        tenant: SeededTenant,
        params: Mapping[str, str],
        *,
        idempotency: str | None = None,
    ) -> httpx.Response:
        url = self.status_url(tenant.id)
        return await client.post(
            url, data=dict(params), headers=signed_headers(tenant.auth_token, url, params, idempotency)
        )

    async def post_inbound(
        self,
        client: httpx.AsyncClient,
        tenant: SeededTenant,
        *,
        sender: str,
        body: str,
        sid: str | None = None,
    ) -> httpx.Response:
        url = self.inbound_url(tenant.id)
        params = {
            "MessageSid": sid or new_sid(),
            "AccountSid": tenant.account_sid,
            "From": f"whatsapp:{sender}",
            "To": "whatsapp:+14155238886",
            "Body": body,
            "NumMedia": "0",
            "ProfileName": "Someone",
            "WaId": sender.lstrip("+"),
        }
        return await client.post(url, data=params, headers=signed_headers(tenant.auth_token, url, params))


def start_tracker(env: IsolatedEnvironment, log_dir: Path, **extra: str) -> RunningTracker:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = ManagedProcess(
        "services.tracker",
        env.env(
            **{
                "WCE_TRACKER_PORT": str(port),
                "WCE_PUBLIC_BASE_URL": url,
                "WCE_ORPHAN_MATCH_INTERVAL_S": "0.2",
                "WCE_METRICS_SAMPLE_INTERVAL_S": "0.5",
                "WCE_CALLBACK_FLUSH_S": "0.02",
                **extra,
            }
        ),
        f"{url}/readyz",
        log_dir,
    )
    try:
        process.wait_healthy()
    except Exception:
        process.stop()
        raise
    return RunningTracker(process, url)


async def eventually(
    check: Callable[[], Awaitable[Any]], *, timeout_s: float = 10.0, every_s: float = 0.05
) -> Any:
    """The first truthy result of ``check`` within ``timeout_s``; the last result otherwise."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = await check()
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(every_s)

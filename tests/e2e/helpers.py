"""What end-to-end tests do through the public APIs: tenants, booking data, campaigns."""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass
from typing import Any

import httpx

from shared.recipient_states import TERMINAL_RECIPIENT_STATES
from tests.support import OPERATOR_TOKEN, Stack
from tools.twilio_sim.admin_client import SimulatorAdmin

FINAL_STATES = TERMINAL_RECIPIENT_STATES


@dataclass(frozen=True)
class TenantHandle:
    id: str
    api_key: str
    account_sid: str
    auth_token: str
    whatsapp_from: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


def new_account_sid() -> str:
    return "AC" + secrets.token_hex(16)


async def create_tenant(stack: Stack, *, rate: int | None, **fields: Any) -> TenantHandle:
    """Register a Twilio account on the simulator and a tenant using it, with these extra fields."""
    account_sid, token = new_account_sid(), secrets.token_hex(16)
    async with SimulatorAdmin(stack.simulator_url) as sim:
        await sim.register_account(account_sid, token)
    body: dict[str, Any] = {
        "name": f"Tenant {account_sid[-6:]}",
        "twilio_account_sid": account_sid,
        "twilio_auth_token": token,
        "whatsapp_from": "+14155238886",
        **fields,
    }
    body.update({"unlimited_rate": True} if rate is None else {"rate_per_second": rate})
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as client:
        response = await client.post(
            "/v1/operator/tenants", json=body, headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}
        )
    response.raise_for_status()
    data = response.json()
    return TenantHandle(data["tenant"]["id"], data["api_key"], account_sid, token, body["whatsapp_from"])


async def new_tenant(
    stack: Stack, *, rate: int | None = 80, credits: int = 1_000_000, **fields: Any
) -> TenantHandle:
    """A tenant with plenty of purchased credits unless the fields say otherwise."""
    return await create_tenant(stack, rate=rate, **{"credits": {"purchased": credits}, **fields})


def phone(index: int) -> str:
    """A valid, distinct US number per index."""
    return f"+1415{2000000 + index:07d}"


def customers(count: int, *, start: int = 0) -> list[dict[str, Any]]:
    return [
        {"external_id": f"cust-{i}", "first_name": f"First{i}", "last_name": f"Last{i}", "phone": phone(i)}
        for i in range(start, start + count)
    ]


async def import_customers(stack: Stack, tenant: TenantHandle, rows: list[dict[str, Any]]) -> None:
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=120, headers=tenant.headers) as client:
        for i in range(0, len(rows), 10_000):
            response = await client.post("/v1/booking/customers:upsert", json={"rows": rows[i : i + 10_000]})
            response.raise_for_status()


async def create_campaign(
    stack: Stack,
    tenant: TenantHandle,
    *,
    body: str = "Hi {customer_first_name}!",
    start: bool = True,
    **extra: Any,
) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=60, headers=tenant.headers) as client:
        response = await client.post(
            "/v1/campaigns", json={"name": "e2e", "template": {"body": body}, "start": start, **extra}
        )
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


async def campaign(stack: Stack, tenant: TenantHandle, campaign_id: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30, headers=tenant.headers) as client:
        response = await client.get(f"/v1/campaigns/{campaign_id}")
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


async def wait_for_state(
    stack: Stack, tenant: TenantHandle, campaign_id: str, states: set[str], timeout_s: float
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        current = await campaign(stack, tenant, campaign_id)
        if current["state"] in states:
            return current
        if time.monotonic() > deadline:
            raise TimeoutError(f"campaign is {current['state']} after {timeout_s}s\n{stack.logs()}")
        await asyncio.sleep(0.25)

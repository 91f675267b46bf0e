"""Bad input never reaches the database as a 500: each input below (every kind of field × NUL or
an unpaired surrogate, overlong text, a wrong type, an integer past its column, a datetime past
the calendar, an oversized body, a message past WhatsApp's length, the operator's rate) gets a
4xx naming the field, and nothing is written."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import pytest

from tests.e2e.helpers import TenantHandle, import_customers, new_tenant
from tests.support import OPERATOR_TOKEN, Stack

pytestmark = pytest.mark.asyncio(loop_scope="session")

NUL = "a\x00b"
INT4_PAST = 2**31
INT8_PAST = 2**63
BODY_OK = {"body": "Hello {customer_first_name}"}
APPOINTMENT = {
    "external_id": "appt-1",
    "customer_id": "cust-0",
    "starts_at": "2030-01-01T10:00:00+00:00",
    "created_at": "2029-12-01T10:00:00+00:00",
    "status": "approved",
}

# Every table a refused request could write to, counted before and after each request.
COUNTED_TABLES = (
    "tenants",
    "tenant_contacts",
    "tenant_send_limits",
    "api_keys",
    "customers",
    "appointments",
    "services",
    "locations",
    "staff",
    "appointment_statuses",
    "suppressions",
    "suppression_events",
    "campaigns",
    "recipients",
    "credit_ledger",
)


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: str
    field: str
    json: Any = None
    content: bytes | None = None
    params: dict[str, Any] = field(default_factory=dict)
    service: str = "api"
    operator: bool = False
    status: int = 422


def campaign(**overrides: Any) -> dict[str, Any]:
    return {"name": "Spring", "template": BODY_OK, **overrides}


def upsert_customer(**row: Any) -> dict[str, Any]:
    return {"rows": [{"external_id": "new-1", "phone": "+14155550199", **row}]}


def upsert_appointment(**row: Any) -> dict[str, Any]:
    return {"rows": [{**APPOINTMENT, **row}]}


def manual(variables: dict[str, Any], body: str = "Hi {customer_first_name}") -> dict[str, Any]:
    return {"template": {"body": body}, "recipients": [{"phone": "+14155550123", "variables": variables}]}


CASES = [
    # NUL (and an unpaired surrogate) in every kind of text that reaches PostgreSQL
    Case("business name NUL", "PATCH", "/v1/tenant", "business_name", json={"business_name": NUL}),
    Case("campaign name NUL", "POST", "/v1/campaigns", "name", json=campaign(name=NUL)),
    Case(
        "campaign name lone surrogate",
        "POST",
        "/v1/campaigns",
        "name",
        content=b'{"name": "a\\ud800", "template": {"body": "Hi"}}',
    ),
    Case(
        "template body NUL", "POST", "/v1/campaigns", "template.body", json=campaign(template={"body": NUL})
    ),
    Case(
        "content variable NUL",
        "POST",
        "/v1/campaigns",
        "template.variables.1",
        json=campaign(template={"content_sid": "HX" + "0" * 32, "variables": {"1": NUL}}),
    ),
    Case(
        "customer first name NUL",
        "POST",
        "/v1/booking/customers:upsert",
        "rows.0.first_name",
        json=upsert_customer(first_name=NUL),
    ),
    Case(
        "customer email NUL",
        "POST",
        "/v1/booking/customers:upsert",
        "rows.0.email",
        json=upsert_customer(email=NUL),
    ),
    Case(
        "customer external id NUL",
        "POST",
        "/v1/booking/customers:upsert",
        "rows.0.external_id",
        json=upsert_customer(external_id=NUL),
    ),
    Case(
        "appointment status NUL",
        "POST",
        "/v1/booking/appointments:upsert",
        "rows.0.status",
        json=upsert_appointment(status=NUL),
    ),
    Case(
        "service name NUL",
        "POST",
        "/v1/booking/services:upsert",
        "rows.0.name",
        json={"rows": [{"external_id": "s1", "name": NUL}]},
    ),
    Case(
        "location address NUL",
        "POST",
        "/v1/booking/locations:upsert",
        "rows.0.address",
        json={"rows": [{"external_id": "l1", "name": "L", "address": NUL}]},
    ),
    Case(
        "delete external id NUL",
        "POST",
        "/v1/booking/customers:delete",
        "external_ids.0",
        json={"external_ids": [NUL]},
    ),
    Case(
        "suppression reason NUL",
        "POST",
        "/v1/suppressions",
        "reason",
        json={"phone": "+14155550100", "reason": NUL},
    ),
    Case(
        "suppression import reason NUL",
        "POST",
        "/v1/suppressions/import",
        "reason",
        json={"phones": ["+14155550100"], "reason": NUL},
    ),
    Case("suppression list cursor NUL", "GET", "/v1/suppressions", "after", params={"after": NUL}),
    Case(
        "manual-send variable NUL",
        "POST",
        "/v1/sends/manual",
        "recipients.0.variables.customer_first_name",
        json=manual({"customer_first_name": NUL}),
    ),
    Case("test-send template NUL", "POST", "/v1/sends/test", "template", json={"template": {"body": NUL}}),
    Case(
        "audience filter NUL",
        "POST",
        "/v1/audiences/preview",
        "service_ids.0",
        json={"segment": "all_customers", "service_ids": [NUL]},
    ),
    Case("keyword NUL", "PATCH", "/v1/tenant", "opt_out_keywords.0", json={"opt_out_keywords": [NUL]}),
    Case(
        "operator tenant name NUL",
        "POST",
        "/v1/operator/tenants",
        "name",
        operator=True,
        json={
            "name": NUL,
            "twilio_account_sid": "AC" + "0" * 32,
            "twilio_auth_token": "secret-token",
            "whatsapp_from": "+14155238886",
        },
    ),
    Case(
        "top-up note NUL",
        "POST",
        "/v1/operator/tenants/{tenant}/credits",
        "note",
        operator=True,
        json={"top_up": 1, "note": NUL},
    ),
    # Integers past their column types
    Case("credits before_id past bigint", "GET", "/v1/credits", "before_id", params={"before_id": INT8_PAST}),
    Case(
        "error_code past integer",
        "GET",
        "/v1/campaigns/{campaign}/recipients",
        "error_code",
        service="tracker",
        params={"error_code": INT4_PAST},
    ),
    Case(
        "after past bigint",
        "GET",
        "/v1/campaigns/{campaign}/recipients",
        "after",
        service="tracker",
        params={"after": INT8_PAST},
    ),
    Case(
        "recipient id past bigint",
        "GET",
        f"/v1/campaigns/{{campaign}}/recipients/{INT8_PAST}/events",
        "recipient_id",
        service="tracker",
    ),
    Case(
        "recipient id negative",
        "GET",
        "/v1/campaigns/{campaign}/recipients/-1/events",
        "recipient_id",
        service="tracker",
    ),
    Case(
        "rate past its bound",
        "PATCH",
        "/v1/operator/tenants/{tenant}",
        "rate_per_second",
        operator=True,
        json={"rate_per_second": INT4_PAST},
    ),
    # Datetimes outside the range PostgreSQL and Python can both hold
    Case(
        "appointment in year 0",
        "POST",
        "/v1/booking/appointments:upsert",
        "rows.0.starts_at",
        json=upsert_appointment(starts_at="0001-01-01T00:00:00+05:00"),
    ),
    Case(
        "appointment past year 9999",
        "POST",
        "/v1/booking/appointments:upsert",
        "rows.0.created_at",
        json=upsert_appointment(created_at="9999-12-31T23:59:59-05:00"),
    ),
    Case(
        "appointment without a time zone",
        "POST",
        "/v1/booking/appointments:upsert",
        "rows.0.starts_at",
        json=upsert_appointment(starts_at="2030-01-01T10:00:00"),
    ),
    # Overlong free text
    Case("business name overlong", "PATCH", "/v1/tenant", "business_name", json={"business_name": "x" * 201}),
    Case("locale overlong", "PATCH", "/v1/tenant", "locale", json={"locale": "en_" + "x" * 40}),
    Case(
        "keyword overlong", "PATCH", "/v1/tenant", "opt_in_keywords.0", json={"opt_in_keywords": ["x" * 65]}
    ),
    Case(
        "auth token overlong",
        "PATCH",
        "/v1/tenant",
        "twilio_auth_token",
        json={"twilio_auth_token": "x" * 257},
    ),
    Case("campaign name overlong", "POST", "/v1/campaigns", "name", json=campaign(name="x" * 201)),
    Case(
        "manual-send value overlong",
        "POST",
        "/v1/sends/manual",
        "recipients.0.variables.customer_first_name",
        json=manual({"customer_first_name": "x" * 1025}),
    ),
    Case("import phone overlong", "POST", "/v1/suppressions/import", "phones.0", json={"phones": ["1" * 41]}),
    # Wrong types
    Case("business name a number", "PATCH", "/v1/tenant", "business_name", json={"business_name": 5}),
    Case("campaign name a list", "POST", "/v1/campaigns", "name", json=campaign(name=["x"])),
    Case(
        "manual-send value a number",
        "POST",
        "/v1/sends/manual",
        "recipients.0.variables.customer_first_name",
        json=manual({"customer_first_name": 5}),
    ),
    Case(
        "test-send template with NaN",
        "POST",
        "/v1/sends/test",
        "template",
        content=b'{"template": {"body": NaN}}',
    ),
    # The rate is the operator's
    Case(
        "tenant sets its own rate", "PATCH", "/v1/tenant", "rate_per_second", json={"rate_per_second": 10_000}
    ),
    Case(
        "tenant makes itself unlimited",
        "PATCH",
        "/v1/tenant",
        "unlimited_rate",
        json={"unlimited_rate": True},
    ),
    # So is the WhatsApp messaging limit, and only Meta's tiers are one
    Case(
        "tenant lifts its own messaging limit",
        "PATCH",
        "/v1/tenant",
        "messaging_limit",
        json={"messaging_limit": "unlimited"},
    ),
    Case(
        "operator sets a messaging limit that is no tier",
        "PATCH",
        "/v1/operator/tenants/{tenant}",
        "messaging_limit",
        json={"messaging_limit": 300},
        operator=True,
    ),
    # A message past WhatsApp's 1600 characters
    Case(
        "campaign body that can render too long",
        "POST",
        "/v1/campaigns",
        "template.body",
        json=campaign(template={"body": "x" * 1500 + " {customer_full_name}"}),
    ),
    Case(
        "manual send that renders too long",
        "POST",
        "/v1/sends/manual",
        "recipients.0.variables",
        json=manual({"customer_first_name": "y" * 1000}, body="x" * 700 + " {customer_first_name}"),
    ),
    # Schedules and sending windows
    Case(
        "schedule in the past",
        "POST",
        "/v1/campaigns",
        "schedule.at",
        json=campaign(schedule={"at": "2001-01-01T09:00"}),
    ),
    Case(
        "schedule in a zone that does not exist",
        "POST",
        "/v1/campaigns",
        "schedule.timezone",
        json=campaign(schedule={"at": "2031-01-01T09:00", "timezone": "Nowhere/Place"}),
    ),
    Case(
        "schedule at a time the clocks skip",
        "POST",
        "/v1/campaigns",
        "schedule.at",
        json=campaign(schedule={"at": "2031-03-09T02:30", "timezone": "America/New_York"}),
    ),
    Case(
        "start and schedule",
        "POST",
        "/v1/campaigns",
        "schedule",
        json=campaign(start=True, schedule={"at": "2031-01-01T09:00"}),
    ),
    Case(
        "reschedule in the past",
        "POST",
        "/v1/campaigns/{campaign}/schedule",
        "at",
        json={"at": "2001-01-01T09:00:00+00:00"},
    ),
    Case(
        "window ending before it starts",
        "PUT",
        "/v1/tenant/sending-window",
        "end",
        json={"days": ["mon"], "start": "20:00", "end": "09:00"},
    ),
    Case(
        "window on a day that does not exist",
        "PUT",
        "/v1/tenant/sending-window",
        "days.0",
        json={"days": ["funday"], "start": "09:00", "end": "20:00"},
    ),
    # Bodies past the limit, refused before they are parsed
    Case(
        "2 MB campaign body",
        "POST",
        "/v1/campaigns",
        "body",
        status=413,
        json=campaign(name="x", padding="x" * 2_000_000),
    ),
    Case(
        "20 MB import",
        "POST",
        "/v1/suppressions/import",
        "body",
        status=413,
        json={"phones": ["+14155550100"] * 1_500_000},
    ),
    Case(
        "2 MB tracker query body",
        "POST",
        "/v1/campaigns/{campaign}/recipients",
        "body",
        service="tracker",
        status=413,
        content=b"x" * 2_000_000,
    ),
]


def without_union_members(path: str) -> str:
    """``template.BodyTemplate.body`` → ``template.body``: a union's errors name its member too."""
    return ".".join(part for part in path.split(".") if not part[:1].isupper())


@dataclass
class World:
    tenant: TenantHandle
    campaign_id: str


@pytest.fixture(scope="module")
async def world(stack: Stack) -> AsyncIterator[World]:
    tenant = await new_tenant(stack, rate=80, test_numbers=["+14155550150"])
    await import_customers(
        stack, tenant, [{"external_id": "cust-0", "first_name": "Ann", "phone": "+14155550111"}]
    )
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30, headers=tenant.headers) as client:
        response = await client.post("/v1/campaigns", json=campaign())
    response.raise_for_status()
    yield World(tenant, response.json()["id"])


async def table_counts(pool: asyncpg.Pool) -> dict[str, int]:
    return {table: await pool.fetchval(f"SELECT count(*) FROM {table}") for table in COUNTED_TABLES}


async def tenant_row(pool: asyncpg.Pool, tenant_id: str) -> dict[str, Any]:
    row = await pool.fetchrow("SELECT * FROM tenants WHERE id = $1::uuid", tenant_id)
    return dict(row)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
async def test_bad_input_gets_a_4xx_naming_the_field_and_writes_nothing(
    stack: Stack, pool: asyncpg.Pool, world: World, case: Case
) -> None:
    # Given the database as it is
    before = await table_counts(pool)
    tenant_before = await tenant_row(pool, world.tenant.id)

    # When the bad input is sent
    base_url = stack.api_url if case.service == "api" else stack.tracker_url
    headers = {"Authorization": f"Bearer {OPERATOR_TOKEN}"} if case.operator else world.tenant.headers
    path = case.path.format(tenant=world.tenant.id, campaign=world.campaign_id)
    async with httpx.AsyncClient(base_url=base_url, timeout=60, headers=headers) as client:
        response = await client.request(
            case.method,
            path,
            json=case.json,
            content=case.content,
            params=case.params,
            headers={"content-type": "application/json"} if case.content is not None else None,
        )

    # Then it is refused naming the field, and nothing changed
    assert response.status_code == case.status, response.text
    fields = [without_union_members(error["field"]) for error in response.json()["errors"]]
    assert case.field in fields, response.text
    assert await table_counts(pool) == before
    assert await tenant_row(pool, world.tenant.id) == tenant_before


async def test_purchased_credits_add_up_past_the_integer_range(stack: Stack, world: World) -> None:
    # Given a tenant topped up 25 times with the largest top-up
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as client:
        for _ in range(25):
            response = await client.post(
                f"/v1/operator/tenants/{world.tenant.id}/credits",
                json={"top_up": 100_000_000},
                headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"},
            )
            assert response.status_code == 200, response.text

        # When it reads its balance / Then the sum is kept whole, past 2**31
        response = await client.get("/v1/credits", headers=world.tenant.headers)
    assert response.status_code == 200, response.text
    assert response.json()["balance"]["purchased_balance"] == 1_000_000 + 25 * 100_000_000

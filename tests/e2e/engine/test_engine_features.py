"""Suppressions, credits, test and manual sends, and approved templates, through the API and the
whole engine."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from tests.e2e.engine.engine_helpers import (
    api,
    operator,
    seed_customers,
    simulator_stats,
    tenant_with,
    wait_sent,
    wait_settled,
)
from tests.e2e.helpers import create_campaign, new_tenant, wait_for_state
from tests.support import Stack
from tools.twilio_sim.admin_client import SimulatorAdmin

pytestmark = pytest.mark.asyncio(loop_scope="session")

SENDERS = 1


async def test_a_number_suppressed_mid_campaign_gets_nothing_after_the_suppression_commits(
    engine_stack: Stack, pool: asyncpg.Pool
) -> None:
    # Given a campaign sending at 40/s to 400 numbers
    tenant = await new_tenant(engine_stack, rate=40)
    numbers = await seed_customers(pool, tenant, 400)
    started = await create_campaign(engine_stack, tenant)
    await wait_sent(pool, started["id"], 40)

    # When five of the numbers not reached yet are suppressed (one of them by an import)
    late = numbers[-5:]
    for number in late[:4]:
        response = await api(engine_stack, tenant, "POST", "/v1/suppressions", json={"phone": number})
        assert response.status_code == 201, response.text
    response = await api(engine_stack, tenant, "POST", "/v1/suppressions/import", json={"phones": late[4:]})
    assert response.json() == {"added": 1, "already_suppressed": 0}

    # Then the campaign completes without them: Twilio never saw them, their rows say suppressed
    counts = await wait_settled(pool, started["id"], 400, timeout_s=60, stack=engine_stack)
    assert counts.get("suppressed") == 5, counts
    stats = await simulator_stats(engine_stack, tenant.account_sid)
    assert not {f"whatsapp:{n}" for n in late} & set(stats["per_to"])
    assert stats["accepted_total"] == 395


async def test_the_suppression_list_can_be_managed_in_any_phone_format(engine_stack: Stack) -> None:
    tenant = await new_tenant(engine_stack, rate=None)
    other = await new_tenant(engine_stack, rate=None)
    # When a number is added in national format
    added = await api(
        engine_stack, tenant, "POST", "/v1/suppressions", json={"phone": "(415) 200-0001", "reason": "asked"}
    )
    again = await api(engine_stack, tenant, "POST", "/v1/suppressions", json={"phone": "+1 415 200 0001"})
    # Then it is stored in E.164, once
    assert added.status_code == 201 and added.json()["phone_e164"] == "+14152000001"
    assert added.json()["source"] == "api" and added.json()["reason"] == "asked"
    assert again.status_code == 200
    listed = (await api(engine_stack, tenant, "GET", "/v1/suppressions")).json()
    assert [item["phone_e164"] for item in listed["items"]] == ["+14152000001"]
    # And another tenant sees nothing of it
    assert (await api(engine_stack, other, "GET", "/v1/suppressions/+14152000001")).status_code == 404
    # When an import holds one bad number / Then nothing is imported and the error names it
    bad = await api(
        engine_stack, tenant, "POST", "/v1/suppressions/import", json={"phones": ["+14152000002", "nope"]}
    )
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "phones.1"
    assert len((await api(engine_stack, tenant, "GET", "/v1/suppressions")).json()["items"]) == 1
    # When removed / Then it is gone, and removing again is 404
    assert (await api(engine_stack, tenant, "DELETE", "/v1/suppressions/+14152000001")).status_code == 204
    assert (await api(engine_stack, tenant, "DELETE", "/v1/suppressions/+14152000001")).status_code == 404


async def test_a_campaign_beyond_the_balance_pauses_for_credits_and_completes_after_a_top_up(
    engine_stack: Stack, pool: asyncpg.Pool
) -> None:
    # Given a tenant with 100 plan credits and 200 purchased ones, and a 500-recipient campaign
    tenant = await tenant_with(engine_stack, rate=None, credits={"plan_monthly": 100, "purchased": 200})
    await seed_customers(pool, tenant, 500, start=10_000)
    started = await create_campaign(engine_stack, tenant)

    # Then it pauses for lack of credits once the 300 are spent
    paused = await wait_for_state(engine_stack, tenant, started["id"], {"paused"}, timeout_s=60)
    assert paused["pause_reason"] == "insufficient_credits"
    await asyncio.sleep(1)
    assert (await simulator_stats(engine_stack, tenant.account_sid))["accepted_total"] == 300
    balance = (await api(engine_stack, tenant, "GET", "/v1/credits")).json()["balance"]
    assert (balance["plan_balance"], balance["purchased_balance"], balance["reserved"]) == (0, 0, 0)

    # When the operator tops up 250 credits
    response = await operator(
        engine_stack, "POST", f"/v1/operator/tenants/{tenant.id}/credits", json={"top_up": 250}
    )
    assert response.status_code == 200, response.text

    # Then the campaign resumes by itself and completes
    await wait_settled(pool, started["id"], 500, timeout_s=60, stack=engine_stack)
    await wait_for_state(engine_stack, tenant, started["id"], {"completed"}, timeout_s=30)
    # And exactly as many messages were accepted as credits debited, plan credits first
    stats = await simulator_stats(engine_stack, tenant.account_sid)
    ledger = await pool.fetch(
        "SELECT bucket, count(*) AS n, sum(amount) AS total FROM credit_ledger"
        " WHERE tenant_id = $1 AND kind = 'debit' GROUP BY bucket",
        uuid.UUID(tenant.id),
    )
    debits = {row["bucket"]: (row["n"], row["total"]) for row in ledger}
    assert stats["accepted_total"] == 500 and not stats["duplicates"]
    assert debits == {"plan": (100, -100), "purchased": (400, -400)}
    credits = (await api(engine_stack, tenant, "GET", "/v1/credits?limit=5")).json()
    assert credits["balance"]["purchased_balance"] == 50 and credits["balance"]["reserved"] == 0
    assert len(credits["ledger"]) == 5 and credits["next_before_id"] is not None


async def test_a_test_send_goes_to_the_test_numbers_rendered_with_a_sample_recipient(
    engine_stack: Stack, pool: asyncpg.Pool
) -> None:
    # Given a tenant with two test numbers and a customer to sample
    tenant = await tenant_with(
        engine_stack,
        rate=None,
        test_numbers=["+14152999001", "+14152999002"],
        business_name="Glow",
        credits={"purchased": 100},
    )
    await seed_customers(pool, tenant, 1, start=20_000)

    # When a test send is made / Then it runs as a campaign of kind test
    response = await api(
        engine_stack,
        tenant,
        "POST",
        "/v1/sends/test",
        json={"template": {"body": "Hi {customer_first_name} from {business_name}"}},
    )
    assert response.status_code == 201, response.text
    assert response.json()["kind"] == "test"
    await wait_settled(pool, response.json()["id"], 2, timeout_s=30, stack=engine_stack)

    # And both test numbers got the sample's message
    stats = await simulator_stats(
        engine_stack, tenant.account_sid, include_requests=True, body_contains="Hi First20000 from Glow"
    )
    assert sorted(r["to"] for r in stats["requests"]) == ["whatsapp:+14152999001", "whatsapp:+14152999002"]

    # And an unknown shortcode is refused naming the field
    bad = await api(engine_stack, tenant, "POST", "/v1/sends/test", json={"template": {"body": "Hi {first}"}})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "template.body"


async def test_a_manual_send_reaches_each_number_with_its_own_values(
    engine_stack: Stack, pool: asyncpg.Pool
) -> None:
    tenant = await tenant_with(engine_stack, rate=None, credits={"purchased": 100})
    # When a manual send names two numbers, one with a first name
    response = await api(
        engine_stack,
        tenant,
        "POST",
        "/v1/sends/manual",
        json={
            "template": {"body": "Hello {customer_first_name}!"},
            "recipients": [
                {"phone": "(415) 299-9101", "variables": {"customer_first_name": "Zed"}},
                {"phone": "+14152999102"},
            ],
        },
    )
    assert response.status_code == 201, response.text
    assert response.json()["kind"] == "manual"
    await wait_settled(pool, response.json()["id"], 2, timeout_s=30, stack=engine_stack)
    # Then each got its own rendering
    for body, to in (("Hello Zed!", "whatsapp:+14152999101"), ("Hello there!", "whatsapp:+14152999102")):
        stats = await simulator_stats(
            engine_stack, tenant.account_sid, include_requests=True, body_contains=body
        )
        assert [r["to"] for r in stats["requests"]] == [to]
    # And a bad number or an unknown value is refused, naming the entry
    bad = await api(
        engine_stack,
        tenant,
        "POST",
        "/v1/sends/manual",
        json={
            "template": {"body": "Hi"},
            "recipients": [{"phone": "123"}, {"phone": "+14152999103", "variables": {"x": "1"}}],
        },
    )
    assert bad.status_code == 422
    assert [e["field"] for e in bad.json()["errors"]] == ["recipients.0.phone", "recipients.1.variables.x"]


async def test_only_approved_content_templates_are_listed_and_sendable(
    engine_stack: Stack, pool: asyncpg.Pool
) -> None:
    tenant = await tenant_with(engine_stack, rate=None, credits={"purchased": 100})
    approved, rejected = "HX" + "a1" * 16, "HX" + "b2" * 16
    async with SimulatorAdmin(engine_stack.simulator_url) as sim:
        await sim.add_templates(
            tenant.account_sid,
            [
                {
                    "sid": approved,
                    "friendly_name": "reminder",
                    "body": "Hi {{1}}, see you at {{2}}",
                    "status": "approved",
                },
                {"sid": rejected, "friendly_name": "promo", "body": "Deal {{1}}", "status": "rejected"},
            ],
            replace=True,
        )
    # When the tenant lists its templates / Then only the approved one is there
    listed = (await api(engine_stack, tenant, "GET", "/v1/templates")).json()
    assert [t["sid"] for t in listed] == [approved]
    # When a manual send uses it with a variable mapping / Then Twilio renders the mapped values
    response = await api(
        engine_stack,
        tenant,
        "POST",
        "/v1/sends/manual",
        json={
            "template": {
                "content_sid": approved,
                "variables": {"1": "{customer_first_name}", "2": "{location_name}"},
            },
            "recipients": [
                {
                    "phone": "+14152999201",
                    "variables": {"customer_first_name": "Ivy", "location_name": "Mitte"},
                }
            ],
        },
    )
    assert response.status_code == 201, response.text
    await wait_settled(pool, response.json()["id"], 1, timeout_s=30, stack=engine_stack)
    stats = await simulator_stats(
        engine_stack, tenant.account_sid, include_requests=True, body_contains="Hi Ivy, see you at Mitte"
    )
    assert len(stats["requests"]) == 1
    # And the rejected one is refused
    refused = await api(
        engine_stack,
        tenant,
        "POST",
        "/v1/sends/manual",
        json={"template": {"content_sid": rejected}, "recipients": [{"phone": "+14152999202"}]},
    )
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "template.content_sid"

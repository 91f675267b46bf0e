"""The operator's tenant list and single tenant on the real database: every tenant with its rate,
messaging limit and credits available, filtered by name and activity, a page at a time; one tenant
with its settings and balance; a tenant's key is refused."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import date
from typing import Any

import asyncpg
import httpx
import pytest

from services.segmenter import routes_tenants
from tests.integration.booking.booking_api import new_tenant
from tests.security.segmenter_app import OPERATOR, client, segmenter


@pytest.fixture
async def api(pool: asyncpg.Pool) -> AsyncIterator[httpx.AsyncClient]:
    async with client(segmenter(pool, routes_tenants.router)) as api:
        yield api


async def _tenant(pool: asyncpg.Pool, name: str, **columns: Any) -> uuid.UUID:
    tenant_id, _ = await new_tenant(pool)
    await pool.execute("UPDATE tenants SET name = $2 WHERE id = $1", tenant_id, name)
    for column, value in columns.items():
        await pool.execute(f"UPDATE tenants SET {column} = $2 WHERE id = $1", tenant_id, value)
    return tenant_id


async def test_the_operator_lists_tenants_with_rate_limit_and_credits_and_filters_them(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    # Given three tenants named with this test's mark: one unlimited with a messaging limit and
    # credits (part of them reserved), one deactivated whose plan month ended, one without an account
    mark = uuid.uuid4().hex[:10]
    unlimited = await _tenant(pool, f"Salon {mark} North", rate_per_second=None, messaging_limit=1000)
    await pool.execute(
        "INSERT INTO credit_accounts (tenant_id, plan_monthly, plan_balance, purchased_balance, reserved)"
        " VALUES ($1, 100, 40, 500, 15)",
        unlimited,
    )
    stopped = await _tenant(pool, f"salon {mark.upper()} South", rate_per_second=20, active=False)
    await pool.execute(
        "INSERT INTO credit_accounts (tenant_id, plan_monthly, plan_balance, plan_period_start,"
        " purchased_balance) VALUES ($1, 300, 7, $2, 10)",
        stopped,
        date(2020, 1, 1),
    )
    bare = await _tenant(pool, f"Barber {mark}", rate_per_second=80)

    async def listed(**params: Any) -> dict[str, Any]:
        answer = await api.get("/v1/operator/tenants", params=params, headers=OPERATOR)
        assert answer.status_code == 200, answer.text
        page: dict[str, Any] = answer.json()
        return page

    # When the operator lists the tenants whose name has the mark (in any case)
    page = await listed(name=mark.upper())

    # Then the three come newest first, each with what the list promises
    by_id = {item["id"]: item for item in page["items"]}
    assert list(by_id) == [str(bare), str(stopped), str(unlimited)]
    assert page["next_before"] is None
    assert by_id[str(unlimited)] | {"created_at": None} == {
        "id": str(unlimited),
        "name": f"Salon {mark} North",
        "active": True,
        "rate_per_second": None,
        "messaging_limit": 1000,
        "credits_available": 40 + 500 - 15,
        "created_at": None,
    }
    # A plan whose month ended counts as its new grant, as the next debit would find it.
    assert by_id[str(stopped)]["credits_available"] == 300 + 10
    assert by_id[str(stopped)]["active"] is False
    assert by_id[str(bare)]["credits_available"] is None

    # And filters by activity, and pages one at a time through all three
    assert [item["id"] for item in (await listed(name=mark, active="false"))["items"]] == [str(stopped)]
    assert {item["id"] for item in (await listed(name=mark, active="true"))["items"]} == {
        str(unlimited),
        str(bare),
    }
    assert (await listed(name=f"{mark}%"))["items"] == []
    seen, params = [], {"name": mark, "limit": 1}
    while True:
        page = await listed(**params)
        seen += [item["id"] for item in page["items"]]
        if page["next_before"] is None:
            break
        params = {**params, "before": page["next_before"], "before_id": page["next_before_id"]}
    assert seen == [str(bare), str(stopped), str(unlimited)]


async def test_a_tenant_key_is_refused_and_a_bad_filter_names_its_field(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    _, key = await new_tenant(pool)
    refused = await api.get("/v1/operator/tenants", headers={"Authorization": f"Bearer {key}"})
    assert refused.status_code == 401
    cases: list[tuple[dict[str, Any], str]] = [
        ({"active": "maybe"}, "active"),
        ({"name": "\x00"}, "name"),
        ({"before": "2026-01-01T00:00:00"}, "before"),
        ({"before_id": str(uuid.uuid4())}, "before_id"),
        ({"limit": 501}, "limit"),
    ]
    for params, field in cases:
        answer = await api.get("/v1/operator/tenants", params=params, headers=OPERATOR)
        assert answer.status_code == 422, (params, answer.text)
        assert [error["field"] for error in answer.json()["errors"]] == [field], params


async def test_the_operator_reads_one_tenant_with_its_settings_and_credits(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    # Given a tenant at 20/s with a messaging limit and credits (part reserved), and one without
    # a credit account
    mark = uuid.uuid4().hex[:10]
    funded = await _tenant(pool, f"Spa {mark}", rate_per_second=20, messaging_limit=250)
    await pool.execute(
        "INSERT INTO credit_accounts (tenant_id, plan_monthly, plan_balance, purchased_balance, reserved)"
        " VALUES ($1, 100, 40, 500, 15)",
        funded,
    )
    bare = await _tenant(pool, f"Barber {mark}", rate_per_second=None)

    # When the operator reads each, and a tenant that does not exist
    shown = await api.get(f"/v1/operator/tenants/{funded}", headers=OPERATOR)
    shown_bare = await api.get(f"/v1/operator/tenants/{bare}", headers=OPERATOR)
    missing = await api.get(f"/v1/operator/tenants/{uuid.uuid4()}", headers=OPERATOR)

    # Then the first comes with its settings and its balance
    assert shown.status_code == 200, shown.text
    body = shown.json()
    assert {key: body["tenant"][key] for key in ("id", "name", "rate_per_second", "messaging_limit")} == {
        "id": str(funded),
        "name": f"Spa {mark}",
        "rate_per_second": 20,
        "messaging_limit": 250,
    }
    assert body["tenant"]["status_callback_url"].endswith(f"/{funded}")
    assert (body["credits"]["plan_balance"], body["credits"]["purchased_balance"]) == (40, 500)
    assert (body["credits"]["reserved"], body["credits"]["available"]) == (15, 40 + 500 - 15)
    assert "twilio_auth_token" not in str(body)
    # And the second unlimited without credits; the unknown one is a 404
    assert shown_bare.status_code == 200, shown_bare.text
    assert shown_bare.json()["tenant"]["rate_per_second"] is None
    assert shown_bare.json()["credits"] is None
    assert missing.status_code == 404


async def test_one_tenant_is_the_operators_only_and_a_bad_id_names_its_field(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    tenant_id, key = await new_tenant(pool)
    own = await api.get(f"/v1/operator/tenants/{tenant_id}", headers={"Authorization": f"Bearer {key}"})
    assert own.status_code == 401
    bad = await api.get("/v1/operator/tenants/not-an-id", headers=OPERATOR)
    assert bad.status_code == 422
    assert [error["field"] for error in bad.json()["errors"]] == ["tenant_id"]

"""The campaign list's filters and keyset pages on the real database: every campaign once across
pages (ties on created_at included), filters that combine, another tenant's campaigns never
listed, and a bad value answered 422 naming its field before anything is read."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from services.segmenter import routes_campaigns
from tests.integration.booking.booking_api import new_tenant
from tests.security.segmenter_app import client, segmenter

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
async def api(pool: asyncpg.Pool) -> AsyncIterator[httpx.AsyncClient]:
    async with client(segmenter(pool, routes_campaigns.router)) as api:
        yield api


async def _campaign(
    pool: asyncpg.Pool, tenant_id: uuid.UUID, name: str, *, state: str, kind: str, created_at: datetime
) -> str:
    # Its snapshot and publication count as done: a segmenter on the same database leaves it be.
    campaign_id = uuid.uuid4()
    await pool.execute(
        "INSERT INTO campaigns (id, tenant_id, name, kind, audience, template, state, created_at,"
        " snapshot_completed_at, published_upto, scheduled_at)"
        " VALUES ($1, $2, $3, $4, '{}', '{\"body\": \"Hi\"}', $5, $6, now(), 9223372036854775807,"
        " CASE WHEN $5 = 'scheduled' THEN $6::timestamptz + interval '300 days' END)",
        campaign_id,
        tenant_id,
        name,
        kind,
        state,
        created_at,
    )
    return str(campaign_id)


async def _seeded(pool: asyncpg.Pool) -> tuple[str, dict[str, str], str]:
    """Tenant A's nine campaigns (three created at the very same instant) and its key; tenant B
    with a campaign named like A's, in the same state, created at the same instant."""
    tenant, key = await new_tenant(pool)
    other, _ = await new_tenant(pool)
    spec = [
        ("Spring offer", "running", "campaign", T0),
        ("spring reminder", "completed", "campaign", T0 + timedelta(hours=1)),
        ("Test of spring", "completed", "test", T0 + timedelta(hours=2)),
        ("Winter sale", "draft", "campaign", T0 + timedelta(hours=3)),
        ("Same time 1", "paused", "campaign", T0 + timedelta(hours=4)),
        ("Same time 2", "paused", "manual", T0 + timedelta(hours=4)),
        ("Same time 3", "cancelled", "campaign", T0 + timedelta(hours=4)),
        ("Autumn", "scheduled", "campaign", T0 + timedelta(days=1)),
        ("Old one", "failed", "campaign", T0 - timedelta(days=30)),
    ]
    ids = {
        name: await _campaign(pool, tenant, name, state=state, kind=kind, created_at=at)
        for name, state, kind, at in spec
    }
    await _campaign(pool, other, "Spring offer", state="running", kind="campaign", created_at=T0)
    return key, ids, str(other)


def _names(rows: list[dict[str, Any]]) -> list[str]:
    return [row["name"] for row in rows]


async def test_pages_hold_every_campaign_once_newest_first_and_no_other_tenants(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    # Given tenant A's nine campaigns, three created at the same instant, and tenant B's one
    key, ids, _ = await _seeded(pool)
    headers = {"X-API-Key": key}

    # When A pages through them two at a time with the last campaign's created_at and id
    seen: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 2}
    while True:
        page = (await api.get("/v1/campaigns", params=params, headers=headers)).json()
        seen += page
        if len(page) < 2:
            break
        params = {"limit": 2, "before": page[-1]["created_at"], "before_id": page[-1]["id"]}

    # Then each of A's campaigns comes once, newest first (ties by id), and none of B's
    assert sorted(row["id"] for row in seen) == sorted(ids.values())
    keys = [(row["created_at"], row["id"]) for row in seen]
    assert keys == sorted(keys, reverse=True)


async def test_filters_combine_and_match_names_without_case(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    # Given tenant A's campaigns and tenant B's "Spring offer"
    key, ids, _ = await _seeded(pool)
    headers = {"X-API-Key": key}

    async def names(**params: Any) -> list[str]:
        answer = await api.get("/v1/campaigns", params=params, headers=headers)
        assert answer.status_code == 200, answer.text
        return _names(answer.json())

    # When A filters by states, kind, name and creation time, alone and together
    # Then each answer holds exactly A's campaigns that match them all
    paused_or_scheduled = await names(state=["paused", "scheduled"])
    assert paused_or_scheduled[0] == "Autumn"
    assert sorted(paused_or_scheduled[1:]) == ["Same time 1", "Same time 2"]
    assert set(await names(state="completed")) == {"spring reminder", "Test of spring"}
    assert await names(kind="test") == ["Test of spring"]
    assert set(await names(kind=["test", "manual"])) == {"Test of spring", "Same time 2"}
    assert await names(name="SPRING") == ["Test of spring", "spring reminder", "Spring offer"]
    assert await names(name="spring", kind="campaign", state="completed") == ["spring reminder"]
    assert await names(name="%") == [] and await names(name="_") == []
    after, before = (T0 + timedelta(hours=1)).isoformat(), (T0 + timedelta(hours=4)).isoformat()
    assert await names(created_after=after, created_before=before) == [
        "Winter sale",
        "Test of spring",
        "spring reminder",
    ]
    assert await names(created_before=T0.isoformat()) == ["Old one"]
    assert len(await names()) == len(ids)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"state": "shipped"}, "state"),
        ({"state": ["running", "shipped"]}, "state"),
        ({"kind": "newsletter"}, "kind"),
        ({"name": "a\x00b"}, "name"),
        ({"name": ""}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"created_after": "yesterday"}, "created_after"),
        ({"created_after": "2026-03-01T12:00:00"}, "created_after"),
        ({"created_before": "99999-01-01T00:00:00Z"}, "created_before"),
        ({"before": "2026-03-01T12:00:00+00:00", "before_id": "not-a-uuid"}, "before_id"),
        ({"before_id": str(uuid.uuid4())}, "before_id"),
        ({"limit": 0}, "limit"),
        ({"limit": 201}, "limit"),
    ],
)
async def test_a_bad_filter_is_refused_naming_its_field(
    api: httpx.AsyncClient, pool: asyncpg.Pool, params: dict[str, Any], field: str
) -> None:
    _, key = await new_tenant(pool)
    answer = await api.get("/v1/campaigns", params=params, headers={"X-API-Key": key})
    assert answer.status_code == 422, answer.text
    fields = [error["field"] for error in answer.json()["errors"]]
    assert fields and all(name.split(".")[0] == field for name in fields), fields

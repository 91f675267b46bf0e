"""Preview over HTTP: counts, exclusions by reason, a masked sample, and bad input answered 422."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from audience_data import Appt, Dataset, api_client, api_key_for, seed

from services.segmenter import routes_audience
from services.segmenter.audience.model import Audience
from services.segmenter.snapshot import snapshot_chunk

NY = ZoneInfo("America/New_York")
AS_OF = datetime(2026, 3, 20, 12, tzinfo=NY)

DATA = Dataset(
    customers={
        "ann": "+1 415 555 0001",
        "ann_again": "(415) 555-0001",
        "bob": "+14155550002",
        "opted_out": "+14155550003",
        "no_phone": None,
        "bad_phone": "555",
        "idle": "+14155550004",
    },
    appointments=[
        Appt("a1", "ann", starts_at=AS_OF + timedelta(days=2), created_at=AS_OF - timedelta(days=3)),
        Appt("a2", "ann_again", starts_at=AS_OF + timedelta(days=1), created_at=AS_OF - timedelta(days=4)),
        Appt("b1", "bob", starts_at=AS_OF + timedelta(days=3), created_at=AS_OF - timedelta(days=1)),
        Appt("o1", "opted_out", starts_at=AS_OF + timedelta(days=3), created_at=AS_OF - timedelta(days=1)),
        Appt("n1", "no_phone", starts_at=AS_OF + timedelta(days=3), created_at=AS_OF - timedelta(days=1)),
        Appt("x1", "bad_phone", starts_at=AS_OF + timedelta(days=3), created_at=AS_OF - timedelta(days=1)),
        Appt("i1", "idle", starts_at=AS_OF - timedelta(days=300), created_at=AS_OF - timedelta(days=301)),
    ],
    suppressed=["+14155550003"],
)


async def test_preview_counts_recipients_and_exclusions_and_shows_a_masked_sample(pool: asyncpg.Pool) -> None:
    # Given customers sharing a number in two formats, an opted-out one and two without a valid phone
    tenant_id = await seed(pool, DATA)
    async with api_client(pool, await api_key_for(pool, tenant_id), routes_audience.router) as client:
        # When previewing who has an upcoming appointment at a fixed clock
        response = await client.post(
            "/v1/audiences/preview", json={"segment": "upcoming", "as_of": AS_OF.isoformat()}
        )

    # Then the number shared by Ann's two records counts once and every exclusion is counted by reason
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["total"] == 2
    assert body["matched_customers"] == 6
    assert body["excluded"] == {
        "suppressed": 1,
        "no_valid_phone": 2,
        "duplicate_phone": 1,
        "frequency_capped": 0,
    }
    # And the sample shows masked numbers with the next appointment of the record that wins the number
    assert [(s["name"], s["phone"], s["appointment_id"]) for s in body["sample"]] == [
        ("ann", "+141••••••01", "a1"),
        ("bob", "+141••••••02", "b1"),
    ]
    assert body["sample"][0]["reason"] == "next appointment 2026-03-22 12:00"
    assert body["provides_appointment"] is True


async def test_preview_counts_the_recipients_a_frequency_cap_holds_back(pool: asyncpg.Pool) -> None:
    # Given a tenant capped at 1 message per 7 days: Ann's number got one 2 days before the
    # preview's clock, Bob's one 8 days before and one 1 day before that failed unsent
    tenant_id = await seed(pool, DATA)
    await pool.execute(
        "UPDATE tenants SET frequency_cap_messages = 1, frequency_cap_days = 7 WHERE id = $1", tenant_id
    )
    campaign_id = uuid.uuid4()
    await pool.execute(
        "INSERT INTO campaigns (id, tenant_id, name, audience, template, state)"
        " VALUES ($1, $2, 'earlier', '{}', '{}', 'completed')",
        campaign_id,
        tenant_id,
    )
    failed = await pool.fetchval(
        "INSERT INTO recipients (tenant_id, campaign_id, phone_e164, state)"
        " VALUES ($1, $2, '+14155550002', 'failed') RETURNING id",
        tenant_id,
        campaign_id,
    )
    await pool.execute(
        "INSERT INTO contact_frequency (tenant_id, phone_e164, recipient_ids, claimed_at) VALUES"
        " ($1, '+14155550001', ARRAY[9000000000001::bigint], ARRAY[$2::timestamptz]),"
        " ($1, '+14155550002', ARRAY[9000000000002::bigint, $4::bigint],"
        "  ARRAY[$3::timestamptz, $5::timestamptz])",
        tenant_id,
        AS_OF - timedelta(days=2),
        AS_OF - timedelta(days=8),
        failed,
        AS_OF - timedelta(days=1),
    )

    # When previewing at that clock
    async with api_client(pool, await api_key_for(pool, tenant_id), routes_audience.router) as client:
        response = await client.post(
            "/v1/audiences/preview", json={"segment": "upcoming", "as_of": AS_OF.isoformat()}
        )

    # Then Ann's number counts as capped among the 2 recipients, and only Bob's would be sent
    body = response.json()
    assert (body["total"], body["excluded"]["frequency_capped"], body["sendable"]) == (2, 1, 1)


async def test_preview_total_equals_the_number_of_recipients_the_snapshot_inserts(pool: asyncpg.Pool) -> None:
    # Given a tenant's booking data and a campaign row to snapshot into
    tenant_id = await seed(pool, DATA)
    campaign_id = uuid.uuid4()
    await pool.execute(
        "INSERT INTO campaigns (id, tenant_id, name, audience, template) VALUES ($1, $2, 'c', '{}', '{}')",
        campaign_id,
        tenant_id,
    )
    audience = Audience(segment="all_customers")
    async with api_client(pool, await api_key_for(pool, tenant_id), routes_audience.router) as client:
        preview = (await client.post("/v1/audiences/preview", json={"as_of": AS_OF.isoformat()})).json()

    # When the snapshot inserts the same audience in two phone ranges at the same clock
    async with pool.acquire() as conn:
        inserted = 0
        for after, upto in ((None, "+14155550002"), ("+14155550002", None)):
            inserted += len(
                await snapshot_chunk(
                    conn,
                    tenant_id=tenant_id,
                    campaign_id=campaign_id,
                    audience=audience,
                    now=AS_OF,
                    tz="America/New_York",
                    phone_after=after,
                    phone_upto=upto,
                )
            )

    # Then the preview's total is the number of recipients
    assert inserted == preview["total"] == 3


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"segment": "everyone"}, "segment"),
        ({"segment": "recent_bookers", "days": -7}, "days"),
        ({"segment": "lapsed", "days": 1_000_000}, "days"),
        ({"segment": "repeat", "days": 30}, "days"),
        ({"service_ids": ["no-such-service"]}, "service_ids"),
        ({"location_ids": ["cut"]}, "location_ids"),
        ({"statuses": ["teleported"]}, "statuses"),
        ({"as_of": "yesterday"}, "as_of"),
        ({"as_of": "2026-03-20T12:00:00"}, "as_of"),
        ({"segment": "upcoming", "window": 7}, "window"),
    ],
)
async def test_bad_preview_input_is_refused_naming_the_field(
    pool: asyncpg.Pool, body: dict[str, Any], field: str
) -> None:
    # Given a tenant with services "cut" and "color" and locations "north" and "south"
    tenant_id = await seed(pool, Dataset(customers={}))
    async with api_client(pool, await api_key_for(pool, tenant_id), routes_audience.router) as client:
        # When previewing a bad audience
        response = await client.post("/v1/audiences/preview", json=body)

    # Then the answer is 422 naming the field
    assert response.status_code == 422
    assert [error["field"] for error in response.json()["errors"]] == [field]


async def test_another_tenants_services_are_unknown(pool: asyncpg.Pool) -> None:
    # Given two tenants, the first with a service "cut"
    await seed(pool, Dataset(customers={}))
    other = await seed(pool, Dataset(customers={}, services=[]))
    async with api_client(pool, await api_key_for(pool, other), routes_audience.router) as client:
        # When the second tenant filters by "cut"
        response = await client.post("/v1/audiences/preview", json={"service_ids": ["cut"]})

    # Then it is an unknown service
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "service_ids"


async def test_preview_without_an_api_key_is_refused(pool: asyncpg.Pool) -> None:
    async with api_client(pool, "wce_wrong", routes_audience.router) as client:
        response = await client.post("/v1/audiences/preview", json={})
    assert response.status_code == 401

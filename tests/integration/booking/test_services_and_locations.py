"""A tenant's services and locations as the booking data names them (the audience filters'
choices), and the names of the appointment a preview's sample recipient is messaged about."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from services.segmenter import routes_audience, routes_booking, routes_catalogue
from tests.integration.booking.booking_api import new_tenant
from tests.security.segmenter_app import client, segmenter


@pytest.fixture
async def api(pool: asyncpg.Pool) -> AsyncIterator[httpx.AsyncClient]:
    app = segmenter(pool, routes_booking.router, routes_audience.router, routes_catalogue.router)
    async with client(app) as api:
        yield api


async def _upsert(api: httpx.AsyncClient, key: str, what: str, rows: list[dict[str, Any]]) -> None:
    answer = await api.post(f"/v1/booking/{what}:upsert", json={"rows": rows}, headers={"X-API-Key": key})
    assert answer.status_code == 200, answer.text


async def _all(api: httpx.AsyncClient, key: str, path: str, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    while True:
        answer = await api.get(path, params=params, headers={"X-API-Key": key})
        assert answer.status_code == 200, answer.text
        page = answer.json()
        items += page["items"]
        if page["next_after"] is None:
            return items
        params = {**params, "after": page["next_after"]}


async def test_each_tenant_lists_its_own_services_and_locations_by_page_and_name(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    # Given tenant A's five services and two locations, and tenant B's service under one of A's ids
    _, a = await new_tenant(pool)
    _, b = await new_tenant(pool)
    services = [
        {"external_id": f"svc-{i}", "name": name}
        for i, name in enumerate(["Haircut", "Colour", "Beard trim", "Hair wash", "Manicure"])
    ]
    await _upsert(api, a, "services", services)
    await _upsert(
        api,
        a,
        "locations",
        [
            {"external_id": "loc-1", "name": "Downtown", "address": "1 Main St"},
            {"external_id": "loc-2", "name": "Harbour"},
        ],
    )
    await _upsert(api, b, "services", [{"external_id": "svc-0", "name": "B's secret service"}])

    # When A lists them two at a time, and by part of a name
    listed = await _all(api, a, "/v1/services", limit=2)
    hair = await _all(api, a, "/v1/services", name="HAIR")
    locations = await _all(api, a, "/v1/locations")

    # Then A sees each of its own once, in id order, with its name; never B's
    assert listed == sorted(services, key=lambda s: s["external_id"])
    assert [s["name"] for s in hair] == ["Haircut", "Hair wash"]
    assert locations == [
        {"external_id": "loc-1", "name": "Downtown", "address": "1 Main St"},
        {"external_id": "loc-2", "name": "Harbour", "address": None},
    ]
    assert await _all(api, b, "/v1/services") == [{"external_id": "svc-0", "name": "B's secret service"}]
    assert await _all(api, b, "/v1/locations") == []
    assert await _all(api, a, "/v1/services", name="%") == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"after": "a\x00"}, "after"),
        ({"name": ""}, "name"),
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
    ],
)
async def test_a_bad_parameter_names_its_field(
    api: httpx.AsyncClient, pool: asyncpg.Pool, params: dict[str, Any], field: str
) -> None:
    _, key = await new_tenant(pool)
    for path in ("/v1/services", "/v1/locations"):
        answer = await api.get(path, params=params, headers={"X-API-Key": key})
        assert answer.status_code == 422, answer.text
        assert [error["field"] for error in answer.json()["errors"]] == [field]


async def test_the_preview_sample_names_the_service_location_and_staff_of_the_appointment(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    # Given customers with an upcoming appointment: one with a service, location and staff
    # member, one with none of them; and a customer whose only appointment is long past
    _, key = await new_tenant(pool)
    await _upsert(api, key, "services", [{"external_id": "s1", "name": "Haircut"}])
    await _upsert(api, key, "locations", [{"external_id": "l1", "name": "Downtown", "address": "1 Main St"}])
    await _upsert(api, key, "staff", [{"external_id": "p1", "name": "Maria"}])
    await _upsert(
        api,
        key,
        "customers",
        [
            {"external_id": "c1", "first_name": "Ann", "phone": "+14155550101"},
            {"external_id": "c2", "first_name": "Bob", "phone": "+14155550102"},
            {"external_id": "c3", "first_name": "Cy", "phone": "+14155550103"},
        ],
    )
    now = datetime.now(UTC)
    soon, past = (now + timedelta(days=2)).isoformat(), (now - timedelta(days=200)).isoformat()
    await _upsert(api, key, "appointments", [
        {"external_id": "a1", "customer_id": "c1", "service_id": "s1", "location_id": "l1", "staff_id": "p1",
         "starts_at": soon, "created_at": now.isoformat(), "status": "approved"},
        {"external_id": "a2", "customer_id": "c2", "starts_at": soon, "created_at": now.isoformat(),
         "status": "approved"},
        {"external_id": "a3", "customer_id": "c3", "service_id": "s1", "starts_at": past,
         "created_at": past, "status": "approved"},
    ])  # fmt: skip

    # When the tenant previews its upcoming appointments, and all its customers
    upcoming = await api.post(
        "/v1/audiences/preview", json={"segment": "upcoming"}, headers={"X-API-Key": key}
    )
    everyone = await api.post(
        "/v1/audiences/preview", json={"segment": "all_customers"}, headers={"X-API-Key": key}
    )

    # Then each upcoming sample names what its appointment has, and nothing it has not
    assert upcoming.status_code == 200, upcoming.text
    sample = {row["name"]: row for row in upcoming.json()["sample"]}
    assert set(sample) == {"Ann", "Bob"}
    assert sample["Ann"]["appointment_id"] == "a1"
    assert (sample["Ann"]["service_name"], sample["Ann"]["location_name"]) == ("Haircut", "Downtown")
    assert (sample["Ann"]["location_address"], sample["Ann"]["staff_name"]) == ("1 Main St", "Maria")
    assert sample["Ann"]["appointment_starts_at"] is not None
    assert [sample["Bob"][k] for k in ("service_name", "location_name", "staff_name")] == [None, None, None]
    # And a segment whose messages refer to no appointment names none
    assert everyone.status_code == 200, everyone.text
    assert all(row["service_name"] is None for row in everyone.json()["sample"])

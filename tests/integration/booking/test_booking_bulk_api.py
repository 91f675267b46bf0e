"""Bulk booking API: idempotent upserts by external id, all-or-nothing batches, 422 naming the row."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from booking_api import client, new_tenant

AS_OF = "2026-03-20T12:00:00-04:00"


def appointment(ext: str, customer: str, **extra: Any) -> dict[str, Any]:
    return {
        "external_id": ext,
        "customer_id": customer,
        "starts_at": "2026-03-25T10:00:00-04:00",
        "created_at": "2026-03-18T09:00:00-04:00",
        "status": "approved",
        **extra,
    }


async def test_customers_are_upserted_by_external_id_with_phones_in_e164(pool: asyncpg.Pool) -> None:
    # Given a tenant whose default region is Great Britain
    tenant_id, key = await new_tenant(pool, region="GB")
    rows = [
        {"external_id": "c1", "first_name": "Ann", "phone": "07911 123456"},
        {"external_id": "c2", "first_name": "Bob", "phone": "+1 (415) 555-0002"},
        {"external_id": "c3", "first_name": "Cy"},
    ]
    async with client(pool, key) as api:
        # When the same batch is sent twice
        first = await api.post("/v1/booking/customers:upsert", json={"rows": rows})
        second = await api.post("/v1/booking/customers:upsert", json={"rows": rows})

    # Then the second changes nothing but updates, and phones are stored in E.164
    assert first.json() == {"inserted": 3, "updated": 0, "flagged": []}
    assert second.json() == {"inserted": 0, "updated": 3, "flagged": []}
    stored = await pool.fetch(
        "SELECT external_id, phone_e164 FROM customers WHERE tenant_id = $1 ORDER BY external_id", tenant_id
    )
    assert [tuple(r) for r in stored] == [("c1", "+447911123456"), ("c2", "+14155550002"), ("c3", None)]


async def test_an_invalid_phone_rejects_the_whole_batch_naming_the_row(pool: asyncpg.Pool) -> None:
    # Given a batch whose second row has a phone that is no number
    tenant_id, key = await new_tenant(pool)
    rows = [{"external_id": "ok", "phone": "+14155550001"}, {"external_id": "bad", "phone": "call me"}]
    async with client(pool, key) as api:
        # When it is upserted
        response = await api.post("/v1/booking/customers:upsert", json={"rows": rows})

    # Then it is refused naming row 1's phone, and nothing was written
    assert response.status_code == 422
    assert [(e["field"], e["row"]) for e in response.json()["errors"]] == [("rows.1.phone", 1)]
    assert await pool.fetchval("SELECT count(*) FROM customers WHERE tenant_id = $1", tenant_id) == 0


async def test_invalid_phones_can_be_kept_and_flagged(pool: asyncpg.Pool) -> None:
    # Given a batch with an unparseable phone, sent with invalid_phones=flag
    tenant_id, key = await new_tenant(pool)
    rows = [{"external_id": "ok", "phone": "+14155550001"}, {"external_id": "odd", "phone": "12"}]
    async with client(pool, key) as api:
        response = await api.post(
            "/v1/booking/customers:upsert", json={"rows": rows, "invalid_phones": "flag"}
        )
        preview = await api.post("/v1/audiences/preview", json={"as_of": AS_OF})

    # Then both customers are kept, the odd one flagged, and the preview counts it as no valid phone
    assert response.status_code == 200
    assert [(f["row"], f["field"]) for f in response.json()["flagged"]] == [(1, "phone")]
    assert (
        await pool.fetchval(
            "SELECT phone_raw FROM customers WHERE tenant_id = $1 AND phone_e164 IS NULL", tenant_id
        )
        == "12"
    )
    assert preview.json()["total"] == 1
    assert preview.json()["excluded"]["no_valid_phone"] == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"rows": [{"external_id": "c1", "nickname": "x"}]}, "rows.0.nickname"),
        ({"rows": [{"first_name": "no id"}]}, "rows.0.external_id"),
        ({"rows": []}, "rows"),
        ({"rows": [{"external_id": f"c{i}"} for i in range(10_001)]}, "rows"),
        ({"rows": [{"external_id": "c1"}], "invalid_phones": "ignore"}, "invalid_phones"),
        ({"rows": [{"external_id": "c1"}, {"external_id": "c1"}]}, "rows.1.external_id"),
    ],
)
async def test_malformed_customer_batches_are_refused_naming_the_field(
    pool: asyncpg.Pool, body: dict[str, Any], field: str
) -> None:
    _, key = await new_tenant(pool)
    async with client(pool, key) as api:
        response = await api.post("/v1/booking/customers:upsert", json=body)
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == [field]


async def test_malformed_json_is_refused(pool: asyncpg.Pool) -> None:
    _, key = await new_tenant(pool)
    async with client(pool, key) as api:
        response = await api.post(
            "/v1/booking/customers:upsert",
            content=b'{"rows": [',
            headers={"Content-Type": "application/json"},
        )
    assert response.status_code == 422


async def test_appointments_must_reference_known_customers_services_and_statuses(pool: asyncpg.Pool) -> None:
    # Given a tenant with one customer and one service
    tenant_id, key = await new_tenant(pool)
    async with client(pool, key) as api:
        await api.post("/v1/booking/customers:upsert", json={"rows": [{"external_id": "c1"}]})
        await api.post("/v1/booking/services:upsert", json={"rows": [{"external_id": "s1", "name": "Cut"}]})

        # When appointments refer to an unknown customer, service and status
        response = await api.post(
            "/v1/booking/appointments:upsert",
            json={
                "rows": [
                    appointment("a1", "c1", service_id="s1"),
                    appointment("a2", "nobody"),
                    appointment("a3", "c1", service_id="s9", status="teleported"),
                ]
            },
        )

    # Then each bad reference is named with its row and nothing was written
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == [
        "rows.1.customer_id",
        "rows.2.service_id",
        "rows.2.status",
    ]
    assert await pool.fetchval("SELECT count(*) FROM appointments WHERE tenant_id = $1", tenant_id) == 0


async def test_an_appointment_without_a_time_zone_is_refused(pool: asyncpg.Pool) -> None:
    _, key = await new_tenant(pool)
    async with client(pool, key) as api:
        await api.post("/v1/booking/customers:upsert", json={"rows": [{"external_id": "c1"}]})
        response = await api.post(
            "/v1/booking/appointments:upsert",
            json={"rows": [appointment("a1", "c1", starts_at="2026-03-25T10:00:00")]},
        )
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["rows.0.starts_at"]


async def test_the_time_an_appointment_got_its_status_is_kept_until_the_status_changes(
    pool: asyncpg.Pool,
) -> None:
    # Given an approved appointment whose status was given at 09:00
    tenant_id, key = await new_tenant(pool)
    async with client(pool, key) as api:
        await api.post("/v1/booking/customers:upsert", json={"rows": [{"external_id": "c1"}]})
        await api.post(
            "/v1/booking/appointments:upsert",
            json={"rows": [appointment("a1", "c1", status_changed_at="2026-03-18T09:00:00-04:00")]},
        )
        # When it is re-sent unchanged without status_changed_at
        await api.post("/v1/booking/appointments:upsert", json={"rows": [appointment("a1", "c1")]})
        kept = await pool.fetchval(
            "SELECT status_changed_at FROM appointments WHERE tenant_id = $1", tenant_id
        )
        # And then cancelled, with only updated_at from the source
        await api.post(
            "/v1/booking/appointments:upsert",
            json={
                "rows": [appointment("a1", "c1", status="canceled", updated_at="2026-03-19T15:30:00-04:00")]
            },
        )
        changed = await pool.fetchval(
            "SELECT status_changed_at FROM appointments WHERE tenant_id = $1", tenant_id
        )

    # Then the first time is kept, and the change takes the source's updated_at
    assert kept.isoformat() == "2026-03-18T13:00:00+00:00"
    assert changed.isoformat() == "2026-03-19T19:30:00+00:00"


async def test_custom_statuses_say_whether_they_count_as_cancelled(pool: asyncpg.Pool) -> None:
    # Given a tenant defining a cancelled-like and an ordinary custom status
    _, key = await new_tenant(pool)
    async with client(pool, key) as api:
        defined = await api.post(
            "/v1/booking/statuses:upsert",
            json={
                "statuses": [
                    {"name": "no_show", "counts_as_cancelled": True},
                    {"name": "rescheduled", "counts_as_cancelled": False},
                ]
            },
        )
        builtin = await api.post(
            "/v1/booking/statuses:upsert",
            json={"statuses": [{"name": "approved", "counts_as_cancelled": True}]},
        )
        listed = await api.get("/v1/booking/statuses")
        await api.post(
            "/v1/booking/customers:upsert", json={"rows": [{"external_id": "c1", "phone": "+14155550001"}]}
        )
        await api.post(
            "/v1/booking/appointments:upsert",
            json={
                "rows": [
                    appointment("a1", "c1", status="no_show", status_changed_at="2026-03-19T10:00:00-04:00")
                ]
            },
        )
        cancelled = await api.post(
            "/v1/audiences/preview", json={"segment": "cancelled_recent", "as_of": AS_OF}
        )

    # Then they are listed beside the built-in ones, built-in names cannot be redefined,
    # and an appointment with the cancelled-like one is a recent cancellation
    assert defined.json()["inserted"] == 2
    assert builtin.status_code == 422
    assert [(s["name"], s["counts_as_cancelled"]) for s in listed.json()] == [
        ("approved", False),
        ("pending", False),
        ("canceled", True),
        ("rejected", True),
        ("no_show", True),
        ("rescheduled", False),
    ]
    assert cancelled.json()["total"] == 1


async def test_deleting_a_customer_deletes_their_appointments_and_reports_unknown_ids(
    pool: asyncpg.Pool,
) -> None:
    # Given a customer with two appointments
    tenant_id, key = await new_tenant(pool)
    async with client(pool, key) as api:
        await api.post(
            "/v1/booking/customers:upsert", json={"rows": [{"external_id": "c1", "phone": "+14155550001"}]}
        )
        await api.post(
            "/v1/booking/appointments:upsert",
            json={"rows": [appointment("a1", "c1"), appointment("a2", "c1")]},
        )
        repeat = await api.post(
            "/v1/audiences/preview", json={"segment": "repeat", "min_count": 2, "as_of": AS_OF}
        )
        # When one appointment is deleted, then the customer and an id that never existed
        await api.post("/v1/booking/appointments:delete", json={"external_ids": ["a2"]})
        after_one = await api.post(
            "/v1/audiences/preview", json={"segment": "repeat", "min_count": 2, "as_of": AS_OF}
        )
        deleted = await api.post("/v1/booking/customers:delete", json={"external_ids": ["c1", "ghost"]})

    # Then audiences follow each change and the unknown id is reported, not refused
    assert (repeat.json()["total"], after_one.json()["total"]) == (1, 0)
    assert deleted.json() == {"deleted": 1, "not_found": ["ghost"]}
    assert await pool.fetchval("SELECT count(*) FROM appointments WHERE tenant_id = $1", tenant_id) == 0


async def test_a_tenant_cannot_touch_another_tenants_booking_data(pool: asyncpg.Pool) -> None:
    # Given a customer of tenant A
    tenant_a, key_a = await new_tenant(pool)
    _, key_b = await new_tenant(pool)
    async with client(pool, key_a) as api_a, client(pool, key_b) as api_b:
        await api_a.post("/v1/booking/customers:upsert", json={"rows": [{"external_id": "c1"}]})

        # When tenant B books for that customer id and deletes it
        booked = await api_b.post("/v1/booking/appointments:upsert", json={"rows": [appointment("a1", "c1")]})
        deleted = await api_b.post("/v1/booking/customers:delete", json={"external_ids": ["c1"]})

    # Then for B the customer does not exist, and A's customer is untouched
    assert booked.status_code == 422
    assert deleted.json() == {"deleted": 0, "not_found": ["c1"]}
    assert await pool.fetchval("SELECT count(*) FROM customers WHERE tenant_id = $1", tenant_a) == 1


async def test_locations_and_staff_are_upserted_and_deleted_by_external_id(pool: asyncpg.Pool) -> None:
    tenant_id, key = await new_tenant(pool)
    async with client(pool, key) as api:
        loc = await api.post(
            "/v1/booking/locations:upsert",
            json={"rows": [{"external_id": "l1", "name": "North", "address": "1 Main"}]},
        )
        staff = await api.post(
            "/v1/booking/staff:upsert", json={"rows": [{"external_id": "s1", "name": "Sam"}]}
        )
        gone = await api.post("/v1/booking/staff:delete", json={"external_ids": ["s1"]})
    assert loc.json()["inserted"] == staff.json()["inserted"] == gone.json()["deleted"] == 1
    assert await pool.fetchval("SELECT address FROM locations WHERE tenant_id = $1", tenant_id) == "1 Main"


async def test_counts_follow_numbers_becoming_shared_and_unshared(pool: asyncpg.Pool) -> None:
    # Given two customers with different numbers
    _, key = await new_tenant(pool)
    rows = [{"external_id": "c1", "phone": "+14155550001"}, {"external_id": "c2", "phone": "+14155550002"}]
    async with client(pool, key) as api:
        await api.post("/v1/booking/customers:upsert", json={"rows": rows})
        totals = [(await api.post("/v1/audiences/preview", json={})).json()["total"]]
        # When the second takes the first's number, then loses its phone, then takes it again and is deleted
        for change in (
            {"external_id": "c2", "phone": "(415) 555-0001"},
            {"external_id": "c2"},
            {"external_id": "c2", "phone": "+14155550001"},
        ):
            await api.post("/v1/booking/customers:upsert", json={"rows": [change]})
            totals.append((await api.post("/v1/audiences/preview", json={})).json()["total"])
        await api.post("/v1/booking/customers:delete", json={"external_ids": ["c1"]})
        totals.append((await api.post("/v1/audiences/preview", json={})).json()["total"])

    # Then every preview counts one recipient per distinct number
    assert totals == [2, 1, 1, 1, 1]

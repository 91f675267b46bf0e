"""A tenant's reads: recipient logs with filters and keyset pages, CSV, progress, event log."""

from __future__ import annotations

import csv
import io
import uuid

import asyncpg
import httpx

from tests.integration.tracker.helpers import (
    RunningTracker,
    SeededTenant,
    eventually,
    seed_campaign,
    seed_recipients,
    seed_tenant,
    status_params,
)


async def _campaign_with_outcomes(pool: asyncpg.Pool, tenant: SeededTenant) -> uuid.UUID:
    """30 recipients: 0-9 delivered, 10-14 failed with 63016, 15-19 failed with 21211, 20-29 pending."""
    campaign_id = await seed_campaign(pool, tenant.id)
    recipients = await seed_recipients(pool, tenant.id, campaign_id, 20, start=500)
    await seed_recipients(pool, tenant.id, campaign_id, 10, state="pending", with_sid=False, start=520)
    ids = [r.id for r in recipients]
    await pool.execute(
        "UPDATE recipients SET state = 'delivered', delivered_at = now() WHERE id = ANY($1)", ids[:10]
    )
    await pool.execute(
        "UPDATE recipients SET state = 'failed', error_code = 63016, error_message = '=HYPERLINK(\"x\")'"
        " WHERE id = ANY($1)",
        ids[10:15],
    )
    await pool.execute(
        "UPDATE recipients SET state = 'failed', error_code = 21211, error_message = 'invalid To'"
        " WHERE id = ANY($1)",
        ids[15:20],
    )
    return campaign_id


async def test_logs_filter_by_state_error_code_and_phone_and_page_by_id(
    tracker: RunningTracker, pool: asyncpg.Pool
) -> None:
    # Given a campaign with delivered, failed and pending recipients
    tenant = await seed_tenant(pool)
    campaign_id = await _campaign_with_outcomes(pool, tenant)
    base = f"{tracker.url}/v1/campaigns/{campaign_id}/recipients"

    async with httpx.AsyncClient(timeout=10, headers=tenant.headers) as client:
        # When the tenant pages through all of them ten at a time
        pages, after = [], 0
        while True:
            page = (await client.get(base, params={"limit": 10, "after": after})).json()
            pages.append(page["items"])
            if page["next_after"] is None:
                break
            after = page["next_after"]
        failed = (await client.get(base, params={"state": "failed"})).json()["items"]
        by_code = (await client.get(base, params={"error_code": 63016})).json()["items"]
        both = (await client.get(base, params={"state": "failed,delivered"})).json()["items"]
        by_phone = (await client.get(base, params={"phone": "(415) 300-0505"})).json()["items"]
        bad_state = await client.get(base, params={"state": "shipped"})
        bad_phone = await client.get(base, params={"phone": "call me"})

    # Then the pages hold every recipient once, in id order, with the row fields
    rows = [item for page in pages for item in page]
    assert len(rows) == 30
    assert [r["id"] for r in rows] == sorted(r["id"] for r in rows)
    assert set(rows[0]) == {
        "id", "name", "phone", "state", "skip_reason", "attempts", "error_code", "error_message",
        "twilio_sid", "sent_at", "delivered_at", "read_at", "failed_at", "replies",
    }  # fmt: skip
    assert rows[0]["name"] == "First500 Last500"
    assert rows[0]["twilio_sid"].startswith("SM")
    assert rows[0]["delivered_at"] is not None

    # And the filters narrow them
    assert len(failed) == 10
    assert {r["error_code"] for r in by_code} == {63016}
    assert len(by_code) == 5
    assert len(both) == 20
    assert [r["phone"] for r in by_phone] == ["+14153000505"]
    assert bad_state.status_code == 422
    assert bad_phone.status_code == 422


async def test_another_tenants_key_gets_404_for_every_read(
    tracker: RunningTracker, pool: asyncpg.Pool
) -> None:
    tenant = await seed_tenant(pool)
    other = await seed_tenant(pool)
    campaign_id = await _campaign_with_outcomes(pool, tenant)
    recipient_id = await pool.fetchval("SELECT min(id) FROM recipients WHERE campaign_id = $1", campaign_id)
    paths = [
        "recipients",
        "recipients.csv",
        "progress",
        "progress/stream",
        "events",
        f"recipients/{recipient_id}/events",
        "replies",
        f"recipients/{recipient_id}/replies",
    ]
    async with httpx.AsyncClient(timeout=10, headers=other.headers) as client:
        answers = [await client.get(f"{tracker.url}/v1/campaigns/{campaign_id}/{path}") for path in paths]
    async with httpx.AsyncClient(timeout=10) as client:
        anonymous = await client.get(f"{tracker.url}/v1/campaigns/{campaign_id}/recipients")
    assert [a.status_code for a in answers] == [404] * len(paths)
    assert anonymous.status_code == 401


async def test_csv_has_the_columns_neutralised_formulas_and_an_optional_bom(
    tracker: RunningTracker, pool: asyncpg.Pool
) -> None:
    # Given a campaign where a name and an error message look like formulas
    tenant = await seed_tenant(pool)
    campaign_id = await _campaign_with_outcomes(pool, tenant)
    await pool.execute(
        "UPDATE customers SET first_name = '@SUM(1+1)', last_name = ''"
        " WHERE tenant_id = $1 AND external_id LIKE '%-500'",
        tenant.id,
    )
    url = f"{tracker.url}/v1/campaigns/{campaign_id}/recipients.csv"

    # When the tenant exports it for Excel, and filtered without the BOM
    async with httpx.AsyncClient(timeout=30, headers=tenant.headers) as client:
        excel = await client.get(url, params={"bom": 1})
        failed = await client.get(url, params={"state": "failed"})

    # Then it opens with the right columns, every row, and no cell can run as a formula
    assert excel.status_code == 200
    assert excel.headers["content-type"].startswith("text/csv")
    assert "attachment" in excel.headers["content-disposition"]
    assert excel.content.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(excel.content.decode("utf-8-sig"))))
    assert rows[0] == [
        "recipient_id", "name", "phone", "state", "skip_reason", "attempts", "error_code", "error_message",
        "twilio_sid", "sent_at", "delivered_at", "read_at", "failed_at", "replies",
    ]  # fmt: skip
    assert len(rows) == 31
    assert rows[1][1] == "'@SUM(1+1)"
    assert rows[1][2] == "+14153000500"
    assert {row[7] for row in rows[1:] if row[6] == "63016"} == {'\'=HYPERLINK("x")'}
    assert all(not cell.startswith(("=", "@")) for row in rows for cell in row)
    assert not failed.content.startswith("\ufeff".encode())
    assert len(list(csv.reader(io.StringIO(failed.text)))) == 11


async def test_progress_counts_states_and_reports_rate_eta_and_campaign_state(
    tracker: RunningTracker, pool: asyncpg.Pool
) -> None:
    # Given a running campaign: 20 sent just now (so 2/s over the last 10 s), 10 still pending
    tenant = await seed_tenant(pool)
    campaign_id = await seed_campaign(pool, tenant.id)
    await seed_recipients(pool, tenant.id, campaign_id, 20, start=600)
    await seed_recipients(pool, tenant.id, campaign_id, 10, state="pending", with_sid=False, start=620)

    # When the tenant asks for its progress
    async with httpx.AsyncClient(timeout=10, headers=tenant.headers) as client:
        progress = (await client.get(f"{tracker.url}/v1/campaigns/{campaign_id}/progress")).json()

    # Then it has the counts, the rate over the last 10 s, the ETA and the state
    assert progress["counts"]["sent"] == 20
    assert progress["counts"]["pending"] == 10
    assert progress["counts"]["read"] == 0
    assert progress["total"] == 30
    assert progress["remaining"] == 10
    assert progress["rate_per_s"] == 2.0
    assert progress["eta_s"] == 5.0
    assert progress["state"] == "running"
    assert progress["pause_reason"] is None


async def test_the_event_log_lists_transitions_per_campaign_and_per_recipient(
    tracker: RunningTracker, pool: asyncpg.Pool
) -> None:
    # Given two messages delivered and one read through callbacks
    tenant = await seed_tenant(pool)
    campaign_id = await seed_campaign(pool, tenant.id)
    first, second = await seed_recipients(pool, tenant.id, campaign_id, 2, start=700)
    assert first.sid and second.sid
    async with httpx.AsyncClient(timeout=10) as client:
        for sid in (first.sid, second.sid):
            await tracker.post_status(client, tenant, status_params(sid, "delivered"))

        async def both_delivered() -> bool:
            count = await pool.fetchval(
                "SELECT count(*) FROM message_events WHERE campaign_id = $1 AND to_state = 'delivered'",
                campaign_id,
            )
            return bool(count == 2)

        assert await eventually(both_delivered)
        await tracker.post_status(client, tenant, status_params(first.sid, "read"))

        async def first_read() -> bool:
            return await pool.fetchval("SELECT state FROM recipients WHERE id = $1", first.id) == "read"

        assert await eventually(first_read)

    # When the tenant reads the campaign's log a page at a time, and the first recipient's
    async with httpx.AsyncClient(timeout=10, headers=tenant.headers) as client:
        base = f"{tracker.url}/v1/campaigns/{campaign_id}"
        page = (await client.get(f"{base}/events", params={"limit": 2})).json()
        rest = (await client.get(f"{base}/events", params={"after": page["next_after"]})).json()
        history = (await client.get(f"{base}/recipients/{first.id}/events")).json()["items"]

    # Then every transition is there once with its time and source
    events = page["items"] + rest["items"]
    assert [(e["recipient_id"], e["to_state"]) for e in events] == [
        (first.id, "delivered"),
        (second.id, "delivered"),
        (first.id, "read"),
    ]
    assert rest["next_after"] is None
    assert [(e["from_state"], e["to_state"], e["source"]) for e in history] == [
        ("sent", "delivered", "callback"),
        ("delivered", "read", "callback"),
    ]
    assert all(e["at"] for e in history)


# What a progress answer holds that does not move between two reads of a still campaign.
STILL = ("campaign_id", "state", "pause_reason", "counts", "total", "done", "remaining", "percent")


async def test_progress_of_several_campaigns_is_each_ones_progress_and_only_the_tenants(
    tracker: RunningTracker, pool: asyncpg.Pool
) -> None:
    # Given tenant A's campaign with outcomes and its paused one, and tenant B's campaign
    tenant, other = await seed_tenant(pool), await seed_tenant(pool)
    with_outcomes = await _campaign_with_outcomes(pool, tenant)
    paused = await seed_campaign(pool, tenant.id, state="paused")
    await seed_recipients(pool, tenant.id, paused, 3, state="pending", with_sid=False, start=600)
    others = await seed_campaign(pool, other.id)
    await seed_recipients(pool, other.id, others, 2, start=700)
    nowhere = uuid.uuid4()
    url = f"{tracker.url}/v1/campaigns/progress"

    async with httpx.AsyncClient(timeout=10, headers=tenant.headers) as client:
        # When A asks for its two, B's and one that does not exist, in one request (ids repeated
        # and separated by commas, one given twice)
        ids = [f"{paused},{others}", str(with_outcomes), f"{nowhere},{paused}"]
        batch = await client.get(url, params={"ids": ids})
        singles = [
            (await client.get(f"{tracker.url}/v1/campaigns/{cid}/progress")).json()
            for cid in (paused, with_outcomes)
        ]
    async with httpx.AsyncClient(timeout=10, headers=other.headers) as client:
        # And B asks for A's campaign, and for one that does not exist
        b_for_a = (await client.get(url, params={"ids": str(with_outcomes)})).json()
        b_for_nothing = (await client.get(url, params={"ids": str(nowhere)})).json()

    # Then A gets the single progress of each of its campaigns, in the order asked, and B's
    # campaign is as missing as one that does not exist
    assert batch.status_code == 200, batch.text
    answer = batch.json()
    assert [{k: item[k] for k in STILL} for item in answer["items"]] == [
        {k: single[k] for k in STILL} for single in singles
    ]
    assert set(answer["items"][0]) == set(singles[0])
    assert answer["items"][1]["counts"]["delivered"] == 10
    assert answer["missing"] == [str(others), str(nowhere)]
    # And B sees A's campaign exactly as it sees a campaign that does not exist
    assert b_for_a == {"items": [], "missing": [str(with_outcomes)]}
    assert b_for_nothing == {"items": [], "missing": [str(nowhere)]}


async def test_progress_of_several_campaigns_refuses_bad_or_too_many_ids_naming_the_field(
    tracker: RunningTracker, pool: asyncpg.Pool
) -> None:
    tenant = await seed_tenant(pool)
    url = f"{tracker.url}/v1/campaigns/progress"
    too_many = ",".join(str(uuid.uuid4()) for _ in range(51))
    async with httpx.AsyncClient(timeout=10, headers=tenant.headers) as client:
        for params in ({}, {"ids": "not-a-uuid"}, {"ids": ","}, {"ids": too_many}, {"ids": "\x00"}):
            answer = await client.get(url, params=params)
            assert answer.status_code == 422, (params, answer.text)
            assert [error["field"].split(".")[0] for error in answer.json()["errors"]] == ["ids"], params

"""Preview with a template: how many recipients it renders empty or past WhatsApp's limits for,
with the reason, counted with the engine's own renderer over the audience's real values."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import asyncpg
from audience_data import Appt, Dataset, api_client, api_key_for, seed

from services.segmenter import routes_audience

NY = ZoneInfo("America/New_York")
AS_OF = datetime(2026, 3, 20, 12, tzinfo=NY)


def upcoming(ext: str, customer: str, *, service: str | None = None, location: str | None = None) -> Appt:
    return Appt(
        ext,
        customer,
        starts_at=AS_OF + timedelta(days=2),
        created_at=AS_OF - timedelta(days=3),
        service=service,
        location=location,
    )


DATA = Dataset(
    customers={f"c{i}": f"+1415555{i:04d}" for i in range(6)},
    appointments=[
        upcoming("a0", "c0", service="cut", location="north"),
        upcoming("a1", "c1", service="color", location="north"),
        upcoming("a2", "c2", location="south"),
        upcoming("a3", "c3"),
        upcoming("a4", "c4"),
        upcoming("a5", "c5", service="cut"),
    ],
)


async def preview(
    pool: asyncpg.Pool, tenant_id: UUID, template: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    async with api_client(pool, await api_key_for(pool, tenant_id), routes_audience.router) as client:
        response = await client.post(
            "/v1/audiences/preview",
            json={"segment": "upcoming", "as_of": AS_OF.isoformat(), "template": template},
        )
    return response.status_code, response.json()


async def test_preview_counts_the_recipients_a_template_renders_empty_for_and_names_the_cause(
    pool: asyncpg.Pool,
) -> None:
    # Given six customers with an upcoming appointment, three of them without a service
    tenant_id = await seed(pool, DATA)

    # When previewing them with a body that is the service's name alone
    status, body = await preview(pool, tenant_id, {"body": "{service_name}"})

    # Then the preview says three of six would render empty, why, and with which code they fail
    assert status == 200, body
    check = body["template_check"]
    assert (check["recipients"], check["rendered_empty"], check["too_long"]) == (6, 3, 0)
    [warning] = check["warnings"]
    assert (warning["field"], warning["code"], warning["recipients"]) == ("template.body", 21619, 3)
    assert "{service_name}" in warning["message"] and "3 of 6" in warning["message"]
    assert body["total"] == 6


async def test_preview_counts_the_recipients_a_content_variable_passes_whatsapps_limit_for(
    pool: asyncpg.Pool,
) -> None:
    # Given two of the six appointments at a location with a 200-character address
    tenant_id = await seed(pool, DATA)
    await pool.execute(
        "UPDATE locations SET address = repeat('a', 200) WHERE tenant_id = $1 AND external_id = 'north'",
        tenant_id,
    )

    # When previewing a Content template whose variable is 900 characters and the address
    template = {"content_sid": "HX" + "0" * 32, "variables": {"1": "x" * 900 + " {location_address}"}}
    status, body = await preview(pool, tenant_id, template)

    # Then those two would pass the 1,024 characters of a variable; nobody renders empty
    assert status == 200, body
    check = body["template_check"]
    assert (check["recipients"], check["rendered_empty"], check["too_long"]) == (6, 0, 2)
    [warning] = check["warnings"]
    assert (warning["field"], warning["code"], warning["recipients"]) == ("template.variables", 21617, 2)


async def test_a_template_that_cannot_render_empty_is_not_checked_and_a_bad_one_is_refused(
    pool: asyncpg.Pool,
) -> None:
    # Given the same audience
    tenant_id = await seed(pool, DATA)

    # When previewing with a template that always has text, then with an unknown shortcode
    status, body = await preview(pool, tenant_id, {"body": "{service_name} is booked, {customer_first_name}"})
    bad_status, bad = await preview(pool, tenant_id, {"body": "{no_such_code}"})

    # Then the first needs no check, and the second answers 422 naming the field, counting nothing
    assert status == 200 and body["template_check"] is None
    assert bad_status == 422
    assert [error["field"] for error in bad["errors"]] == ["template.body"]

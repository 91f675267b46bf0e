"""How many of an audience's recipients a template renders empty or past WhatsApp's limits for.

Such a recipient is never sent to: the sender fails it locally (21619 for an empty body, 21617 for
one past 1,600 characters). The preview shows how many there would be, and creating a campaign
answers with a warning naming the count and the cause (the campaign is still created).

Only a template that can render empty or too long at all is checked against the data (most
cannot, and cost nothing): the distinct values its shortcodes take over the audience are read
with their counts, and each is rendered with the engine's own renderer, so the counts are what
the sender will meet with unchanged data.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from uuid import UUID

import asyncpg
from pydantic import BaseModel, Field

from services.segmenter.audience.model import Audience
from services.segmenter.audience.query import render_values_query
from shared.db import tenant_transaction
from shared.templating import (
    BODY_TOO_LONG_CODE,
    EMPTY_BODY_CODE,
    NEVER_EMPTY,
    RecipientData,
    Template,
    TenantStyle,
    can_render_empty,
    can_render_too_long,
    render,
    rendered_length_errors,
)

TENANT_STYLE = "SELECT name, business_name, timezone, locale FROM tenants WHERE id = $1"


class TemplateWarning(BaseModel):
    field: str = Field(description="The template field the warning is about.")
    code: int = Field(description="The Twilio code these recipients fail with, without a request.")
    recipients: int = Field(description="How many recipients it applies to.")
    message: str


class TemplateCheck(BaseModel):
    recipients: int = Field(description="Recipients the template was rendered for.")
    rendered_empty: int = Field(description="Recipients whose message renders empty (not sent, 21619).")
    too_long: int = Field(description="Recipients whose message passes WhatsApp's limits (not sent, 21617).")
    warnings: list[TemplateWarning]


def _recipient(row: asyncpg.Record) -> RecipientData:
    values = dict(row)
    values.pop("n")
    return RecipientData(phone_e164=values.pop("phone_e164", None) or "", **values)


def _could_be_empty(template: Template) -> list[str]:
    return sorted(template.shortcodes - NEVER_EMPTY)


async def check_template(
    pool: asyncpg.Pool, *, tenant_id: UUID, tz: str, audience: Audience, template: Template, now: datetime
) -> TemplateCheck | None:
    """The audience's recipients the template fails for; None when it cannot fail for anyone."""
    if not (can_render_empty(template) or can_render_too_long(template)):
        return None
    sql, params = render_values_query(
        audience, tenant_id=tenant_id, now=now, tz=tz, shortcodes=template.shortcodes
    )
    async with tenant_transaction(pool, tenant_id, readonly=True) as conn:
        # As for the preview: plans for this statement's values, no parallel workers.
        await conn.execute(
            "SET LOCAL jit = off; SET LOCAL max_parallel_workers_per_gather = 0;"
            " SET LOCAL work_mem = '64MB'; SET LOCAL plan_cache_mode = force_custom_plan"
        )
        style_row = await conn.fetchrow(TENANT_STYLE, tenant_id)
        rows = await conn.fetch(sql, *params)
    style = TenantStyle(
        name=style_row["name"],
        business_name=style_row["business_name"],
        timezone=tz,
        locale=style_row["locale"],
    )
    total = empty = too_long = 0
    for index, row in enumerate(rows):
        if index % 2000 == 1999:
            # Many distinct values: let other requests in now and then.
            await asyncio.sleep(0)
        count = row["n"]
        total += count
        message = render(template, _recipient(row), style)
        if message.content_sid is None and not (message.body or "").strip():
            empty += count
        elif rendered_length_errors(message, "template"):
            too_long += count
    return TemplateCheck(
        recipients=total,
        rendered_empty=empty,
        too_long=too_long,
        warnings=_warnings(template, total, empty, too_long),
    )


def _warnings(template: Template, total: int, empty: int, too_long: int) -> list[TemplateWarning]:
    warnings = []
    if empty:
        codes = ", ".join(f"{{{code}}}" for code in _could_be_empty(template))
        warnings.append(
            TemplateWarning(
                field="template.body",
                code=EMPTY_BODY_CODE,
                recipients=empty,
                message=(
                    f"the message renders empty for {empty:,} of {total:,} recipients (no value for {codes});"
                    " they will fail without being sent"
                ),
            )
        )
    if too_long:
        field = "template.body" if template.body is not None else "template.variables"
        limit = "1,600 characters" if template.body is not None else "1,024 characters in a variable"
        warnings.append(
            TemplateWarning(
                field=field,
                code=BODY_TOO_LONG_CODE,
                recipients=too_long,
                message=(
                    f"the message renders past WhatsApp's {limit} for {too_long:,} of {total:,} recipients;"
                    " they will fail without being sent"
                ),
            )
        )
    return warnings

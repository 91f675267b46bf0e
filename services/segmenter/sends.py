"""Test sends, manual sends and the tenant's approved Content templates.

Both kinds of send are small campaigns (``kind`` ``test`` or ``manual``) whose recipients are
written directly instead of selected from an audience; they are then started like any campaign,
so they pass the same throttle, claims, retries, credits and logs. Their per-number values live
in ``recipients.vars`` and win over customer data when the message is rendered:

- a test send goes to the tenant's own test numbers, rendered with a sample recipient (the
  customer of the tenant's latest appointment, else a made-up one);
- a manual send goes to the numbers given, each with optional shortcode values.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from uuid import UUID

import asyncpg

from services.segmenter import queries
from services.segmenter.audience.model import Audience
from services.segmenter.campaigns import Lifecycle
from shared.crypto import SecretBox
from shared.db import OneTenant, tenant_transaction
from shared.http import InputError
from shared.phones import InvalidPhone, to_e164
from shared.settings import Settings
from shared.templating import (
    APPOINTMENT_SHORTCODES,
    RecipientData,
    TenantStyle,
    parse_template,
    render,
    rendered_length_errors,
    shortcode_values,
    validate_overrides,
    validate_template,
)
from shared.twilio_client import (
    ContentTemplate,
    TwilioClient,
    TwilioCredentials,
    TwilioError,
    approved_content_sids,
)

MAX_MANUAL_RECIPIENTS = 10_000

TENANT = """
SELECT id, name, business_name, timezone, locale, test_numbers, twilio_account_sid, twilio_auth_token_enc
FROM tenants WHERE id = $1
"""

# The customer of the tenant's latest appointment (or its latest customer), to show a test send
# the way a real recipient would see it.
SAMPLE_RECIPIENT = """
SELECT cu.phone_e164, cu.first_name, cu.last_name, cu.email,
       a.starts_at AS appointment_starts_at, a.status AS appointment_status,
       sv.name AS service_name, l.name AS location_name, l.address AS location_address, st.name AS staff_name
FROM customers cu
LEFT JOIN LATERAL (
    SELECT * FROM appointments a WHERE a.tenant_id = cu.tenant_id AND a.customer_id = cu.id
    ORDER BY a.starts_at DESC LIMIT 1
) a ON true
LEFT JOIN services sv ON sv.id = a.service_id
LEFT JOIN locations l ON l.id = a.location_id
LEFT JOIN staff st ON st.id = a.staff_id
WHERE cu.tenant_id = $1 AND cu.phone_e164 IS NOT NULL
ORDER BY a.starts_at DESC NULLS LAST, cu.id DESC
LIMIT 1
"""

INSERT_RECIPIENTS = """
INSERT INTO recipients (tenant_id, campaign_id, phone_e164, vars)
SELECT $1, $2, phone, vars FROM unnest($3::text[], $4::jsonb[]) AS r(phone, vars)
ON CONFLICT (campaign_id, phone_e164) DO NOTHING
"""

SAMPLE = RecipientData(
    phone_e164="+15555550123",
    first_name="Alex",
    last_name="Sample",
    email="alex@example.com",
    service_name="Sample service",
    location_name="Main location",
    staff_name="Sam",
    appointment_status="approved",
)

ContentCheck = Callable[[UUID, str], Awaitable[bool]]


def twilio_client(settings: Settings) -> TwilioClient:
    return TwilioClient(
        api_base_url=settings.twilio_api_base_url,
        content_base_url=settings.twilio_content_base_url,
        timeout_s=settings.twilio_timeout_s,
        max_connections=4,
        max_idle_s=settings.twilio_max_idle_s,
    )


async def _tenant(pool: asyncpg.Pool, tenant_id: UUID) -> asyncpg.Record:
    row = await pool.fetchrow(TENANT, tenant_id)
    if row is None:
        raise LookupError(tenant_id)
    return row


def _credentials(row: asyncpg.Record, box: SecretBox) -> TwilioCredentials:
    return TwilioCredentials(row["twilio_account_sid"], box.decrypt(row["twilio_auth_token_enc"]))


async def approved_templates(
    pool: asyncpg.Pool, box: SecretBox, settings: Settings, tenant_id: UUID
) -> list[ContentTemplate]:
    """The tenant's WhatsApp-approved Content templates, from Twilio's Content API."""
    row = await _tenant(pool, tenant_id)
    client = twilio_client(settings)
    try:
        templates = await client.list_content_templates(_credentials(row, box))
    finally:
        await client.aclose()
    return [template for template in templates if template.approved]


def content_checker(pool: asyncpg.Pool, box: SecretBox, settings: Settings) -> ContentCheck:
    """``content_is_approved(tenant_id, content_sid)`` for campaign creation."""

    async def is_approved(tenant_id: UUID, content_sid: str) -> bool:
        row = await _tenant(pool, tenant_id)
        client = twilio_client(settings)
        try:
            return content_sid in await approved_content_sids(client, _credentials(row, box))
        finally:
            await client.aclose()

    return is_approved


async def _check_content(template: Mapping[str, Any], tenant_id: UUID, check: ContentCheck) -> None:
    sid = template.get("content_sid")
    if not sid:
        return
    try:
        approved = await check(tenant_id, sid)
    except TwilioError as exc:
        raise InputError.single(
            "template.content_sid", f"templates could not be listed: {exc.message}"
        ) from exc
    if not approved:
        raise InputError.single("template.content_sid", "not an approved WhatsApp template of this account")


def _style(row: asyncpg.Record) -> TenantStyle:
    return TenantStyle(
        name=row["name"], business_name=row["business_name"], timezone=row["timezone"], locale=row["locale"]
    )


async def _start_send(
    pool: asyncpg.Pool,
    lifecycle: Lifecycle,
    *,
    tenant_id: UUID,
    kind: str,
    name: str,
    template: dict[str, Any],
    recipients: list[tuple[str, dict[str, str]]],
) -> asyncpg.Record:
    campaign_id = uuid.uuid4()
    async with tenant_transaction(pool, tenant_id) as conn:
        await conn.execute(
            queries.INSERT_CAMPAIGN,
            campaign_id,
            tenant_id,
            name,
            kind,
            Audience().model_dump(mode="json"),
            template,
            {},
            None,
        )
        await conn.execute(
            INSERT_RECIPIENTS,
            tenant_id,
            campaign_id,
            [phone for phone, _ in recipients],
            [v for _, v in recipients],
        )
    return await lifecycle.start(tenant_id, campaign_id)


async def send_test(
    pool: asyncpg.Pool,
    lifecycle: Lifecycle,
    *,
    tenant_id: UUID,
    template: dict[str, Any],
    name: str | None,
    content_check: ContentCheck,
) -> asyncpg.Record:
    """Send the template to the tenant's test numbers, rendered with a sample recipient."""
    errors = validate_template(template, appointment_available=True)
    if errors:
        raise InputError(errors)
    row = await _tenant(pool, tenant_id)
    if not row["test_numbers"]:
        raise InputError.single(
            "test_numbers", "the tenant has no test numbers; set them in the tenant settings"
        )
    await _check_content(template, tenant_id, content_check)
    sample_row = await OneTenant(pool).fetchrow(tenant_id, SAMPLE_RECIPIENT, tenant_id)
    sample = SAMPLE if sample_row is None else RecipientData(**dict(sample_row))
    values = shortcode_values(sample, _style(row))
    rendered = render(
        parse_template(template), RecipientData(phone_e164=sample.phone_e164, overrides=values), _style(row)
    )
    errors = rendered_length_errors(rendered, "template")
    if errors:
        raise InputError(errors)
    return await _start_send(
        pool,
        lifecycle,
        tenant_id=tenant_id,
        kind="test",
        name=name or "Test send",
        template=template,
        recipients=[(number, values) for number in dict.fromkeys(row["test_numbers"])],
    )


async def send_manual(
    pool: asyncpg.Pool,
    lifecycle: Lifecycle,
    *,
    tenant_id: UUID,
    region: str,
    template: dict[str, Any],
    recipients: list[tuple[str, dict[str, Any]]],
    name: str | None,
    content_check: ContentCheck,
) -> asyncpg.Record:
    """Send the template to the given numbers (one message per number), each with its values."""
    errors = validate_template(template, appointment_available=True)
    used_appointment = parse_template(template).shortcodes & APPOINTMENT_SHORTCODES if not errors else set()
    numbered: dict[str, dict[str, str]] = {}
    first_index: dict[str, int] = {}
    for index, (raw, values) in enumerate(recipients):
        field = f"recipients.{index}"
        try:
            phone = to_e164(raw, region)
        except InvalidPhone as exc:
            errors.append({"field": f"{field}.phone", "message": str(exc)})
            continue
        errors.extend(validate_overrides(values, f"{field}.variables"))
        missing = sorted(used_appointment - set(values))
        if missing:
            errors.append(
                {
                    "field": f"{field}.variables",
                    "message": f"the template needs {', '.join(missing)} for this number",
                }
            )
        numbered.setdefault(phone, {key: str(value) for key, value in values.items()})
        first_index.setdefault(phone, index)
    if errors:
        raise InputError(errors)
    style = _style(await _tenant(pool, tenant_id))
    parsed = parse_template(template)
    for phone, values in numbered.items():
        rendered = render(parsed, RecipientData(phone_e164=phone, overrides=values), style)
        errors.extend(rendered_length_errors(rendered, f"recipients.{first_index[phone]}.variables"))
    if errors:
        raise InputError(errors)
    await _check_content(template, tenant_id, content_check)
    return await _start_send(
        pool,
        lifecycle,
        tenant_id=tenant_id,
        kind="manual",
        name=name or "Manual send",
        template=template,
        recipients=list(numbered.items()),
    )

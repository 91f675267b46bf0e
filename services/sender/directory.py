"""Cached tenants (decrypted credentials, sender address, style) and campaign templates.

Templates never change after a campaign is created, so they are cached for good (bounded);
tenants are re-read after a short TTL or at once on a ``tenant.changed`` event.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import asyncpg

from services.sender import queries
from shared.crypto import SecretBox
from shared.db import OneTenant
from shared.phones import whatsapp_address
from shared.sending_window import RecipientWindows, SendingWindow, WindowGate
from shared.templating import Template, TenantStyle, parse_template
from shared.twilio_client import TwilioCredentials

TENANT_TTL_S = 30.0
MAX_CAMPAIGNS = 2048


@dataclass(frozen=True)
class TenantInfo:
    tenant_id: UUID
    credentials: TwilioCredentials
    from_address: str | None
    messaging_service_sid: str | None
    style: TenantStyle
    active: bool
    # Whether the tenant's sending window is open (always, without one or when it is kept in
    # each recipient's own zone instead: ``recipient_windows``).
    window: WindowGate
    recipient_windows: RecipientWindows | None = None
    # WhatsApp messaging limit (unique numbers per moving window); None: unlimited.
    messaging_limit: int | None = None


def _windows(stored: dict[str, Any] | None, timezone: str) -> tuple[WindowGate, RecipientWindows | None]:
    """The tenant's window gate, and the recipients' when the window is kept in their zones."""
    window = None if stored is None else SendingWindow.from_json(stored)
    if window is not None and window.recipient_timezone:
        return WindowGate(None, ZoneInfo(timezone)), RecipientWindows(window, timezone)
    return WindowGate(window, ZoneInfo(timezone)), None


class TenantNotFound(LookupError):
    pass


class Directory:
    def __init__(self, pool: asyncpg.Pool, box: SecretBox) -> None:
        self._pool = pool
        self._box = box
        self._tenants: dict[UUID, tuple[float, TenantInfo]] = {}
        self._templates: OrderedDict[UUID, Template] = OrderedDict()

    async def tenant(self, tenant_id: UUID) -> TenantInfo:
        cached = self._tenants.get(tenant_id)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        row = await self._pool.fetchrow(queries.SELECT_TENANT, tenant_id)
        if row is None:
            raise TenantNotFound(tenant_id)
        window, recipient_windows = _windows(row["sending_window"], row["timezone"])
        info = TenantInfo(
            tenant_id=tenant_id,
            credentials=TwilioCredentials(
                row["twilio_account_sid"], self._box.decrypt(row["twilio_auth_token_enc"])
            ),
            from_address=whatsapp_address(row["whatsapp_from"]) if row["whatsapp_from"] else None,
            messaging_service_sid=row["messaging_service_sid"],
            style=TenantStyle(
                name=row["name"],
                business_name=row["business_name"],
                timezone=row["timezone"],
                locale=row["locale"],
            ),
            active=row["active"],
            messaging_limit=row["messaging_limit"],
            window=window,
            recipient_windows=recipient_windows,
        )
        self._tenants[tenant_id] = (time.monotonic() + TENANT_TTL_S, info)
        return info

    def invalidate(self, tenant_id: UUID) -> None:
        self._tenants.pop(tenant_id, None)

    async def template(self, tenant_id: UUID, campaign_id: UUID) -> Template | None:
        template = self._templates.get(campaign_id)
        if template is not None:
            self._templates.move_to_end(campaign_id)
            return template
        row = await OneTenant(self._pool).fetchrow(tenant_id, queries.SELECT_CAMPAIGN, tenant_id, campaign_id)
        if row is None:
            return None
        template = parse_template(row["template"])
        self._templates[campaign_id] = template
        if len(self._templates) > MAX_CAMPAIGNS:
            self._templates.popitem(last=False)
        return template

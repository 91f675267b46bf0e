"""Inbound messages: every one is stored once (by MessageSid), attributed to the message it replies
to (the last one the engine sent that number in the 24 hours before it arrived); an opt-out keyword
puts the number on the tenant's suppression list, an opt-in keyword takes an opt-out made by
message off it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import asyncpg

from services.tracker import queries
from services.tracker.keywords import Action, classify
from shared.db import tenant_transaction
from shared.phones import strip_channel, to_e164_or_none

SUPPRESSION_SOURCE = "inbound"


class InvalidInbound(ValueError):
    """An inbound message that can never be stored (no SID, no sender, unknown tenant)."""


@dataclass(frozen=True)
class InboundResult:
    action: Action | None
    # False for a replay of a message already stored.
    stored: bool
    # Whether the suppression list changed (a keyword can find it as it asks already).
    changed: bool


async def record_inbound(
    pool: asyncpg.Pool, *, tenant_id: str, params: Mapping[str, str], received_at: float
) -> InboundResult:
    sid = (params.get("MessageSid") or params.get("SmsMessageSid") or params.get("SmsSid") or "").strip()
    sender = strip_channel((params.get("From") or "").strip())
    if not sid or not sender:
        raise InvalidInbound("inbound message without MessageSid or From")
    body = params.get("Body") or ""
    async with tenant_transaction(pool, tenant_id) as conn:
        tenant = await conn.fetchrow(queries.TENANT_KEYWORDS, tenant_id)
        if tenant is None:
            raise InvalidInbound(f"tenant {tenant_id} does not exist")
        phone = to_e164_or_none(sender, tenant["default_region"])
        action = classify(
            body,
            extra_opt_out=tenant["opt_out_keywords"],
            extra_opt_in=tenant["opt_in_keywords"],
            opt_out_type=params.get("OptOutType"),
        )
        # A sender that is not a valid number is stored as given and changes no list.
        if phone is None:
            action = None
        answered = None
        if phone is not None:
            answered = await conn.fetchrow(queries.REPLY_ATTRIBUTION, tenant_id, phone, received_at)
        stored = await conn.fetchval(
            queries.INSERT_INBOUND,
            tenant_id,
            sid,
            phone or sender,
            body,
            action.value if action else None,
            received_at,
            answered["campaign_id"] if answered else None,
            answered["recipient_id"] if answered else None,
        )
        if stored is None:
            return InboundResult(action=action, stored=False, changed=False)
        if action is Action.OPT_OUT:
            added = await conn.fetch(
                queries.ADD_SUPPRESSIONS,
                [tenant_id],
                [phone],
                [SUPPRESSION_SOURCE],
                [f"replied {body.strip()[:100]!r}"],
            )
            return InboundResult(action=action, stored=True, changed=bool(added))
        if action is Action.OPT_IN:
            removed = await conn.fetch(
                queries.REMOVE_INBOUND_SUPPRESSION, tenant_id, phone, f"replied {body.strip()[:100]!r}"
            )
            return InboundResult(action=action, stored=True, changed=bool(removed))
    return InboundResult(action=None, stored=True, changed=False)

"""What outbound webhooks carry: the event types an endpoint can subscribe to and the envelope of
every delivery's body. Pure; the tracker builds deliveries with it and the tenant API validates
subscriptions against it.

Campaign lifecycle events are the broker's own (``campaign.started`` …, shared/events.py);
recipient status events come from the message event log, one per change into a state below.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, get_args
from uuid import UUID

import orjson

from shared.events import LifecycleName

CAMPAIGN_EVENT_TYPES: tuple[str, ...] = tuple(f"campaign.{name}" for name in get_args(LifecycleName))
# Recipient states worth a notice to another system. Not ``cancelled`` (a cancel changes every
# waiting row at once) nor the engine's internal steps (queued, sending, retry_wait, unknown).
RECIPIENT_STATES: tuple[str, ...] = ("sent", "delivered", "read", "undelivered", "failed", "failed_delivery")
RECIPIENT_EVENT_TYPES: tuple[str, ...] = tuple(f"recipient.{state}" for state in RECIPIENT_STATES)
EVENT_TYPES: tuple[str, ...] = CAMPAIGN_EVENT_TYPES + RECIPIENT_EVENT_TYPES


def recipient_event_type(state: str) -> str:
    return f"recipient.{state}"


def envelope(
    *, event_id: str, event_type: str, created_at: datetime, tenant_id: UUID, data: dict[str, Any]
) -> bytes:
    """The JSON body of a delivery: the same bytes are signed, sent, stored and resent."""
    return orjson.dumps(
        {
            "id": event_id,
            "type": event_type,
            "created_at": created_at,
            "tenant_id": tenant_id,
            "data": data,
        },
        # Ids read from the database come as the driver's UUID type, which orjson does not know.
        default=str,
        option=orjson.OPT_UTC_Z,
    )

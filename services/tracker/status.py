"""Decisions about status callbacks: which recipient state a Twilio status means, whether it moves
a recipient forward, how replays are recognised, and what a batch of callbacks changes.

Callbacks arrive out of order and more than once, so the recipient state only ever moves up a
partial order: ``sent < delivered < read`` and ``sent < undelivered | failed_delivery``. A failure
after ``delivered`` is ignored (the device already confirmed the message) and nothing leaves a
failure state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from shared.twilio_errors import SUPPRESS_CODES

# Recipient states the tracker moves between, with their rank in the partial order.
_RANK: dict[str, int] = {
    "sent": 1,
    "delivered": 2,
    "undelivered": 2,
    "failed_delivery": 2,
    "read": 3,
}
_TERMINAL = frozenset({"undelivered", "failed_delivery"})
FAILURE_STATES = _TERMINAL

# Twilio statuses that say something about a sent message. The earlier ones (accepted, queued,
# sending, scheduled) come before the sender records the send and carry nothing new.
_STATE_FOR_STATUS: dict[str, str] = {
    "sent": "sent",
    "delivered": "delivered",
    "read": "read",
    "undelivered": "undelivered",
    "failed": "failed_delivery",
}

# States in which the sender has not recorded the outcome of its call yet: a callback for such a
# row waits (as an orphan) until the sender has written ``sent``, so the two never race.
AWAITING_SENDER = frozenset({"pending", "queued", "sending", "retry_wait", "unknown"})


def state_for_status(twilio_status: str) -> str | None:
    """The recipient state a Twilio ``MessageStatus`` means, or None when it means nothing new."""
    return _STATE_FOR_STATUS.get(twilio_status.strip().lower())


def advances(current: str, target: str) -> bool:
    """Whether moving a recipient from ``current`` to ``target`` goes forward."""
    if current in _TERMINAL:
        return False
    current_rank = _RANK.get(current)
    target_rank = _RANK.get(target)
    if current_rank is None or target_rank is None:
        return False
    return target_rank > current_rank


def dedupe_key(message_sid: str, twilio_status: str, idempotency_token: str | None) -> str:
    """Key that identifies one callback among its replays.

    Twilio's ``I-Twilio-Idempotency-Token`` is the same on every retry of one request; without it,
    a callback is identified by what it says (SID and status).
    """
    if idempotency_token:
        return f"t:{idempotency_token}"
    return f"s:{message_sid}:{twilio_status.strip().lower()}"


def parse_error_code(raw: str | None) -> int | None:
    if raw is None:
        return None
    text = raw.strip()
    if not text.isdigit() or len(text) > 9:
        return None
    return int(text)


def _sid_and_status(params: Mapping[str, str]) -> tuple[str, str]:
    sid = (params.get("MessageSid") or params.get("SmsSid") or "").strip()
    status = (params.get("MessageStatus") or params.get("SmsStatus") or "").strip().lower()
    return sid, status


def names_a_message(params: Mapping[str, str]) -> bool:
    """Whether the POSTed form is a status callback (``Callback.from_params`` gives one)."""
    sid, status = _sid_and_status(params)
    return bool(sid and status)


# The values below are built several times per callback, so they are named tuples: as immutable
# as frozen dataclasses, and several times cheaper to build and to copy with a change.


class Callback(NamedTuple):
    """One status callback as the consumer applies it."""

    tenant_id: str
    message_sid: str
    status: str
    error_code: int | None
    error_message: str | None
    at: float
    params: Mapping[str, str]
    # Set when the callback was kept earlier as an orphan and is being matched now.
    orphan_id: int | None = None

    @property
    def target(self) -> str | None:
        return state_for_status(self.status)

    @classmethod
    def from_params(
        cls, tenant_id: str, params: Mapping[str, str], at: float, orphan_id: int | None = None
    ) -> Callback | None:
        """Build from the POSTed form; None when it names no message or no status."""
        sid, status = _sid_and_status(params)
        if not sid or not status:
            return None
        message = params.get("ErrorMessage") or params.get("ChannelStatusMessage") or None
        return cls(
            tenant_id=tenant_id,
            message_sid=sid,
            status=status,
            error_code=parse_error_code(params.get("ErrorCode")),
            error_message=message,
            at=at,
            params=params,
            orphan_id=orphan_id,
        )


class RecipientRow(NamedTuple):
    """What the consumer needs of a recipient to apply callbacks to it."""

    id: int
    tenant_id: str
    campaign_id: str
    phone_e164: str
    state: str
    error_code: int | None = None
    error_message: str | None = None
    delivered_at: float | None = None
    read_at: float | None = None
    failed_at: float | None = None


class Transition(NamedTuple):
    recipient_id: int
    tenant_id: str
    campaign_id: str
    from_state: str
    to_state: str
    error_code: int | None
    detail: str | None
    at: float


class Suppression(NamedTuple):
    tenant_id: str
    phone_e164: str
    reason: str


@dataclass
class Plan:
    """What applying a batch of callbacks changes."""

    rows: dict[int, RecipientRow] = field(default_factory=dict)
    transitions: list[Transition] = field(default_factory=list)
    orphans: list[Callback] = field(default_factory=list)
    matched: list[Callback] = field(default_factory=list)
    suppressions: list[Suppression] = field(default_factory=list)

    def changed_rows(self) -> list[RecipientRow]:
        changed = {t.recipient_id for t in self.transitions}
        return [row for row_id, row in sorted(self.rows.items()) if row_id in changed]


def _apply(row: RecipientRow, callback: Callback, target: str) -> RecipientRow:
    if target == "delivered":
        return row._replace(state=target, delivered_at=row.delivered_at or callback.at)
    if target == "read":
        # Read implies delivered: WhatsApp may report read without a delivered notification.
        return row._replace(state=target, read_at=callback.at, delivered_at=row.delivered_at or callback.at)
    if target in FAILURE_STATES:
        return row._replace(
            state=target,
            failed_at=callback.at,
            error_code=callback.error_code,
            error_message=callback.error_message,
        )
    return row._replace(state=target)


def plan_callbacks(
    callbacks: Sequence[Callback], rows: Iterable[RecipientRow], sids: Mapping[tuple[str, str], int]
) -> Plan:
    """Apply ``callbacks`` (in arrival order) to ``rows``.

    ``sids`` maps (tenant id, message SID) to the recipient id that has that SID. A callback whose
    SID matches no recipient, or one the sender has not finished with, becomes an orphan.
    """
    plan = Plan(rows={row.id: row for row in rows})
    for callback in callbacks:
        recipient_id = sids.get((callback.tenant_id, callback.message_sid))
        row = plan.rows.get(recipient_id) if recipient_id is not None else None
        if row is None or row.state in AWAITING_SENDER:
            plan.orphans.append(callback)
            continue
        plan.matched.append(callback)
        if callback.error_code in SUPPRESS_CODES:
            plan.suppressions.append(
                Suppression(row.tenant_id, row.phone_e164, f"Twilio error {callback.error_code}")
            )
        target = callback.target
        if target is None or not advances(row.state, target):
            continue
        plan.rows[row.id] = _apply(row, callback, target)
        plan.transitions.append(
            Transition(
                recipient_id=row.id,
                tenant_id=row.tenant_id,
                campaign_id=row.campaign_id,
                from_state=row.state,
                to_state=target,
                error_code=callback.error_code if target in FAILURE_STATES else None,
                detail=callback.error_message if target in FAILURE_STATES else None,
                at=callback.at,
            )
        )
    return plan

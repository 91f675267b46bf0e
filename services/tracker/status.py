"""Decisions about status callbacks: which recipient state a Twilio status means, whether it moves
a recipient forward, how replays are recognised, and what a batch of callbacks changes.

Callbacks arrive out of order and more than once, so the recipient state only ever moves up a
partial order: ``sent < delivered < read`` and ``sent < undelivered | failed_delivery``. A failure
after ``delivered`` is ignored (the device already confirmed the message) and nothing leaves a
failure state.

One failure is not final: WhatsApp's "not now" refusals (spam rate 131048, pair rate 131056),
which Twilio mostly reports in the status callback after accepting the create. The message was
not delivered, so the recipient goes back to wait for another send — the same outcome as when
the create itself is refused: no attempt counted, nothing against the error rate. While it waits
it keeps the refused message's SID, so a ``delivered`` or ``read`` for that SID (Twilio
contradicting itself, or callbacks out of order) still wins and the re-send is called off
(docs/duplicates.md says why sending again is not sending twice).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from shared.recipient_states import OPEN_RECIPIENT_STATES
from shared.twilio_errors import PAIR_RATE_CODE, SPAM_RATE_CODE, SUPPRESS_CODES

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
AWAITING_SENDER = OPEN_RECIPIENT_STATES

# A recipient waiting to be sent again after a refusal its callback reported (``DEFERRED``), found
# by the SID of the refused message: only a delivery of that message moves it on.
DEFERRED = "retry_wait"
WAITING_STATES = frozenset({"queued", "retry_wait"})
DELIVERED_STATES = frozenset({"delivered", "read"})
# Refusals a callback may report that mean "not now", not "not this number".
RATE_REFUSAL_CODES = frozenset({SPAM_RATE_CODE, PAIR_RATE_CODE})


@dataclass(frozen=True)
class RefusalWaits:
    """How long a recipient waits after a refusal its callback reported, by code: the pair-rate
    retry tier (at least ``WCE_PAIR_RATE_RETRY_S``), and the tenant's spam hold."""

    pair_rate_s: float
    spam_hold_s: float

    def for_code(self, code: int | None) -> float:
        return self.spam_hold_s if code == SPAM_RATE_CODE else self.pair_rate_s


DEFAULT_WAITS = RefusalWaits(pair_rate_s=60.0, spam_hold_s=900.0)


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
    # The campaign's state: a refusal reported after a cancel is not sent again.
    campaign_state: str = "running"
    # Change to the attempts count: -1 when a callback's refusal gave the attempt back, +1 when a
    # delivery of the refused message took it again.
    attempts_change: int = 0
    # When a recipient sent back to wait is due (epoch seconds).
    next_attempt_at: float | None = None


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
    # Recipients sent back to wait by a callback's refusal and still waiting at the batch's end.
    deferred: list[RecipientRow] = field(default_factory=list)

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


def is_rate_refusal(callback: Callback) -> bool:
    """A failure the callback reports for a "not now" reason (131048, 131056)."""
    return callback.target in FAILURE_STATES and callback.error_code in RATE_REFUSAL_CODES


def refusal_detail(code: int | None, wait_s: float) -> str:
    """What the recipient's history says about a refusal reported in its callback."""
    what = (
        "the sender was refused for spam"
        if code == SPAM_RATE_CODE
        else "too many messages to this number lately"
    )
    return (
        f"WhatsApp refused the message after Twilio accepted it ({what}); sent again in {wait_s:g} s"
        " or later, not counted as an attempt"
    )


def _defer(row: RecipientRow, callback: Callback, wait_s: float) -> RecipientRow:
    return row._replace(
        state=DEFERRED,
        error_code=callback.error_code,
        error_message=callback.error_message,
        attempts_change=row.attempts_change - 1,
        next_attempt_at=callback.at + wait_s,
    )


def plan_callbacks(
    callbacks: Sequence[Callback],
    rows: Iterable[RecipientRow],
    sids: Mapping[tuple[str, str], int],
    waits: RefusalWaits = DEFAULT_WAITS,
) -> Plan:
    """Apply ``callbacks`` (in arrival order) to ``rows``.

    ``sids`` maps (tenant id, message SID) to the recipient id that has that SID. A callback whose
    SID matches no recipient, or one the sender has not finished with, becomes an orphan. A
    recipient found waiting by its SID was sent back by a refusal of that message: only a
    delivery of it moves the recipient on (to ``delivered``/``read``, the re-send called off).
    """
    plan = Plan(rows={row.id: row for row in rows})
    for callback in callbacks:
        recipient_id = sids.get((callback.tenant_id, callback.message_sid))
        row = plan.rows.get(recipient_id) if recipient_id is not None else None
        waiting = row is not None and row.state in WAITING_STATES
        if row is None or (row.state in AWAITING_SENDER and not waiting):
            plan.orphans.append(callback)
            continue
        plan.matched.append(callback)
        if callback.error_code in SUPPRESS_CODES:
            plan.suppressions.append(
                Suppression(row.tenant_id, row.phone_e164, f"Twilio error {callback.error_code}")
            )
        target = callback.target
        if target is None:
            continue
        if waiting:
            if target not in DELIVERED_STATES:
                continue
            # The refused message was delivered after all: it stands, and takes its attempt back.
            changed = _apply(
                row._replace(attempts_change=row.attempts_change + 1, next_attempt_at=None), callback, target
            )
            detail: str | None = "delivered after all: the message refused earlier is not sent again"
            error_code = None
        elif row.state == "sent" and is_rate_refusal(callback) and row.campaign_state != "cancelled":
            wait_s = waits.for_code(callback.error_code)
            changed, target = _defer(row, callback, wait_s), DEFERRED
            detail, error_code = refusal_detail(callback.error_code, wait_s), callback.error_code
        elif advances(row.state, target):
            changed = _apply(row, callback, target)
            failed = target in FAILURE_STATES
            detail = callback.error_message if failed else None
            error_code = callback.error_code if failed else None
        else:
            continue
        plan.rows[row.id] = changed
        plan.transitions.append(
            Transition(
                recipient_id=row.id,
                tenant_id=row.tenant_id,
                campaign_id=row.campaign_id,
                from_state=row.state,
                to_state=target,
                error_code=error_code,
                detail=detail,
                at=callback.at,
            )
        )
    plan.deferred = [row for row in plan.changed_rows() if row.state == DEFERRED]
    return plan

"""What happens to a claimed recipient after its attempt (or instead of it): pure decisions.

The classifier says what Twilio's answer means; this module turns that into the row's next
state, whether the attempt counts, the retry tier, and whether the number is suppressed.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.pacing import RATE_LIMIT_CODES
from shared.templating import BODY_TOO_LONG_CODE, EMPTY_BODY_CODE, RenderedMessage, rendered_length_errors
from shared.twilio_errors import PAIR_RATE_CODE, SPAM_RATE_CODE, Outcome, OutcomeKind, next_tier


class Skip(enum.StrEnum):
    """Reasons a claimed recipient is handed back without calling Twilio."""

    LATE = "late"  # its slot passed: starting now could exceed the tenant's rate
    PAUSED = "paused"  # its campaign was paused or cancelled after the claim
    SHUTDOWN = "shutdown"  # this sender is stopping; another one takes the chunk


@dataclass(frozen=True)
class Transition:
    to_state: str
    # The attempt did not really happen (or was refused for our credentials): don't count it.
    uncount: bool = False
    tier_s: int | None = None
    error_code: int | None = None
    error_message: str | None = None
    suppress: bool = False
    # Back to the tenant's dispatch queue for a new slot.
    redispatch: bool = False
    auth_failure: bool = False
    skip: Skip | None = None
    # A request reached Twilio's API for this outcome (not skipped, not refused here).
    requested: bool = True
    retry_after_s: float | None = None
    # The tenant's sending is held for a while (Meta refused the sender for spam).
    hold_tenant: bool = False
    # Waits until then (system clock) rather than a retry tier: the sweeper publishes it again.
    wait_until: datetime | None = None

    @property
    def is_error(self) -> bool:
        """Counts against the campaign's error rate: an attempt that lost its recipient. Transient
        and ambiguous outcomes are retried or reconciled, so a Twilio hiccup does not pause a
        campaign; a template or audience that keeps failing does."""
        return not self.uncount and self.to_state == "failed"


def after_attempt(
    outcome: Outcome,
    *,
    attempts: int,
    tiers: list[int],
    max_attempts: int,
    deferrals: int = 0,
    paced: bool = False,
    pair_retry_s: float = 0.0,
) -> Transition:
    """The row's transition after attempt number ``attempts`` ended with ``outcome``; ``deferrals``
    earlier retries did not count. Every retry moves up the tiers; only counted attempts fail.
    ``paced``: the tenant has a rate, which backs off when Twilio refuses for rate.
    ``pair_retry_s``: the least wait after a pair-rate refusal."""
    if outcome.kind is OutcomeKind.ACCEPTED:
        return Transition("sent")
    if outcome.kind is OutcomeKind.AMBIGUOUS:
        return Transition("unknown", error_code=outcome.code, error_message=outcome.message)
    if outcome.kind is OutcomeKind.AUTH:
        # The tenant's credentials are wrong, not the recipient: the row waits for the fix.
        return Transition(
            "queued", uncount=True, error_code=outcome.code, error_message=outcome.message, auth_failure=True
        )
    if outcome.kind is OutcomeKind.TRANSIENT and outcome.code == SPAM_RATE_CODE:
        # The sender, not the recipient, is being held back: the row waits, unattempted, for the
        # tenant's hold to end (the hold's end publishes the campaign's waiting rows again).
        return Transition(
            "queued", uncount=True, error_code=outcome.code, error_message=outcome.message, hold_tenant=True
        )
    if outcome.kind is OutcomeKind.TRANSIENT and outcome.code == PAIR_RATE_CODE:
        # Too many messages to this one number lately: it waits at least ``pair_retry_s``, and the
        # attempt does not count (the number is fine; it was only too soon).
        wait = max(pair_retry_s, outcome.retry_after_s or 0.0)
        return Transition(
            "retry_wait",
            uncount=True,
            tier_s=_uncapped_tier(attempts + deferrals, wait, tiers),
            error_code=outcome.code,
            error_message=outcome.message,
            retry_after_s=outcome.retry_after_s,
        )
    if outcome.kind is OutcomeKind.TRANSIENT:
        if outcome.unprocessed and paced and outcome.code in RATE_LIMIT_CODES:
            # Refused for rate: the tenant's effective rate has backed off, so the message goes
            # back to the dispatcher for a slot at that rate, after any Retry-After hold.
            return Transition(
                "queued",
                uncount=True,
                redispatch=True,
                error_code=outcome.code,
                error_message=outcome.message,
                retry_after_s=outcome.retry_after_s,
            )
        if outcome.unprocessed:
            # Twilio never processed it (a 429, or the request never left): the attempt does not
            # count, so a rate-limit storm cannot fail recipients; the wait honours Retry-After.
            tier = _uncapped_tier(attempts + deferrals, outcome.retry_after_s, tiers)
            return Transition(
                "retry_wait",
                uncount=True,
                tier_s=tier,
                error_code=outcome.code,
                error_message=outcome.message,
                requested=outcome.code is not None,
                retry_after_s=outcome.retry_after_s,
            )
        tier = (
            None
            if attempts >= max_attempts
            else _uncapped_tier(attempts + deferrals, outcome.retry_after_s, tiers)
        )
        if tier is None:
            return Transition(
                "failed",
                error_code=outcome.code,
                error_message=f"gave up after {attempts} attempts: {outcome.message or 'transient error'}",
            )
        return Transition("retry_wait", tier_s=tier, error_code=outcome.code, error_message=outcome.message)
    return Transition(
        "failed", error_code=outcome.code, error_message=outcome.message, suppress=outcome.suppress
    )


def _uncapped_tier(tries: int, retry_after_s: float | None, tiers: list[int]) -> int | None:
    """The tier after ``tries`` claims of the row that ended in a retry (the cap is not asked)."""
    return next_tier(max(tries, 1), retry_after_s, tiers, max_attempts=max(tries, 1) + 1)


# Looks for an ``unknown`` row's message that must all come back empty before it is sent again;
# the last of them begins only once the create's write is older than the late-create bound.
LOOKUPS_BEFORE_RESEND = 2


def late_create_bound_s(twilio_timeout_s: float, margin_s: float) -> float:
    """How long after a create was last possibly written Twilio may still create its message: the
    request timeout (the time its client waited, and the server had, for an answer) plus a margin
    for a server that took the request before its client gave up and created the message after.
    A later creation is what the engine assumes never happens (docs/duplicates.md)."""
    return twilio_timeout_s + margin_s


def not_found_believed(
    *, lookups: int, looked_at: datetime, latest_write_at: datetime, bound_s: float
) -> bool:
    """Whether an empty lookup proves Twilio never created an ``unknown`` row's message.

    ``lookups`` earlier looks found nothing; this one began at ``looked_at``; the create can have
    been written at ``latest_write_at`` at the latest (both on the database's clock). Believed
    only for a create whose write is older than ``bound_s`` (``late_create_bound_s``) when the look
    began — a create still within it may yet be created, however many looks came back empty — and
    never on the first look."""
    if lookups + 1 < LOOKUPS_BEFORE_RESEND:
        return False
    return looked_at - latest_write_at > timedelta(seconds=bound_s)


def after_lookup(
    found: bool,
    *,
    believed: bool,
    attempts: int,
    tiers: list[int],
    deferrals: int = 0,
    last_code: int | None = None,
    last_message: str | None = None,
) -> Transition | None:
    """An ``unknown`` row after the reconciler looked for its message at Twilio; ``believed``:
    an empty answer proves Twilio never created it (``not_found_believed``). None: look again
    later.

    A message proven never created: like a 429, the attempt does not count (a 5xx storm cannot
    fail recipients). The row keeps the attempt's last Twilio error."""
    if found:
        return Transition("sent")
    if not believed:
        return None
    tier = _uncapped_tier(attempts + deferrals, None, tiers)
    what = f" ({last_message})" if last_message else ""
    return Transition(
        "retry_wait",
        uncount=True,
        tier_s=tier,
        error_code=last_code,
        error_message=f"no message found at Twilio after the last attempt{what}; retrying",
    )


def refused_locally(message: RenderedMessage) -> Transition | None:
    """A message Twilio would refuse is never sent: the recipient fails here with Twilio's code.
    The attempt does not count and does not weigh on the campaign's error rate (a shortcode
    without a value for some customers is the template's matter, not a failing channel)."""
    if message.content_sid is None and not (message.body or "").strip():
        return Transition(
            "failed",
            uncount=True,
            error_code=EMPTY_BODY_CODE,
            error_message="not sent: the message rendered empty for this recipient",
            requested=False,
        )
    too_long = rendered_length_errors(message, "body")
    if too_long:
        return Transition(
            "failed",
            uncount=True,
            error_code=BODY_TOO_LONG_CODE,
            error_message=f"not sent: {too_long[0]['message']}",
            requested=False,
        )
    return None


def outside_window(opens_at: datetime) -> Transition:
    """Not sent: the recipient's own sending window is closed. The row waits (not an attempt)
    until it opens; the sweeper publishes it again then."""
    return Transition(
        "retry_wait",
        uncount=True,
        error_message="not sent: outside the recipient's sending window",
        requested=False,
        wait_until=opens_at,
    )


def skipped(reason: Skip) -> Transition:
    return Transition(
        "queued",
        uncount=True,
        redispatch=reason is Skip.LATE,
        error_message=f"not sent: {reason}",
        skip=reason,
        requested=False,
    )

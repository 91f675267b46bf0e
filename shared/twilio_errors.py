"""What a send attempt's outcome means for the recipient: one pure classifier, no I/O.

Twilio's Messages API has no idempotency key, so the classifier's first question is whether the
request may have reached Twilio. A request that provably never left (connection refused, no
connection from the pool) or that Twilio refused before processing (429) is safe to retry; a
5xx, a read timeout or a reset after the request was written may have created the message, so it
is ``ambiguous`` and must be reconciled before anything is re-sent.

The code table follows Twilio's error dictionary (reference §5.3): codes that arrive
asynchronously are classified too, because status callbacks and a simulator may report them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class OutcomeKind(enum.StrEnum):
    ACCEPTED = "accepted"
    TRANSIENT = "transient"
    PERMANENT = "permanent"
    AMBIGUOUS = "ambiguous"
    AUTH = "auth"


@dataclass(frozen=True)
class Outcome:
    kind: OutcomeKind
    code: int | None = None
    message: str | None = None
    # The recipient opted out or blocked the sender: add the number to the tenant's suppressions.
    suppress: bool = False
    retry_after_s: float | None = None
    # Proven never processed by Twilio (a 429, or a request that never left): not an attempt.
    unprocessed: bool = False


AUTH_CODES = frozenset({20003})

# Safe to retry later: Twilio or the channel refused for volume or availability reasons.
TRANSIENT_CODES = frozenset(
    {
        20429,  # too many concurrent requests: never processed
        30001,  # queue overflow
        30003,  # handset unreachable (off or out of coverage)
        30008,  # unknown error: worth one more try later
        60728,  # hourly account limit
        63017,  # account-wide MPS above the cap
        63018,  # channel rate or Meta messaging limit
        63019,  # media host unreachable
        63038,  # daily account limit
        131048,  # Meta: spam rate limit hit (the sender must slow down for a while)
        131056,  # Meta: pair rate limit hit (too many messages to one number in a short time)
    }
)

# Meta's WhatsApp Cloud API codes for "not now" (both temporary): the whole sender is held back
# for spam, or one business-recipient pair has had too many messages lately. Neither says the
# recipient is unreachable, so neither is worth an attempt.
SPAM_RATE_CODE = 131048
PAIR_RATE_CODE = 131056

# The recipient or the sender refused further messages: keep the number off every list.
SUPPRESS_CODES = frozenset(
    {
        21610,  # recipient replied STOP
        63014,  # recipient blocked the business or withdrew consent on WhatsApp
    }
)

# Never worth resending as it is: bad number, missing permission, bad content or configuration.
PERMANENT_CODES = frozenset(
    {
        11200,
        20404,
        21211,
        21408,
        21610,
        21614,
        21617,
        21656,
        21703,
        30002,
        30004,
        30005,
        30006,
        30007,
        63003,
        63005,
        63007,
        63013,
        63014,
        63016,
        63021,
        63024,
        63025,
        63027,
        63030,
        63032,
        63041,
        63042,
        63049,
        63051,
    }
)

SERVER_ERROR_CODES = frozenset({20500, 20503})


def classify(
    *,
    http_status: int | None,
    code: int | None = None,
    message: str | None = None,
    reached: bool = True,
    retry_after_s: float | None = None,
) -> Outcome:
    """Classify one attempt.

    ``http_status`` is None when no response arrived; ``reached`` then says whether the request
    may have left this process (a read timeout or reset does; a refused connection does not).
    ``code`` is Twilio's error code from the response body (or a callback), when there is one.
    """
    if http_status is None:
        if reached:
            return Outcome(OutcomeKind.AMBIGUOUS, code, message or "no response after the request was sent")
        return Outcome(
            OutcomeKind.TRANSIENT,
            code,
            message or "connection failed before the request was sent",
            unprocessed=True,
        )
    if 200 <= http_status < 300:
        return Outcome(OutcomeKind.ACCEPTED)
    if http_status == 401 or code in AUTH_CODES:
        return Outcome(OutcomeKind.AUTH, code or 20003, message)
    if code in TRANSIENT_CODES or http_status == 429:
        # A 429 is answered before Twilio processes the create (whatever code its body carries).
        return Outcome(
            OutcomeKind.TRANSIENT,
            code or 20429,
            message,
            retry_after_s=retry_after_s,
            unprocessed=http_status == 429,
        )
    if code in PERMANENT_CODES:
        return Outcome(OutcomeKind.PERMANENT, code, message, suppress=code in SUPPRESS_CODES)
    if http_status >= 500 or code in SERVER_ERROR_CODES:
        # Twilio may have created the message before failing: never resend without looking first.
        return Outcome(OutcomeKind.AMBIGUOUS, code or 20500, message, retry_after_s=retry_after_s)
    return Outcome(OutcomeKind.PERMANENT, code, message)


def next_tier(
    attempt: int, retry_after_s: float | None, tiers: list[int], *, max_attempts: int
) -> int | None:
    """The retry tier (its delay in seconds) after ``attempt`` failed attempts; None to give up.

    Tiers escalate with the attempt count; a ``Retry-After`` moves the choice up to the first tier
    that waits at least that long (the longest tier when none does).
    """
    if attempt >= max_attempts or not tiers:
        return None
    index = min(max(attempt, 1) - 1, len(tiers) - 1)
    if retry_after_s is not None:
        while index < len(tiers) - 1 and tiers[index] < retry_after_s:
            index += 1
    return tiers[index]

"""Adaptive pacing: a tenant's effective rate after Twilio says "too fast", as pure arithmetic.

Twilio answers 429/20429 (too many requests) and 63018 (the channel's or the account's rate) when
a tenant's configured rate is above what the account really allows. The effective rate then
backs off multiplicatively — by the share of requests refused, so a tenant configured at 80/s on
an account limited to 40/s lands just under 40/s in one step, and at least by ``MIN_DECREASE``
otherwise — and recovers additively, ``recovery_per_s`` of the configured rate per second, until
it is back at the configured rate or meets the limit again. A ``Retry-After`` holds the tenant
for that long. One decrease counts per ``DECREASE_GAP_S``: the refusals that follow a decrease at
once were caused by the old rate, already corrected.

The state is one row per tenant in PostgreSQL (``tenant_pacing``): the factor in force at the
last decrease and when; every dispatcher and sender replica computes the same effective rate
from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

# Twilio's answers meaning "slower": too many requests, the account-wide and the channel rate.
RATE_LIMIT_CODES = frozenset({20429, 63017, 63018})
# Never below this fraction of the configured rate: a tenant keeps probing, slowly.
MIN_FACTOR = 0.02
# Each back-off cuts at least this much, so a limit just above the rate is still left quickly.
MIN_DECREASE = 0.1
# Aim a little under the rate that got through, where the next refusal is a while away.
HEADROOM = 0.95
DECREASE_GAP_S = 1.0


@dataclass(frozen=True)
class Pacing:
    """A tenant's back-off record: ``factor`` of the configured rate at ``changed_at``."""

    factor: float
    changed_at: datetime
    hold_until: datetime | None = None


def factor_at(pacing: Pacing | None, now: datetime, recovery_per_s: float) -> float:
    """The fraction of the configured rate in force at ``now``."""
    if pacing is None:
        return 1.0
    elapsed = max(0.0, (now - pacing.changed_at).total_seconds())
    return min(1.0, pacing.factor + recovery_per_s * elapsed)


def effective_rate(configured: float, pacing: Pacing | None, now: datetime, recovery_per_s: float) -> float:
    return configured * factor_at(pacing, now, recovery_per_s)


def decrease_multiplier(refused: int, attempted: int) -> float:
    """What the current factor is multiplied by after ``refused`` of ``attempted`` requests were
    refused for rate: the share that got through, with headroom, at most ``1 - MIN_DECREASE``."""
    if attempted <= 0 or refused <= 0:
        return 1.0
    through = 1.0 - min(refused, attempted) / attempted
    return max(MIN_FACTOR, min(1.0 - MIN_DECREASE, through * HEADROOM))


def after_backoff(current: float, multiplier: float) -> float:
    return max(MIN_FACTOR, min(1.0, current * multiplier))

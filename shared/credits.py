"""Credit arithmetic shared by the sender (reserve, debit) and the segmenter (balance, top-up).

A tenant has two buckets: monthly plan credits, granted at the start of each calendar month
(unused ones expire then), and purchased credits, which never expire. A message spends plan
credits before purchased ones. Periods roll lazily: whoever touches the account first in a new
month expires the old plan balance and grants the new one, in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date


def period_start(today: date) -> date:
    return today.replace(day=1)


@dataclass(frozen=True)
class Rollover:
    expire: int
    grant: int
    period_start: date


def rollover(*, current_period: date, plan_balance: int, plan_monthly: int, today: date) -> Rollover | None:
    """What a new month does to the plan bucket; None while the period is current."""
    start = period_start(today)
    if current_period >= start:
        return None
    return Rollover(expire=plan_balance, grant=plan_monthly, period_start=start)


def available(*, plan_balance: int, purchased_balance: int, reserved: int) -> int:
    return max(0, plan_balance + purchased_balance - reserved)


def split_debit(plan_balance: int, count: int) -> tuple[int, int]:
    """How many of ``count`` debits come from the plan bucket and how many from purchased."""
    from_plan = min(max(plan_balance, 0), count)
    return from_plan, count - from_plan

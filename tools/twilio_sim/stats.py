"""Counters over create requests and callbacks, cheap to update and computed on demand."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from typing import Any, NamedTuple

ACCEPTED = "accepted"
REJECTED = "rejected"
# The message exists although the caller saw an error or no answer: the cases
# that tempt a sender into a duplicate resend.
ERROR_AFTER_CREATE = "error_after_create"
TIMEOUT_AFTER_CREATE = "timeout_after_create"


class RequestRecord(NamedTuple):
    account_sid: str
    to: str
    at: float
    sid: str | None
    outcome: str
    code: int | None
    body: str


class Stats:
    __slots__ = (
        "accepted_at",
        "callbacks_dropped",
        "callbacks_failed",
        "callbacks_pending",
        "callbacks_sent",
        "faults_after_create",
        "per_second",
        "per_to",
        "rejected_by_code",
        "requests_total",
    )

    def __init__(self) -> None:
        self.requests_total = 0
        self.rejected_by_code: Counter[int] = Counter()
        self.faults_after_create: Counter[str] = Counter()
        self.per_to: Counter[str] = Counter()
        self.per_second: Counter[int] = Counter()
        self.accepted_at: list[float] = []
        self.callbacks_sent = 0
        self.callbacks_failed = 0
        self.callbacks_pending = 0
        self.callbacks_dropped = 0

    def snapshot(self) -> dict[str, Any]:
        accepted_at = self.accepted_at
        return {
            "requests_total": self.requests_total,
            "accepted_total": len(accepted_at),
            "rejected_by_code": {str(code): n for code, n in self.rejected_by_code.items()},
            "faults_after_create": dict(self.faults_after_create),
            "per_to": dict(self.per_to),
            "duplicates": {to: n for to, n in self.per_to.items() if n > 1},
            "max_in_any_second": max_in_any_second(accepted_at),
            "per_second": {str(second): n for second, n in sorted(self.per_second.items())},
            "first_at": min(accepted_at) if accepted_at else None,
            "last_at": max(accepted_at) if accepted_at else None,
            "callbacks_sent": self.callbacks_sent,
            "callbacks_failed": self.callbacks_failed,
            "callbacks_pending": self.callbacks_pending,
            "callbacks_dropped": self.callbacks_dropped,
        }


def max_in_any_second(timestamps: Sequence[float]) -> int:
    """Largest number of timestamps inside any half-open window [t, t + 1s)."""
    ordered = sorted(timestamps)
    best = 0
    left = 0
    for right, ts in enumerate(ordered):
        while ts - ordered[left] >= 1.0:
            left += 1
        best = max(best, right - left + 1)
    return best


class StatsRegistry:
    """Global stats plus one ``Stats`` per account, updated together."""

    def __init__(self) -> None:
        self.total = Stats()
        self._accounts: dict[str, Stats] = {}
        self._requests: list[RequestRecord] = []

    def for_account(self, account_sid: str) -> Stats:
        stats = self._accounts.get(account_sid)
        if stats is None:
            stats = self._accounts[account_sid] = Stats()
        return stats

    def clear(self) -> None:
        self.total = Stats()
        self._accounts.clear()
        self._requests.clear()

    def record(self, record: RequestRecord) -> None:
        self._requests.append(record)
        for stats in (self.total, self.for_account(record.account_sid)):
            stats.requests_total += 1
            if record.outcome == REJECTED:
                stats.rejected_by_code[record.code or 0] += 1
                continue
            if record.outcome != ACCEPTED:
                stats.faults_after_create[record.outcome] += 1
            # get() rather than +=: a Counter's missing key (a new recipient, nearly
            # every create) goes through a Python-level __missing__.
            per_to = stats.per_to
            per_to[record.to] = per_to.get(record.to, 0) + 1
            per_second = stats.per_second
            second = int(record.at)
            per_second[second] = per_second.get(second, 0) + 1
            stats.accepted_at.append(record.at)

    def callback_scheduled(self, account_sid: str) -> None:
        self.total.callbacks_pending += 1
        self.for_account(account_sid).callbacks_pending += 1

    def callback_dropped(self, account_sid: str) -> None:
        self.total.callbacks_dropped += 1
        self.for_account(account_sid).callbacks_dropped += 1

    def callback_done(self, account_sid: str, ok: bool) -> None:
        for stats in (self.total, self.for_account(account_sid)):
            stats.callbacks_pending -= 1
            if ok:
                stats.callbacks_sent += 1
            else:
                stats.callbacks_failed += 1

    def snapshot(
        self,
        account_sid: str | None,
        *,
        include_requests: bool,
        to_in: Collection[str] | None = None,
        body_contains: str | None = None,
    ) -> dict[str, Any]:
        if account_sid is None:
            stats = self.total
        else:
            stats = self._accounts.get(account_sid) or Stats()
        result = {"account_sid": account_sid, **stats.snapshot()}
        if include_requests:
            result["requests"] = [
                {
                    "account_sid": r.account_sid,
                    "to": r.to,
                    "at": r.at,
                    "sid": r.sid,
                    "outcome": r.outcome,
                    "code": r.code,
                }
                for r in self._requests
                if (account_sid is None or r.account_sid == account_sid)
                and (to_in is None or r.to in to_in)
                and (body_contains is None or body_contains in r.body)
            ]
        return result

"""In-memory message store with the indexes the list and fetch endpoints need."""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from .messages import Message


@dataclass(frozen=True, slots=True)
class SentRange:
    """Bounds on a message's sent time, inclusive start and exclusive end (epoch seconds)."""

    start: float | None = None
    end: float | None = None

    def contains(self, ts: float) -> bool:
        return (self.start is None or ts >= self.start) and (self.end is None or ts < self.end)


@dataclass(frozen=True, slots=True)
class MessageQuery:
    to: str | None = None
    from_: str | None = None
    sent: SentRange = SentRange()
    page_size: int = 50
    page: int = 0
    # Twilio-style cursor: "PA" + the SID of the last message on the previous page.
    page_token: str | None = None


@dataclass(frozen=True, slots=True)
class MessagePage:
    messages: list[Message]
    next_token: str | None


class MessageStore:
    def __init__(self) -> None:
        self._seq = 0
        self._by_sid: dict[str, Message] = {}
        self._by_account: dict[str, list[Message]] = {}
        # Keyed by (account, To) so a reconciler's "find by recipient" costs O(matches).
        self._by_to: dict[tuple[str, str], list[Message]] = {}

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def add(self, message: Message) -> None:
        self._by_sid[message.sid] = message
        self._by_account.setdefault(message.account_sid, []).append(message)
        self._by_to.setdefault((message.account_sid, message.to), []).append(message)

    def get(self, account_sid: str, sid: str) -> Message | None:
        message = self._by_sid.get(sid)
        if message is None or message.account_sid != account_sid:
            return None
        return message

    def clear(self) -> None:
        self._by_sid.clear()
        self._by_account.clear()
        self._by_to.clear()

    def query(self, account_sid: str, query: MessageQuery) -> MessagePage:
        if query.to is not None:
            candidates = self._by_to.get((account_sid, query.to), [])
        else:
            candidates = self._by_account.get(account_sid, [])
        skip = 0
        stop = len(candidates)
        if query.page_token is not None:
            stop = self._cursor_position(candidates, query.page_token)
        else:
            skip = query.page * query.page_size
        picked: list[Message] = []
        for message in _newest_first(candidates, stop):
            if not _matches(message, query):
                continue
            if skip:
                skip -= 1
                continue
            if len(picked) == query.page_size:
                return MessagePage(picked, "PA" + picked[-1].sid)
            picked.append(message)
        return MessagePage(picked, None)

    def _cursor_position(self, candidates: Sequence[Message], token: str) -> int:
        anchor = self._by_sid.get(token[2:])
        if anchor is None:
            return 0
        return bisect.bisect_left(candidates, anchor.seq, key=lambda m: m.seq)


def _newest_first(candidates: Sequence[Message], stop: int) -> Iterator[Message]:
    for index in range(stop - 1, -1, -1):
        yield candidates[index]


def _matches(message: Message, query: MessageQuery) -> bool:
    if query.from_ is not None and message.from_ != query.from_:
        return False
    return query.sent.contains(message.sent_or_created)

"""The one classification of consumer failures: what passes is retried with back-off, the rest parked."""

from __future__ import annotations

import asyncpg
import pytest

from shared.broker import BrokerUnavailable, DeliveryCounter
from shared.failures import is_transient, retry_delay_s


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.InternalClientError("connection was terminated"),
        asyncpg.ConnectionDoesNotExistError("connection was closed"),
        asyncpg.TooManyConnectionsError("too many clients"),
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.SerializationError("could not serialize"),
        asyncpg.DeadlockDetectedError("deadlock detected"),
        asyncpg.CannotConnectNowError("the database system is starting up"),
        ConnectionResetError("reset"),
        TimeoutError(),
        BrokerUnavailable("no confirm"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_outages_timeouts_and_conflicts_are_transient(error: BaseException) -> None:
    assert is_transient(error)


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.CharacterNotInRepertoireError("invalid byte sequence for encoding UTF8: 0x00"),
        asyncpg.DataError("date out of range"),
        asyncpg.UniqueViolationError("duplicate key"),
        OverflowError("date value out of range"),
        KeyError("x"),
        ValueError("bad"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_data_the_database_refuses_and_bugs_are_not_transient(error: BaseException) -> None:
    assert not is_transient(error)


def test_back_off_doubles_per_delivery_up_to_its_cap() -> None:
    assert [retry_delay_s(n, base_s=0.5, max_s=30) for n in range(1, 9)] == [
        0.5,
        1.0,
        2.0,
        4.0,
        8.0,
        16.0,
        30.0,
        30.0,
    ]


class _Message:
    def __init__(self, body: bytes, *, redelivered: bool = False, headers: dict[str, object] | None = None):
        self.body = body
        self.redelivered = redelivered
        self.headers = headers or {}
        self.message_id = None
        self.routing_key = "k"


def test_deliveries_are_counted_from_the_quorum_header_or_from_what_this_process_handed_back() -> None:
    counter = DeliveryCounter(capacity=2)
    first = _Message(b"a")
    assert counter.delivery(first) == 1  # type: ignore[arg-type]
    counter.handed_back(first, 1)  # type: ignore[arg-type]
    assert counter.delivery(_Message(b"a", redelivered=True)) == 2  # type: ignore[arg-type]
    # a redelivery this process never saw (its consumer died) is at least the second
    assert counter.delivery(_Message(b"b", redelivered=True)) == 2  # type: ignore[arg-type]
    # quorum queues say how many deliveries came before
    assert counter.delivery(_Message(b"c", headers={"x-delivery-count": 4})) == 5  # type: ignore[arg-type]
    # the map is bounded
    counter.handed_back(_Message(b"d"), 3)  # type: ignore[arg-type]
    counter.handed_back(_Message(b"e"), 3)  # type: ignore[arg-type]
    assert counter.delivery(_Message(b"a")) == 1  # type: ignore[arg-type]
    counter.done(_Message(b"e"))  # type: ignore[arg-type]
    assert counter.delivery(_Message(b"e")) == 1  # type: ignore[arg-type]

"""One classification of failures for every consumer: what passes (retry with back-off) and what
never will (park).

Transient: the database or broker restarting, a dropped or terminated connection, a timeout, too
many connections, a serialization failure or deadlock. Everything else — data the database refuses
(a NUL byte, a date out of range), a violated constraint, a bug — fails the same way on every
delivery, so retrying it only blocks the messages behind it.
"""

from __future__ import annotations

import asyncio

import aiormq
import asyncpg

# The database restarting or a backend terminated (a terminated backend can also surface as an
# InternalClientError from the connection it broke), a lock or serialization conflict, the
# server out of connections or shutting down, a statement cancelled by a timeout.
TRANSIENT_DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.PostgresConnectionError,
    asyncpg.TransactionRollbackError,
    asyncpg.CannotConnectNowError,
    asyncpg.OperatorInterventionError,
    asyncpg.InsufficientResourcesError,
    asyncpg.LockNotAvailableError,
)

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    *TRANSIENT_DATABASE_ERRORS,
    OSError,
    TimeoutError,
    asyncio.TimeoutError,
    ConnectionError,
    aiormq.exceptions.AMQPConnectionError,
    aiormq.exceptions.ChannelInvalidStateError,
)


class TransientFailure(Exception):
    """Base of the project's own errors that pass with time (the broker not taking a message)."""


def is_transient(exc: BaseException) -> bool:
    """True when the same work may succeed later without anything changing but time."""
    return isinstance(exc, (TransientFailure, *TRANSIENT_ERRORS))


def retry_delay_s(delivery: int, *, base_s: float, max_s: float) -> float:
    """Exponential back-off for the ``delivery``-th attempt (1-based), capped at ``max_s``."""
    return float(min(max_s, base_s * (2 ** max(0, delivery - 1))))

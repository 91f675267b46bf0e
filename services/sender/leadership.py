"""A lease in PostgreSQL that one process holds at a time, kept by a heartbeat.

A holder renews it every third of its duration; one that dies or freezes (SIGSTOP, a stalled VM)
stops renewing, and another takes the lease once it expires — within seconds, whatever state the
frozen process's connections are in. A holder that comes back finds the lease taken at its next
renewal and stops leading.
"""

from __future__ import annotations

import os
import socket
import time
import uuid

import asyncpg

from services.sender import queries


class LeadershipLost(RuntimeError):
    """The lease was taken over (this holder failed to renew it in time)."""


class Lease:
    def __init__(self, pool: asyncpg.Pool, name: str, *, duration_s: float) -> None:
        self._pool = pool
        self.name = name
        self.duration_s = duration_s
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        # Until when (time.monotonic()) this holder surely still has the lease: counted from
        # before its last successful renewal was sent, less a margin for statements in flight.
        self._held_until = 0.0

    @property
    def heartbeat_s(self) -> float:
        return self.duration_s / 3

    async def acquire(self) -> bool:
        """Take the lease if it is free or expired, or renew it if held: True while this holder leads."""
        sent_at = time.monotonic()
        try:
            holder = await self._pool.fetchval(
                queries.ACQUIRE_LEASE, self.name, self.holder, self.duration_s, timeout=self.heartbeat_s
            )
        except BaseException:
            self._held_until = 0.0
            raise
        if holder != self.holder:
            self._held_until = 0.0
            return False
        self._held_until = sent_at + self.duration_s - min(1.0, self.duration_s / 4)
        return True

    def held(self) -> bool:
        return time.monotonic() < self._held_until

    def ensure_held(self) -> None:
        """Raise LeadershipLost unless the lease is surely still this holder's: work of the
        leader (a renewal that came late, a process thawed after a freeze) stops before another
        holder may have started."""
        if not self.held():
            raise LeadershipLost(self.holder)

    async def release(self) -> None:
        self._held_until = 0.0
        await self._pool.execute(queries.RELEASE_LEASE, self.name, self.holder, timeout=self.heartbeat_s)

"""The connection budget: every replica's pool must fit in what the database (or pooler) accepts.

Each replica of a service holds up to its pool's maximum of connections; the migration job holds
two (the runner and its lease heartbeat); ``WCE_DB_RESERVED_CONNECTIONS`` are kept free for
operators, monitoring and one-off commands. The sum must fit under the limit: the server's
``max_connections`` minus ``superuser_reserved_connections``, read at start (or
``WCE_DB_MAX_CONNECTIONS`` when a pooler stands in front — set it to the pooler's
``max_client_conn``), and under the role's own ``CONNECTION LIMIT``. Replica counts are not
discoverable from inside one process, so they are declared (``WCE_DB_REPLICAS``, kept next to
the deployment's replica counts, autoscaler maxima included); a configuration that cannot fit is
refused at start, before the service takes traffic, instead of failing with ``too many clients``
at the worst moment.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from shared.settings import Settings

SERVICES = ("segmenter", "tracker", "dispatcher", "sender")
MIGRATION_CONNECTIONS = 2
# The sender runs up to 16 claim/settle statements at once whatever the general pool setting.
SENDER_MIN_POOL = 16


class ConnectionBudgetExceeded(RuntimeError):
    pass


def pool_max(service: str, settings: Settings) -> int:
    """The pool size a replica of ``service`` opens (the one number both the pool and the budget use)."""
    if service == "sender":
        return max(settings.db_pool_max, SENDER_MIN_POOL)
    return settings.db_pool_max


@dataclass(frozen=True)
class ConnectionBudget:
    demand: dict[str, int]
    reserved: int
    limit: int

    @property
    def total(self) -> int:
        return sum(self.demand.values()) + self.reserved

    @property
    def fits(self) -> bool:
        return self.total <= self.limit

    def explain(self) -> str:
        parts = ", ".join(f"{name} {count}" for name, count in self.demand.items())
        return f"{parts}, reserved {self.reserved} = {self.total} connections against a limit of {self.limit}"


def plan(settings: Settings, limit: int) -> ConnectionBudget:
    """Every service's replicas × pool maximum, the migration job and the reserve, against ``limit``."""
    demand = {
        f"{service} {settings.db_replicas.get(service, 1)}×{pool_max(service, settings)}": (
            settings.db_replicas.get(service, 1) * pool_max(service, settings)
        )
        for service in SERVICES
    }
    demand["migration job"] = MIGRATION_CONNECTIONS
    return ConnectionBudget(demand=demand, reserved=settings.db_reserved_connections, limit=limit)


async def server_limit(conn: asyncpg.Connection) -> int:
    """Connections the server accepts from ordinary roles."""
    max_connections = int(await conn.fetchval("SELECT current_setting('max_connections')"))
    reserved = int(await conn.fetchval("SELECT current_setting('superuser_reserved_connections')"))
    return max_connections - reserved


async def check(pool: asyncpg.Pool, settings: Settings, service: str) -> ConnectionBudget:
    """Refuse (``ConnectionBudgetExceeded``) a configuration whose pools cannot all be open at once."""
    async with pool.acquire() as conn:
        limit = settings.db_max_connections or await server_limit(conn)
        role_limit = await conn.fetchval("SELECT rolconnlimit FROM pg_roles WHERE rolname = current_user")
    budget = plan(settings, limit)
    if not budget.fits:
        raise ConnectionBudgetExceeded(
            f"the connection budget does not fit: {budget.explain()}; lower WCE_DB_POOL_MAX or the "
            "replica counts in WCE_DB_REPLICAS, or raise the server's max_connections"
        )
    own = settings.db_replicas.get(service, 1) * pool_max(service, settings)
    if role_limit is not None and role_limit >= 0 and own > role_limit:
        raise ConnectionBudgetExceeded(
            f"{service}: {own} connections ({settings.db_replicas.get(service, 1)} replicas × "
            f"{pool_max(service, settings)}) exceed its role's CONNECTION LIMIT {role_limit}"
        )
    return budget

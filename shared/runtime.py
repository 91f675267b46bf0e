"""Start-up and shutdown shared by the four services: database (migrated here in development,
else waited for until the migration job has applied every migration this code knows), broker
(topology declared), and serving the service's FastAPI app with uvicorn (which turns SIGTERM into a
graceful lifespan shutdown)."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
import uvicorn
from aio_pika.abc import AbstractRobustConnection
from fastapi import FastAPI
from starlette.types import ASGIApp

from shared import connection_budget, topology
from shared.broker import Publisher, connect
from shared.db import create_pool
from shared.http import install_abuse_limits
from shared.http_metrics import RequestMetrics
from shared.logging import configure_logging, get_logger
from shared.schema import migrate_dsn, wait_for_schema
from shared.settings import Settings
from shared.surfaces import restrict_public_surface

log = get_logger(__name__)


@dataclass
class Resources:
    pool: asyncpg.Pool
    connection: AbstractRobustConnection
    publisher: Publisher

    async def close(self) -> None:
        await self.connection.close()
        await self.pool.close()


async def open_resources(settings: Settings, service: str) -> Resources:
    if settings.migrate_at_start:
        await migrate_dsn(
            settings.migration_database_url or settings.database_url,
            retry_s=settings.startup_retry_s,
            statement_cache_size=settings.db_statement_cache_size,
        )
    pool = await create_pool(
        settings.database_url,
        min_size=settings.db_pool_min,
        max_size=connection_budget.pool_max(service, settings),
        retry_s=settings.startup_retry_s,
        statement_cache_size=settings.db_statement_cache_size,
    )
    try:
        if not settings.migrate_at_start:
            await wait_for_schema(pool, retry_s=settings.startup_retry_s)
        budget = await connection_budget.check(pool, settings, service)
    except BaseException:
        await pool.close()
        raise
    log.info("connection budget", budget=budget.explain())
    connection = await connect(settings.amqp_url, retry_s=settings.startup_retry_s, name=service)
    publisher = await Publisher.open(connection, timeout_s=settings.broker_publish_timeout_s)
    tenant_ids = [str(row["id"]) for row in await pool.fetch("SELECT id FROM tenants")]
    await topology.declare_all(publisher.channel, settings.retry_tiers_s, tenant_ids)
    return Resources(pool=pool, connection=connection, publisher=publisher)


def attach(app: FastAPI, resources: Resources, settings: Settings) -> None:
    app.state.settings = settings
    app.state.pool = resources.pool
    if settings.rate_limits_enabled:
        install_abuse_limits(app, resources.pool, settings)
    app.state.broker = resources.connection
    app.state.publisher = resources.publisher


def serve(app: FastAPI, *, service: str, settings: Settings, port: int) -> None:
    configure_logging(service, settings.log_level)
    log.info("starting", port=port)
    # The tracker serves a thin ASGI wrapper around its FastAPI app.
    restrict_public_surface(app if isinstance(app, FastAPI) else app.app, settings, port)
    run_http_server(
        RequestMetrics(app, service),
        host=settings.http_host,
        port=port,
        trusted_proxies=settings.trusted_proxies,
    )


def run_http_server(app: ASGIApp, *, host: str, port: int, trusted_proxies: list[str]) -> None:
    """Serve an ASGI app until SIGTERM, the way every service of the project (the console too)
    serves: uvloop and httptools, no access log, a graceful shutdown of at most 20 s."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        # Forwarded headers are read only from configured proxies (the abuse limits count per
        # client address); parsing them costs work on every request, so it is off without them.
        # The server header only advertises a version.
        proxy_headers=bool(trusted_proxies),
        forwarded_allow_ips=trusted_proxies or None,
        server_header=False,
        timeout_graceful_shutdown=20,
    )
    uvicorn.Server(config).run()

"""The segmenter's routers on an in-process app over the test pool, with the suite's operator token."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
from fastapi import APIRouter, FastAPI

from shared.http import install_common
from shared.settings import Settings

TOKEN = "operator-token-for-the-security-suite-7f3a9c"
OPERATOR = {"Authorization": f"Bearer {TOKEN}"}


def segmenter(pool: asyncpg.Pool, *routers: APIRouter, **settings: Any) -> FastAPI:
    """``routers`` with the services' error bodies, in development with the suite's token and
    ``settings`` (no abuse limits unless a test installs them)."""
    app = FastAPI()
    install_common(app, {})
    app.state.pool = pool
    app.state.settings = Settings(environment="development", operator_token=TOKEN, **settings)
    for router in routers:
        app.include_router(router)
    return app


def client(app: FastAPI, address: str = "127.0.0.1") -> httpx.AsyncClient:
    """A client of ``app`` connecting from ``address``."""
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://segmenter")

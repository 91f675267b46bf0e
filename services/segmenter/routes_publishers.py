"""Broker publishers: which broker users may publish booking events and campaign commands for a
tenant (checked when ``WCE_PUBLISHER_CHECK_ENABLED`` is on; see shared/publishers.py)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated
from uuid import UUID

import asyncpg
from fastapi import APIRouter, Path, Response, status
from pydantic import BaseModel

from shared import audit
from shared.db import OneTenant
from shared.http import Operator, Pool, not_found

router = APIRouter(prefix="/v1/operator", tags=["broker publishers"])

# RabbitMQ user names as an operator would create them; nothing that needs quoting anywhere.
Username = Annotated[
    str, Path(min_length=1, max_length=100, pattern=re.compile(r"^[A-Za-z0-9._@-]+$").pattern)
]

LIST = "SELECT username, created_at FROM broker_publishers WHERE tenant_id = $1 ORDER BY username"
ALLOW = """
INSERT INTO broker_publishers (username, tenant_id) VALUES ($1, $2)
ON CONFLICT (username, tenant_id) DO NOTHING
RETURNING created_at
"""
DISALLOW = "DELETE FROM broker_publishers WHERE username = $1 AND tenant_id = $2 RETURNING username"


class PublisherOut(BaseModel):
    username: str
    created_at: datetime


@router.get("/tenants/{tenant_id}/broker-publishers", response_model=list[PublisherOut])
async def list_publishers(tenant_id: UUID, _: Operator, pool: Pool) -> list[PublisherOut]:
    return [PublisherOut(**dict(row)) for row in await OneTenant(pool).fetch(tenant_id, LIST, tenant_id)]


@router.put("/tenants/{tenant_id}/broker-publishers/{username}", status_code=status.HTTP_204_NO_CONTENT)
async def allow_publisher(tenant_id: UUID, username: Username, operator: Operator, pool: Pool) -> Response:
    """Let broker user ``username`` publish for the tenant (idempotent)."""
    try:
        created = await OneTenant(pool).fetchval(tenant_id, ALLOW, username, tenant_id)
    except asyncpg.ForeignKeyViolationError:
        raise not_found("tenant not found") from None
    if created is not None:
        await audit.record(
            pool,
            actor=operator,
            action="broker_publisher.allowed",
            tenant_id=tenant_id,
            detail={"username": username},
        )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.delete("/tenants/{tenant_id}/broker-publishers/{username}", status_code=status.HTTP_204_NO_CONTENT)
async def disallow_publisher(tenant_id: UUID, username: Username, operator: Operator, pool: Pool) -> Response:
    if await OneTenant(pool).fetchval(tenant_id, DISALLOW, username, tenant_id) is None:
        raise not_found("no such publisher for this tenant")
    await audit.record(
        pool,
        actor=operator,
        action="broker_publisher.removed",
        tenant_id=tenant_id,
        detail={"username": username},
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)

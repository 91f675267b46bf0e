from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.support import BASE_DATABASE_URL, with_database


@pytest.fixture
async def scratch_database() -> AsyncIterator[str]:
    """An empty database of this test's own on the shared server, dropped afterwards."""
    name = f"wce_t_{uuid.uuid4().hex[:10]}_scratch"
    admin = await asyncpg.connect(BASE_DATABASE_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield with_database(BASE_DATABASE_URL, name)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()

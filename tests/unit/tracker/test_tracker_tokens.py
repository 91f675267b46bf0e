"""The tenants' token cache: one load per tenant, and a bounded size whatever ids are asked for."""

from __future__ import annotations

from typing import Any

from services.tracker.tokens import TokenCache
from shared.crypto import SecretBox
from shared.settings import DEVELOPMENT_ENCRYPTION_KEY

BOX = SecretBox([DEVELOPMENT_ENCRYPTION_KEY])


class Tokens:
    """Stands in for the pool's one query: tenants whose id starts with ``t`` have a token."""

    def __init__(self) -> None:
        self.queries = 0

    async def fetchval(self, query: str, tenant_id: str, **_: Any) -> Any:
        self.queries += 1
        return BOX.encrypt(f"token-{tenant_id}") if tenant_id.startswith("t") else None


async def test_a_token_is_loaded_once_and_unknown_tenants_are_remembered() -> None:
    tokens = Tokens()
    cache = TokenCache(tokens, BOX)  # type: ignore[arg-type]
    assert await cache.get("t1") == "token-t1"
    assert await cache.get("t1") == "token-t1"
    assert await cache.get("x1") is None
    assert await cache.get("x1") is None
    assert tokens.queries == 2


async def test_forged_tenant_ids_cannot_grow_the_cache_without_end() -> None:
    tokens = Tokens()
    cache = TokenCache(tokens, BOX, max_entries=100)  # type: ignore[arg-type]
    assert await cache.get("t-real") == "token-t-real"
    for n in range(1_000):
        await cache.get(f"x-forged-{n}")
    assert len(cache._entries) <= 100
    # The newest answers are kept.
    queries = tokens.queries
    assert await cache.get("x-forged-999") is None
    assert tokens.queries == queries

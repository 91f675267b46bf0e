"""Abuse limits: per-key and per-address rate limits answer 429 with Retry-After and hold across
replicas (their counters are in PostgreSQL); repeated failed authentication locks an address out
with a growing back-off; other addresses are unaffected."""

from __future__ import annotations

import asyncio
import random
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from services.segmenter import routes_api_keys, routes_credits, routes_tenants
from shared.abuse_limits import lockout_s
from shared.apikeys import new_api_key
from shared.db import create_pool
from shared.http import install_abuse_limits
from tests.integration.booking.booking_api import new_tenant
from tests.integration.tracker.helpers import RunningTracker, start_tracker
from tests.security.segmenter_app import TOKEN, client, segmenter
from tests.support import IsolatedEnvironment


def address() -> str:
    """A client address of its own per test, so counters never carry over between tests."""
    return f"198.51.{random.randint(0, 255)}.{random.randint(1, 254)}"


def replica(pool: asyncpg.Pool, **limits: Any) -> FastAPI:
    # The shipped allowances, whatever the test harness sets for the services it runs.
    limits = {"tenant_api_failures_allowed": 20, "operator_api_failures_allowed": 5, **limits}
    app = segmenter(pool, routes_tenants.router, routes_credits.router, routes_api_keys.router, **limits)
    install_abuse_limits(app, pool, app.state.settings)
    return app


@pytest.fixture
async def second_pool(isolated_env: IsolatedEnvironment, pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Pool]:
    other = await create_pool(isolated_env.database_url, min_size=1, max_size=2)
    try:
        yield other
    finally:
        await other.close()


@pytest.mark.parametrize(
    ("failures", "expected"), [(0, 0), (5, 0), (6, 1), (7, 2), (8, 4), (12, 64), (20, 900), (10_000, 900)]
)
def test_the_lockout_doubles_after_the_allowance_up_to_its_cap(failures: int, expected: float) -> None:
    assert lockout_s(failures, allowed=5, max_s=900) == expected
    assert lockout_s(failures, allowed=5, max_s=9000, base_s=10) == min(9000, expected * 10)


async def test_a_keys_rate_limit_holds_across_replicas(pool: asyncpg.Pool, second_pool: asyncpg.Pool) -> None:
    # Given two replicas on their own connection pools, limiting a key to 10 requests per window
    limits = {"tenant_api_requests_per_key": 10, "rate_limit_window_s": 3600}
    first, second = replica(pool, **limits), replica(second_pool, **limits)
    _, key = await new_tenant(pool)
    headers = {"Authorization": f"Bearer {key}"}

    # When the key's requests alternate between them, each from a different address
    codes = []
    for n in range(14):
        async with client(first if n % 2 else second, address()) as api:
            response = await api.get("/v1/tenant", headers=headers)
            codes.append(response.status_code)
            if response.status_code == 429:
                retry_after = int(response.headers["Retry-After"])
                assert 1 <= retry_after <= 3600

    # Then the eleventh onwards are refused, whichever replica answers
    assert codes == [200] * 10 + [429] * 4


async def test_an_address_rate_limit_covers_every_key_it_uses(pool: asyncpg.Pool) -> None:
    app = replica(pool, tenant_api_requests_per_address=5, rate_limit_window_s=3600)
    keys = [(await new_tenant(pool))[1] for _ in range(3)]
    async with client(app, address()) as api:
        codes = [
            (await api.get("/v1/tenant", headers={"Authorization": f"Bearer {keys[n % 3]}"})).status_code
            for n in range(8)
        ]
    assert codes == [200] * 5 + [429] * 3


async def test_random_api_keys_from_one_address_are_locked_out(pool: asyncpg.Pool) -> None:
    # Given a tenant API that allows 20 failed logins per address, then locks it out for a minute
    app = replica(pool, tenant_api_failures_allowed=20, auth_lockout_base_s=60)
    _, real_key = await new_tenant(pool)
    attacker, bystander = address(), address()

    # When one address tries 100 random keys
    async with client(app, attacker) as api:
        codes = [
            (await api.get("/v1/tenant", headers={"Authorization": f"Bearer {new_api_key()}"})).status_code
            for _ in range(100)
        ]
        # Then after 20 (and the one that triggered the lock) it only gets 429, even with a real key
        assert codes[:21] == [401] * 21
        assert set(codes[21:]) == {429}
        locked = await api.get("/v1/tenant", headers={"Authorization": f"Bearer {real_key}"})
        assert locked.status_code == 429
        assert int(locked.headers["Retry-After"]) >= 1

    # And another address is not affected
    async with client(app, bystander) as api:
        assert (
            await api.get("/v1/tenant", headers={"Authorization": f"Bearer {real_key}"})
        ).status_code == 200


async def test_operator_token_failures_back_off_exponentially(pool: asyncpg.Pool) -> None:
    # Given an operator API that allows 5 failed attempts per address
    app = replica(pool, operator_api_failures_allowed=5)
    tenant_id, _ = await new_tenant(pool)
    wrong = {"Authorization": f"Bearer {secrets.token_urlsafe(32)}"}
    right = {"Authorization": f"Bearer {TOKEN}"}
    path = f"/v1/operator/tenants/{tenant_id}/api-keys"
    async with client(app, address()) as api:

        async def rotate(headers: dict[str, str]) -> httpx.Response:
            return await api.post(path, headers=headers)

        # When it presents six wrong tokens
        assert [(await rotate(wrong)).status_code for _ in range(6)] == [401] * 6

        # Then the address is locked out for 1 s, even with the right token
        locked = await rotate(right)
        assert locked.status_code == 429
        assert locked.headers["Retry-After"] == "1"

        # And each further failure after the lock doubles it (Retry-After is rounded up, and a
        # slow machine may take a second between two requests)
        await asyncio.sleep(1.1)
        assert (await rotate(wrong)).status_code == 401
        assert (await rotate(right)).headers["Retry-After"] in ("1", "2")
        await asyncio.sleep(2.1)
        assert (await rotate(wrong)).status_code == 401
        assert (await rotate(right)).headers["Retry-After"] in ("3", "4")
        await asyncio.sleep(4.1)

        # And once the lock has passed, the right token works and clears the count
        assert (await rotate(right)).status_code == 201
        assert (await rotate(wrong)).status_code == 401
        assert (await rotate(right)).status_code == 201


async def test_500_random_operator_tokens_get_six_401s_and_then_429s(pool: asyncpg.Pool) -> None:
    app = replica(pool, auth_lockout_base_s=60)
    async with client(app, address()) as api:
        codes = [
            (
                await api.post(
                    "/v1/operator/tenants/" + str(uuid.uuid4()) + "/api-keys",
                    headers={"Authorization": f"Bearer {secrets.token_urlsafe(32)}"},
                )
            ).status_code
            for _ in range(500)
        ]
    # The allowance of five, the sixth that locks the address out, then only 429s.
    assert codes == [401] * 6 + [429] * 494


@pytest.fixture(scope="module")
def two_trackers(
    isolated_env: IsolatedEnvironment, pool: asyncpg.Pool, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningTracker, RunningTracker]]:
    limits = {"WCE_TENANT_API_REQUESTS_PER_KEY": "6", "WCE_RATE_LIMIT_WINDOW_S": "3600"}
    first = start_tracker(isolated_env, Path(tmp_path_factory.mktemp("tracker-a")), **limits)
    try:
        second = start_tracker(isolated_env, Path(tmp_path_factory.mktemp("tracker-b")), **limits)
        try:
            yield first, second
        finally:
            second.process.stop()
    finally:
        first.process.stop()


async def test_two_service_processes_share_a_keys_limit(
    two_trackers: tuple[RunningTracker, RunningTracker], pool: asyncpg.Pool
) -> None:
    # Given two tracker processes limiting a key to 6 requests per window
    _, key = await new_tenant(pool)
    codes = []
    async with httpx.AsyncClient(timeout=10, headers={"Authorization": f"Bearer {key}"}) as api:
        # When the key reads through both, alternately
        for n in range(8):
            tracker = two_trackers[n % 2]
            response = await api.get(f"{tracker.url}/v1/campaigns/{uuid.uuid4()}/progress")
            codes.append(response.status_code)
    # Then the limit counts both processes' requests together
    assert codes == [404] * 6 + [429] * 2


async def test_behind_a_trusted_proxy_each_forwarded_client_is_limited_on_its_own(
    isolated_env: IsolatedEnvironment, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    # Given a tracker behind a proxy it trusts, locking an address out after 3 unknown keys
    tracker = start_tracker(
        isolated_env,
        tmp_path,
        WCE_TRUSTED_PROXIES="127.0.0.1",
        WCE_TENANT_API_FAILURES_ALLOWED="3",
        WCE_AUTH_LOCKOUT_BASE_S="60",
    )
    try:
        _, key = await new_tenant(pool)
        attacker, customer = {"X-Forwarded-For": address()}, {"X-Forwarded-For": address()}
        path = f"{tracker.url}/v1/campaigns/{uuid.uuid4()}/progress"
        async with httpx.AsyncClient(timeout=10) as proxied:
            # When one forwarded client tries five random keys
            codes = [
                (
                    await proxied.get(path, headers={**attacker, "Authorization": f"Bearer {new_api_key()}"})
                ).status_code
                for _ in range(5)
            ]
            # Then it is locked out, while another client behind the same proxy is not
            assert codes == [401] * 4 + [429]
            assert (
                await proxied.get(path, headers={**customer, "Authorization": f"Bearer {key}"})
            ).status_code == 404
    finally:
        tracker.process.stop()

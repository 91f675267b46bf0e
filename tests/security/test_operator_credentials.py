"""Operator credentials: a weak operator token never starts a service, and an empty, missing or
wrong presented token never opens an operator route, in every environment."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
import structlog
from prometheus_client import REGISTRY
from pydantic import ValidationError

from services.segmenter import routes_api_keys, routes_credits, routes_tenants
from shared.operator_token import OperatorTokenDigest
from shared.settings import Settings
from tests.integration.booking.booking_api import new_tenant
from tests.security.segmenter_app import TOKEN as STRONG_TOKEN
from tests.security.segmenter_app import client, segmenter
from tests.support import ROOT


def operator_failures() -> float:
    return REGISTRY.get_sample_value("wce_auth_failures_total", {"surface": "operator_api"}) or 0.0


@pytest.fixture(autouse=True)
def _no_token_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WCE_OPERATOR_TOKEN", raising=False)


@pytest.mark.parametrize("environment", ["development", "test", "production"])
@pytest.mark.parametrize("token", ["", " ", "x", "short-but-not-empty", "a" * 40, "0123456789" * 3 + "a"])
def test_a_weak_operator_token_is_refused_in_every_environment(environment: str, token: str) -> None:
    with pytest.raises(ValidationError, match="WCE_OPERATOR_TOKEN") as refused:
        Settings(environment=environment, operator_token=token)  # type: ignore[arg-type]
    if token.strip():
        assert token not in str(refused.value)


def test_an_empty_operator_token_from_the_environment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WCE_OPERATOR_TOKEN", "")
    with pytest.raises(ValidationError, match="at least 32 characters"):
        Settings()


def test_a_refused_setting_is_never_echoed_in_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    secret_but_short = "s3cr3t-typo-Q"
    monkeypatch.setenv("WCE_OPERATOR_TOKEN", secret_but_short)
    with pytest.raises(ValidationError) as refused:
        Settings()
    assert secret_but_short not in str(refused.value)
    assert "input_value" not in str(refused.value)


def test_a_service_refuses_to_start_with_an_empty_token_and_does_not_print_it() -> None:
    env = {"PATH": "/usr/bin:/bin", "WCE_OPERATOR_TOKEN": "", "WCE_ENVIRONMENT": "production"}
    started = subprocess.run(
        [sys.executable, "-m", "services.segmenter"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=60,
        text=True,
    )
    assert started.returncode != 0
    assert "WCE_OPERATOR_TOKEN" in started.stderr
    assert "input_value" not in started.stderr


def test_settings_keep_only_a_digest_of_the_operator_token() -> None:
    settings = Settings(operator_token=STRONG_TOKEN)  # type: ignore[arg-type]
    assert isinstance(settings.operator_token, OperatorTokenDigest)
    assert STRONG_TOKEN not in repr(settings)
    assert STRONG_TOKEN not in settings.model_dump_json()
    assert settings.operator_token.matches(STRONG_TOKEN)


@pytest.mark.parametrize("presented", [None, "", " ", STRONG_TOKEN[:-1], STRONG_TOKEN + "x"])
def test_a_missing_empty_or_near_miss_token_never_matches(presented: str | None) -> None:
    assert not OperatorTokenDigest.of(STRONG_TOKEN).matches(presented)


@pytest.fixture
async def operator_api(pool: asyncpg.Pool) -> AsyncIterator[httpx.AsyncClient]:
    app = segmenter(pool, routes_tenants.router, routes_credits.router, routes_api_keys.router)
    async with client(app) as api:
        yield api


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer x"},
        {"Authorization": f"Bearer {STRONG_TOKEN[:-1]}"},
        {"Authorization": f"Basic {STRONG_TOKEN}"},
        {"X-API-Key": STRONG_TOKEN},
    ],
)
async def test_operator_routes_refuse_a_missing_empty_or_wrong_token_and_change_nothing(
    operator_api: httpx.AsyncClient, pool: asyncpg.Pool, headers: dict[str, str]
) -> None:
    # Given a tenant with its API key
    tenant_id, _ = await new_tenant(pool)
    keys_before = await pool.fetch(
        "SELECT key_hash, revoked_at FROM api_keys WHERE tenant_id = $1", tenant_id
    )
    failures_before = operator_failures()

    # When someone without the operator token rotates its key
    with structlog.testing.capture_logs() as logged:
        rotated = await operator_api.post(f"/v1/operator/tenants/{tenant_id}/api-keys", headers=headers)

    # Then the request is refused, counted, logged without the secret, and the keys are untouched
    assert rotated.status_code == 401
    assert operator_failures() == failures_before + 1
    failures = [entry for entry in logged if entry["event"] == "authentication failed"]
    assert [entry["surface"] for entry in failures] == ["operator_api"]
    assert STRONG_TOKEN[:-1] not in str(failures)
    keys_after = await pool.fetch("SELECT key_hash, revoked_at FROM api_keys WHERE tenant_id = $1", tenant_id)
    assert keys_after == keys_before
    topped_up = await operator_api.post(
        f"/v1/operator/tenants/{tenant_id}/credits", json={"top_up": 100_000_000}, headers=headers
    )
    assert topped_up.status_code == 401


async def test_the_right_operator_token_opens_the_operator_routes(
    operator_api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    tenant_id, _ = await new_tenant(pool)
    rotated = await operator_api.post(
        f"/v1/operator/tenants/{tenant_id}/api-keys", headers={"Authorization": f"Bearer {STRONG_TOKEN}"}
    )
    assert rotated.status_code == 201
    assert rotated.json()["api_key"].startswith("wce_")

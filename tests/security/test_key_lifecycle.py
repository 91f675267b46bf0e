"""API key lifecycle: named keys with creation, last use and expiry; tenants create, rotate and
revoke their own; operator rotation with an overlap window; every change in the audit log; and
the command that re-encrypts every stored secret so an old encryption key can be removed."""

from __future__ import annotations

import asyncio
import secrets
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest
from cryptography.fernet import Fernet

from services.segmenter import api_keys, routes_api_keys, routes_tenants
from services.segmenter.reencrypt import reencrypt_all
from shared.apikeys import hash_api_key
from shared.crypto import SecretBox
from shared.db import create_pool
from shared.schema import migrate_dsn
from tests.integration.booking.booking_api import new_tenant
from tests.security.segmenter_app import OPERATOR, client, segmenter
from tests.support import ROOT, IsolatedEnvironment


@pytest.fixture
async def api(pool: asyncpg.Pool) -> AsyncIterator[httpx.AsyncClient]:
    async with client(segmenter(pool, routes_tenants.router, routes_api_keys.router)) as api:
        yield api


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def works(api: httpx.AsyncClient, key: str) -> bool:
    response = await api.get("/v1/tenant", headers=bearer(key))
    assert response.status_code in (200, 401)
    return response.status_code == 200


async def test_a_tenant_creates_named_keys_that_show_creation_last_use_and_expiry(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    # Given a tenant with its first key
    _, first = await new_tenant(pool)

    # When it creates a key for its booking integration, expiring in a year, and uses it
    expires = (datetime.now(UTC) + timedelta(days=365)).isoformat()
    created = await api.post(
        "/v1/tenant/api-keys", json={"name": "booking sync", "expires_at": expires}, headers=bearer(first)
    )
    assert created.status_code == 201
    new_key = created.json()["api_key"]
    assert await works(api, new_key)

    # Then both keys are listed by name with their prefix, and the used one shows its last use
    listed = (await api.get("/v1/tenant/api-keys", headers=bearer(first))).json()
    by_name = {key["name"]: key for key in listed}
    assert set(by_name) == {"default", "booking sync"}
    assert new_key.startswith(by_name["booking sync"]["prefix"])
    assert by_name["booking sync"]["expires_at"] is not None
    assert by_name["booking sync"]["last_used_at"] is not None
    assert all(new_key not in str(key) and hash_api_key(new_key) not in str(key) for key in listed)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "x", "expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
        ({"name": "x", "expires_at": "2099-01-01T00:00:00"}, "expires_at"),
        ({"name": "x", "secret": "y"}, "secret"),
    ],
)
async def test_a_bad_key_request_names_the_field_and_creates_nothing(
    api: httpx.AsyncClient, pool: asyncpg.Pool, body: dict[str, str], field: str
) -> None:
    tenant_id, key = await new_tenant(pool)
    refused = await api.post("/v1/tenant/api-keys", json=body, headers=bearer(key))
    assert refused.status_code == 422
    assert [error["field"] for error in refused.json()["errors"]] == [field]
    assert await pool.fetchval("SELECT count(*) FROM api_keys WHERE tenant_id = $1", tenant_id) == 1


async def test_an_expired_key_is_refused(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    _, key = await new_tenant(pool)
    assert await works(api, key)
    await pool.execute("UPDATE api_keys SET expires_at = now() WHERE key_hash = $1", hash_api_key(key))
    assert not await works(api, key)


async def test_a_tenant_revokes_its_own_key_but_never_another_tenants(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    # Given two tenants, the first with a second key
    _, mine = await new_tenant(pool)
    _, theirs = await new_tenant(pool)
    spare = (await api.post("/v1/tenant/api-keys", json={"name": "spare"}, headers=bearer(mine))).json()
    their_key_id = (await api.get("/v1/tenant/api-keys", headers=bearer(theirs))).json()[0]["id"]

    # When the first revokes its spare key, and tries to revoke the other tenant's key
    revoked = await api.delete(f"/v1/tenant/api-keys/{spare['key']['id']}", headers=bearer(mine))
    foreign = await api.delete(f"/v1/tenant/api-keys/{their_key_id}", headers=bearer(mine))
    foreign_rotation = await api.post(
        f"/v1/tenant/api-keys/{their_key_id}/rotate", json={}, headers=bearer(mine)
    )

    # Then its spare key stops working; the other tenant's answers 404 and keeps working
    assert revoked.status_code == 204
    assert not await works(api, spare["api_key"])
    assert await works(api, mine)
    assert foreign.status_code == 404 and foreign_rotation.status_code == 404
    assert await works(api, theirs)
    assert (
        await api.delete(f"/v1/tenant/api-keys/{spare['key']['id']}", headers=bearer(mine))
    ).status_code == 404


async def test_operator_rotation_keeps_the_old_keys_for_the_overlap_only(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    # Given a tenant with a key
    tenant_id, old = await new_tenant(pool)

    # When the operator rotates its keys with a one-hour overlap
    rotated = await api.post(
        f"/v1/operator/tenants/{tenant_id}/api-keys", json={"overlap_s": 3600}, headers=OPERATOR
    )
    assert rotated.status_code == 201
    new = rotated.json()["api_key"]

    # Then both keys work, the old one with an expiry an hour away
    assert await works(api, old) and await works(api, new)
    keys = (await api.get(f"/v1/operator/tenants/{tenant_id}/api-keys", headers=OPERATOR)).json()
    old_entry = next(key for key in keys if old.startswith(key["prefix"]))
    left = datetime.fromisoformat(old_entry["expires_at"]) - datetime.now(UTC)
    assert timedelta(minutes=59) < left <= timedelta(hours=1)

    # And a rotation without overlap retires every active key at once
    again = await api.post(f"/v1/operator/tenants/{tenant_id}/api-keys", headers=OPERATOR)
    newest = again.json()["api_key"]
    assert not await works(api, old) and not await works(api, new)
    assert await works(api, newest)


async def test_a_tenant_rotates_one_key_with_an_overlap_and_keeps_its_name(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    _, key = await new_tenant(pool)
    made = (await api.post("/v1/tenant/api-keys", json={"name": "crm"}, headers=bearer(key))).json()
    rotated = await api.post(
        f"/v1/tenant/api-keys/{made['key']['id']}/rotate", json={"overlap_s": 120}, headers=bearer(key)
    )
    assert rotated.status_code == 201
    assert rotated.json()["key"]["name"] == "crm"
    assert await works(api, made["api_key"]) and await works(api, rotated.json()["api_key"])
    assert await works(api, key)


async def test_a_tenant_holds_a_bounded_number_of_active_keys(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    _, key = await new_tenant(pool)
    codes = [
        (await api.post("/v1/tenant/api-keys", json={"name": f"k{n}"}, headers=bearer(key))).status_code
        for n in range(api_keys.MAX_ACTIVE_KEYS)
    ]
    assert codes == [201] * (api_keys.MAX_ACTIVE_KEYS - 1) + [409]


async def test_rotating_with_an_overlap_does_not_lift_the_bound_on_active_keys(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    # Given a tenant with one key
    tenant_id, key = await new_tenant(pool)
    key_id = (await api.get("/v1/tenant/api-keys", headers=bearer(key))).json()[0]["id"]

    # When it keeps rotating its newest key, each time keeping the replaced one for an hour
    codes = []
    for _ in range(api_keys.MAX_ACTIVE_KEYS + 1):
        rotated = await api.post(
            f"/v1/tenant/api-keys/{key_id}/rotate", json={"overlap_s": 3600}, headers=bearer(key)
        )
        codes.append(rotated.status_code)
        if rotated.status_code == 201:
            key_id = rotated.json()["key"]["id"]

    # Then the rotation that would leave more keys than the bound, besides the one it replaces, is
    # refused, and the tenant holds at most the bound plus that one key
    assert codes == [201] * api_keys.MAX_ACTIVE_KEYS + [409]
    active = await pool.fetchval(
        "SELECT count(*) FROM api_keys WHERE tenant_id = $1 AND revoked_at IS NULL"
        " AND (expires_at IS NULL OR expires_at > now())",
        tenant_id,
    )
    assert active == api_keys.MAX_ACTIVE_KEYS + 1


async def test_key_and_operator_actions_are_in_the_audit_log(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    # Given a tenant that creates and revokes a key, and an operator who rotates its keys
    tenant_id, key = await new_tenant(pool)
    made = (await api.post("/v1/tenant/api-keys", json={"name": "pos"}, headers=bearer(key))).json()
    await api.delete(f"/v1/tenant/api-keys/{made['key']['id']}", headers=bearer(key))
    await api.post(f"/v1/operator/tenants/{tenant_id}/api-keys", headers=OPERATOR)

    # When the operator reads the tenant's audit log
    page = await api.get("/v1/operator/audit", params={"tenant_id": str(tenant_id)}, headers=OPERATOR)

    # Then it says who did what, newest first, and holds no key
    assert page.status_code == 200
    entries = page.json()["entries"]
    assert [entry["action"] for entry in entries] == ["api_key.rotated", "api_key.revoked", "api_key.created"]
    assert entries[0]["actor"].startswith("operator@")
    assert entries[1]["actor"] == entries[2]["actor"] == f"key:{key[:10]}"
    assert all(entry["tenant_id"] == str(tenant_id) for entry in entries)
    assert made["api_key"] not in page.text and key not in page.text

    # And the log is the operator's only
    assert (await api.get("/v1/operator/audit", headers=bearer(key))).status_code == 401
    one = await api.get(
        "/v1/operator/audit", params={"action": "api_key.revoked", "limit": 1}, headers=OPERATOR
    )
    assert [entry["action"] for entry in one.json()["entries"]] == ["api_key.revoked"]


@pytest.fixture
async def own_database() -> AsyncIterator[tuple[asyncpg.Pool, str]]:
    """A database of its own: the command touches every tenant, and other tests' tenants hold
    placeholder secrets."""
    env = IsolatedEnvironment()
    env.create()
    try:
        await migrate_dsn(env.database_url)
        pool = await create_pool(env.database_url, min_size=1, max_size=2)
        try:
            yield pool, env.database_url
        finally:
            await pool.close()
    finally:
        env.destroy()


async def _seed(pool: asyncpg.Pool, box: SecretBox, count: int) -> dict[uuid.UUID, str]:
    tokens = {}
    for _ in range(count):
        tenant_id, token = uuid.uuid4(), secrets.token_hex(16)
        await pool.execute(
            "INSERT INTO tenants (id, name, twilio_account_sid, twilio_auth_token_enc, whatsapp_from)"
            " VALUES ($1, 'salon', $2, $3, '+14155550100')",
            tenant_id,
            "AC" + tenant_id.hex,
            box.encrypt(token),
        )
        tokens[tenant_id] = token
    return tokens


async def test_reencryption_lets_the_old_key_be_removed(own_database: tuple[asyncpg.Pool, str]) -> None:
    pool, _ = own_database
    # Given tenants whose auth tokens are stored under the old key
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    tokens = await _seed(pool, SecretBox([old]), 7)

    # When the new key is prepended and the command runs
    first = await reencrypt_all(pool, [new, old])
    again = await reencrypt_all(pool, [new, old])

    # Then every token decrypts with the new key alone, and a second run has nothing to do
    assert (first.checked, first.reencrypted) == (7, 7)
    assert (again.checked, again.reencrypted) == (7, 0)
    only_new = SecretBox([new])
    for row in await pool.fetch("SELECT id, twilio_auth_token_enc FROM tenants"):
        assert only_new.decrypt(row["twilio_auth_token_enc"]) == tokens[row["id"]]
    actions = await pool.fetch("SELECT actor, detail FROM audit_log WHERE action = 'secrets.reencrypted'")
    assert len(actions) == 2


async def test_reencryption_covers_the_webhook_endpoints_signing_secrets(
    own_database: tuple[asyncpg.Pool, str],
) -> None:
    pool, _ = own_database
    # Given a tenant with two webhook endpoints whose signing secrets are under the old key
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    [tenant_id] = await _seed(pool, SecretBox([old]), 1)
    secrets_by_endpoint = {uuid.uuid4(): f"whsec_{secrets.token_hex(8)}" for _ in range(2)}
    for endpoint_id, secret in secrets_by_endpoint.items():
        await pool.execute(
            "INSERT INTO webhook_endpoints (id, tenant_id, url, event_types, secret_enc)"
            " VALUES ($1, $2, 'https://hooks.example.com/x', '{campaign.started}', $3)",
            endpoint_id,
            tenant_id,
            SecretBox([old]).encrypt(secret),
        )

    # When the new key is prepended and the command runs
    done = await reencrypt_all(pool, [new, old])

    # Then the endpoints' secrets decrypt with the new key alone
    assert (done.checked, done.reencrypted) == (3, 3)
    for row in await pool.fetch("SELECT id, secret_enc FROM webhook_endpoints"):
        assert SecretBox([new]).decrypt(row["secret_enc"]) == secrets_by_endpoint[row["id"]]


async def test_the_reencrypt_command_stops_on_a_secret_no_key_reads(
    own_database: tuple[asyncpg.Pool, str],
) -> None:
    pool, dsn = own_database
    # Given a tenant whose token is under a key that is no longer configured
    lost, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    [tenant_id] = await _seed(pool, SecretBox([lost]), 1)

    # When the command runs as an operator would run it
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.segmenter.reencrypt",
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "WCE_DATABASE_URL": dsn, "WCE_ENCRYPTION_KEYS": new},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=60)

    # Then it fails naming the tenant, and changes nothing
    assert process.returncode == 1, output.decode()
    assert str(tenant_id) in output.decode()
    assert SecretBox([lost]).decrypt(await pool.fetchval("SELECT twilio_auth_token_enc FROM tenants"))

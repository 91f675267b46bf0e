"""Re-encrypt every stored secret (the tenants' Twilio auth tokens and their webhook endpoints'
signing secrets) under the newest key.

    WCE_ENCRYPTION_KEYS=<new>,<old> python -m services.segmenter.reencrypt

Key rotation: prepend a new key to ``WCE_ENCRYPTION_KEYS`` on every service (old secrets still
decrypt, new ones use the new key), run this command, then remove the old key. Rows already
under the newest key are left alone, so the command can be re-run after an interruption; a
secret no configured key decrypts stops the command with its tenant named (and no old key may
be removed until it is fixed). Each batch is one transaction; the run is audited.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import asyncpg
import typer
from cryptography.fernet import Fernet, InvalidToken

from shared import audit
from shared.crypto import SecretBox
from shared.db import all_tenants_transaction, create_pool
from shared.logging import configure_logging, get_logger
from shared.settings import get_settings

log = get_logger(__name__)

BATCH = 500

SELECT_BATCH = """
SELECT id, id AS tenant_id, twilio_auth_token_enc AS secret FROM tenants
WHERE id > $1 ORDER BY id LIMIT $2 FOR UPDATE
"""
UPDATE_SECRET = "UPDATE tenants SET twilio_auth_token_enc = $2 WHERE id = $1"
SELECT_ENDPOINT_BATCH = """
SELECT id, tenant_id, secret_enc AS secret FROM webhook_endpoints
WHERE id > $1 ORDER BY id LIMIT $2 FOR UPDATE
"""
UPDATE_ENDPOINT_SECRET = "UPDATE webhook_endpoints SET secret_enc = $2 WHERE id = $1"
NO_ID = "00000000-0000-0000-0000-000000000000"
# Each table's secrets: how to read a batch, how to store one, and what the secret is.
SECRETS = (
    (SELECT_BATCH, UPDATE_SECRET, "its auth token"),
    (SELECT_ENDPOINT_BATCH, UPDATE_ENDPOINT_SECRET, "a webhook endpoint's signing secret"),
)


class UnreadableSecret(RuntimeError):
    pass


@dataclass(frozen=True)
class Reencrypted:
    checked: int
    reencrypted: int


async def reencrypt_all(
    pool: asyncpg.Pool, keys: list[str], *, actor: str = "command:reencrypt"
) -> Reencrypted:
    box, newest = SecretBox(keys), Fernet(keys[0].encode())
    checked = changed = 0
    for select, update, what in SECRETS:
        after = NO_ID
        while True:
            # Every tenant's secrets: a cross-tenant transaction (webhook endpoints have row-level
            # security).
            async with all_tenants_transaction(pool) as conn:
                rows = await conn.fetch(select, after, BATCH)
                for row in rows:
                    checked += 1
                    token: str = row["secret"]
                    try:
                        newest.decrypt(token.encode())
                        continue
                    except InvalidToken:
                        pass
                    try:
                        rotated = box.rotate(token)
                    except InvalidToken:
                        raise UnreadableSecret(
                            f"tenant {row['tenant_id']}: no configured key decrypts {what}"
                        ) from None
                    await conn.execute(update, row["id"], rotated)
                    changed += 1
            if len(rows) < BATCH:
                break
            after = rows[-1]["id"]
    await audit.record(
        pool,
        actor=actor,
        action="secrets.reencrypted",
        tenant_id=None,
        detail={"checked": checked, "reencrypted": changed},
    )
    return Reencrypted(checked, changed)


async def _run() -> Reencrypted:
    settings = get_settings()
    pool = await create_pool(settings.database_url, min_size=1, max_size=1, retry_s=settings.startup_retry_s)
    try:
        return await reencrypt_all(pool, settings.encryption_keys)
    finally:
        await pool.close()


def main() -> None:
    settings = get_settings()
    configure_logging("reencrypt", settings.log_level)
    try:
        done = asyncio.run(_run())
    except UnreadableSecret as exc:
        typer.echo(f"stopped: {exc}", err=True)
        raise typer.Exit(1) from None
    log.info("secrets re-encrypted", checked=done.checked, reencrypted=done.reencrypted)
    typer.echo(f"checked {done.checked} secrets, re-encrypted {done.reencrypted} under the newest key")


if __name__ == "__main__":
    typer.run(main)

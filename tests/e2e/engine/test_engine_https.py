"""Sending over HTTPS, as to real Twilio: the simulator's TLS listener with a throwaway CA, the
certificate chain and host name verified by the senders."""

from __future__ import annotations

from collections.abc import Iterator

import asyncpg
import pytest

from shared.http1 import KeepAliveClient, NotSent
from tests.e2e.engine.conftest import FAST_ENV
from tests.e2e.engine.engine_helpers import seed_customers, simulator_stats, wait_settled
from tests.e2e.helpers import create_campaign, new_tenant
from tests.support import IsolatedEnvironment, Stack
from tools.twilio_sim.tls import throwaway_ca

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(scope="module")
def https_stack(
    isolated_env: IsolatedEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    tls = throwaway_ca(tmp_path_factory.mktemp("tls"))
    stack = Stack(
        env=isolated_env.env(**FAST_ENV),
        log_dir=tmp_path_factory.mktemp("https"),
        senders=1,
        simulator_tls=tls,
    )
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


async def test_a_campaign_is_sent_over_https_with_the_certificate_verified(
    https_stack: Stack, pool: asyncpg.Pool
) -> None:
    # Given senders that reach Twilio at an https URL served with a certificate of a throwaway CA
    assert https_stack.env["WCE_TWILIO_API_BASE_URL"].startswith("https://localhost:")
    tenant = await new_tenant(https_stack, rate=None)
    await seed_customers(pool, tenant, 50)

    # When a campaign to 50 runs
    started = await create_campaign(https_stack, tenant)
    counts = await wait_settled(pool, started["id"], 50, timeout_s=120, stack=https_stack)

    # Then everyone was sent, once, over TLS
    assert set(counts) <= {"sent", "delivered", "read"}, counts
    stats = await simulator_stats(https_stack, tenant.account_sid)
    assert stats["accepted_total"] == 50 and not stats["duplicates"]


async def test_a_client_that_does_not_trust_the_certificate_never_sends(https_stack: Stack) -> None:
    # Given a client with the system's trust store only (this process has no SSL_CERT_FILE)
    client = KeepAliveClient(5.0)
    try:
        # When it calls the TLS listener, Then the handshake fails before any request is written
        with pytest.raises(NotSent, match=r"(?i)certificate"):
            await client.request("GET", f"https://localhost:{https_stack.simulator_tls_port}/healthz")
    finally:
        await client.close()

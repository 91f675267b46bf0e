"""The public surface: with the docs switched off and metrics moved to an internal port, the
tracker's port serves only webhooks, tenant reads and probes; even at DEBUG, the logs carry no
phone number or message body; Twilio's answers are read only up to a size cap."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from shared.http1 import KeepAliveClient, ResponseLost, ResponseTooLarge
from shared.logging import QUIET_LOGGERS, configure_logging
from tests.integration.tracker.helpers import RunningTracker, eventually, new_sid, seed_tenant
from tests.support import IsolatedEnvironment, ManagedProcess, free_port
from tests.unit.test_http1 import raw_server


@pytest.fixture(scope="module")
def internal_tracker(
    isolated_env: IsolatedEnvironment,
    pool: asyncpg.Pool,
    seeded_data_removed: None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[RunningTracker, str]]:
    """A tracker at DEBUG with its docs off and its metrics on an internal port."""
    public_port, internal_port = sorted((free_port(), free_port()))
    url = f"http://127.0.0.1:{public_port}"
    env = isolated_env.env(
        WCE_TRACKER_PORT=str(public_port),
        WCE_PUBLIC_BASE_URL=url,
        WCE_LOG_LEVEL="DEBUG",
        WCE_API_DOCS_ENABLED="false",
        WCE_INTERNAL_PORT_OFFSET=str(internal_port - public_port),
    )
    process = ManagedProcess(
        "services.tracker", env, f"{url}/readyz", Path(tmp_path_factory.mktemp("tracker"))
    )
    try:
        process.wait_healthy()
        yield RunningTracker(process, url), f"http://127.0.0.1:{internal_port}"
    finally:
        process.stop()


async def test_the_public_port_serves_no_metrics_and_no_docs(
    internal_tracker: tuple[RunningTracker, str],
) -> None:
    tracker, internal = internal_tracker
    async with httpx.AsyncClient(timeout=10) as client:
        for path in ("/metrics", "/docs", "/redoc", "/openapi.json"):
            assert (await client.get(tracker.url + path)).status_code == 404, path
        assert (await client.get(tracker.url + "/readyz")).status_code == 200
        assert (await client.post(tracker.url + f"/twilio/status/{new_sid()}")).status_code == 403
        metrics = await client.get(internal + "/metrics")
    assert metrics.status_code == 200
    assert "wce_webhook_rejections_total" in metrics.text


async def test_at_debug_no_phone_number_or_message_body_reaches_the_logs(
    internal_tracker: tuple[RunningTracker, str], pool: asyncpg.Pool
) -> None:
    # Given a tracker logging at DEBUG
    tracker, _ = internal_tracker
    tenant = await seed_tenant(pool)
    sender, words = "+14155550187", "please-do-not-log-these-words"

    # When a person's message comes in and is processed
    async with httpx.AsyncClient(timeout=10) as client:
        answer = await tracker.post_inbound(client, tenant, sender=sender, body=words)
    assert answer.status_code == 200
    stored = await eventually(
        lambda: pool.fetchval("SELECT count(*) FROM inbound_messages WHERE body = $1", words)
    )
    assert stored == 1

    # Then neither the number nor the words are in the log
    log = tracker.process.log_path.read_text(errors="replace")
    assert sender not in log and sender.lstrip("+") not in log
    assert words not in log


def test_amqp_client_loggers_stay_at_warning_whatever_the_level() -> None:
    root_level = logging.getLogger().level
    try:
        configure_logging("test", "DEBUG")
        for name in QUIET_LOGGERS:
            assert logging.getLogger(name).getEffectiveLevel() == logging.WARNING, name
    finally:
        logging.getLogger().setLevel(root_level)


async def test_an_endless_answer_is_cut_at_the_size_cap() -> None:
    async def endless(_: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n")
        for _ in range(200):
            writer.write(b"x" * 65536)
            await writer.drain()

    async with raw_server(endless) as (url, _):
        client = KeepAliveClient(10, max_response_bytes=256 * 1024)
        try:
            with pytest.raises(ResponseTooLarge) as cut:
                await client.post(url + "/2010-04-01/Accounts/AC1/Messages.json", b"To=x")
        finally:
            await client.close()
    # It reached the server: a sender treats it like any lost answer (never blindly resent).
    assert isinstance(cut.value, ResponseLost)

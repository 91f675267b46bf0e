"""Rows left at ``sent``/``delivered`` because their status callbacks were lost are re-checked
with Twilio's Message fetch (the simulator, callbacks switched off) on the real database and
broker: the newer statuses go to the tracker as status callbacks and are applied by its rules;
a tenant whose credentials Twilio refuses changes nothing for the others; a row is re-checked
at most a bounded number of times, and at most a bounded number per tenant per pass."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aio_pika
import asyncpg
import pytest
from aio_pika.abc import AbstractQueue, AbstractRobustConnection
from prometheus_client import REGISTRY

from services.sender import maintenance as maintenance_module
from services.sender.directory import Directory
from services.sender.maintenance import Maintenance, MaintenanceSettings
from services.sender.metrics import STATUS_RECHECKS
from services.sender.recording import Recorder
from services.tracker.callbacks import record_callbacks
from services.tracker.status import Callback, dedupe_key
from services.tracker.wire import decode_batch
from shared import topology
from shared.broker import Publisher
from shared.crypto import SecretBox
from shared.settings import DEVELOPMENT_ENCRYPTION_KEY
from shared.twilio_client import TwilioClient, TwilioCredentials, TwilioError
from tests.support import IsolatedEnvironment
from tools.twilio_sim.admin_client import SimulatorAdmin

pytestmark = pytest.mark.asyncio(loop_scope="session")

ROOT = Path(__file__).resolve().parents[3]
SENDER = "+14155238886"
BOX = SecretBox([DEVELOPMENT_ENCRYPTION_KEY])
UNDELIVERABLE = "+14155550999"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def simulator_url() -> Iterator[str]:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tools.twilio_sim", "--host", "127.0.0.1", "--port", str(port), "--seed", "3"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
async def admin(simulator_url: str) -> AsyncIterator[SimulatorAdmin]:
    async with SimulatorAdmin(simulator_url) as client:
        await client.wait_ready()
        yield client


@pytest.fixture
async def client(simulator_url: str) -> AsyncIterator[TwilioClient]:
    twilio = TwilioClient(
        api_base_url=simulator_url, content_base_url=simulator_url, timeout_s=5, max_connections=8
    )
    try:
        yield twilio
    finally:
        await twilio.aclose()


@pytest.fixture
async def connection(isolated_env: IsolatedEnvironment) -> AsyncIterator[AbstractRobustConnection]:
    connection = await aio_pika.connect_robust(isolated_env.amqp_url)
    async with connection:
        channel = await connection.channel()
        await topology.declare_exchanges(channel, [1])
        yield connection


@pytest.fixture
async def status_spy(connection: AbstractRobustConnection) -> AsyncIterator[AbstractQueue]:
    """A private queue bound like the tracker's status queue."""
    channel = await connection.channel()
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(topology.STATUS_EXCHANGE, topology.STATUS_ROUTING_KEY)
    yield queue


async def new_tenant(
    pool: asyncpg.Pool, admin: SimulatorAdmin, *, registered: bool = True
) -> tuple[uuid.UUID, TwilioCredentials]:
    tenant_id = uuid.uuid4()
    credentials = TwilioCredentials("AC" + uuid.uuid4().hex, uuid.uuid4().hex)
    if registered:
        await admin.register_account(credentials.account_sid, credentials.auth_token)
        # Every status callback of this account is lost.
        await admin.set_faults(
            account_sid=credentials.account_sid,
            callbacks_enabled=False,
            read_ratio=0.0,
            permanent_errors={UNDELIVERABLE: 63016},
        )
    await pool.execute(
        "INSERT INTO tenants (id, name, twilio_account_sid, twilio_auth_token_enc, whatsapp_from)"
        " VALUES ($1, 't', $2, $3, $4)",
        tenant_id,
        credentials.account_sid,
        BOX.encrypt(credentials.auth_token),
        SENDER,
    )
    return tenant_id, credentials


async def sent_rows(
    pool: asyncpg.Pool, tenant_id: uuid.UUID, sids: list[str], *, age_s: float = 3600
) -> list[int]:
    """A running campaign with one row at ``sent`` per SID, last changed ``age_s`` ago."""
    campaign_id = uuid.uuid4()
    await pool.execute(
        "INSERT INTO campaigns (id, tenant_id, name, audience, template, state)"
        " VALUES ($1, $2, 'c', '{}', '{}', 'running')",
        campaign_id,
        tenant_id,
    )
    prefix = uuid.uuid4().int % 900 + 100
    return [
        await pool.fetchval(
            "INSERT INTO recipients"
            " (tenant_id, campaign_id, phone_e164, state, twilio_sid, sent_at, updated_at)"
            " VALUES ($1, $2, $3, 'sent', $4, now() - make_interval(secs => $5),"
            " now() - make_interval(secs => $5)) RETURNING id",
            tenant_id,
            campaign_id,
            f"+1415{prefix}{i:04d}",
            sid,
            age_s,
        )
        for i, sid in enumerate(sids)
    ]


async def only_these_due(pool: asyncpg.Pool, ids: list[int]) -> None:
    """Put the rows that the session's other tests left at sent/delivered past the re-check cap,
    so that a test counting what one pass takes sees only its own rows."""
    await pool.execute(
        "UPDATE recipients SET status_rechecks = 1000"
        " WHERE state IN ('sent', 'delivered') AND NOT id = ANY($1::bigint[])",
        ids,
    )


async def create(client: TwilioClient, credentials: TwilioCredentials, to: str) -> str:
    created = await client.create_message(
        credentials,
        to=f"whatsapp:{to}",
        from_=f"whatsapp:{SENDER}",
        body="Your appointment is tomorrow",
        status_callback="http://127.0.0.1:9/status",
    )
    return created.sid


async def wait_final_at_twilio(client: TwilioClient, credentials: TwilioCredentials, sids: list[str]) -> None:
    for _ in range(100):
        statuses = [(await client.fetch_message(credentials, sid)).status for sid in sids]
        if all(status in {"delivered", "undelivered", "failed"} for status in statuses):
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(statuses)


def maintenance(
    pool: asyncpg.Pool,
    connection: AbstractRobustConnection,
    publisher: Publisher,
    client: TwilioClient,
    **settings: float,
) -> Maintenance:
    return Maintenance(
        pool=pool,
        connection=connection,
        publisher=publisher,
        client=client,
        directory=Directory(pool, BOX),
        recorder=Recorder(pool, publisher),
        settings=MaintenanceSettings(
            interval_s=1,
            reconcile_after_s=30,
            sweep_idle_s=30,
            retry_tiers_s=[1],
            publish_batch_size=100,
            late_create_bound_s=40,
            lease_s=30,
            status_recheck_after_s=settings.get("after_s", 60),
            status_recheck_per_tenant=int(settings.get("per_tenant", 50)),
            status_recheck_max=int(settings.get("max_rechecks", 4)),
        ),
    )


async def apply_published(pool: asyncpg.Pool, queue: AbstractQueue) -> list[Callback]:
    """What the tracker's status consumer does with the published batches."""
    applied: list[Callback] = []
    while (message := await queue.get(no_ack=True, fail=False, timeout=5)) is not None:
        received = []
        for tenant_id, params, token, at in decode_batch(message.body):
            callback = Callback.from_params(tenant_id, params, at)
            assert callback is not None
            received.append((dedupe_key(callback.message_sid, callback.status, token), callback))
            applied.append(callback)
        await record_callbacks(pool, received)
    return applied


def rechecks(outcome: str) -> float:
    STATUS_RECHECKS.labels(outcome)
    return REGISTRY.get_sample_value("wce_status_rechecks_total", {"outcome": outcome}) or 0.0


async def states(pool: asyncpg.Pool, ids: list[int]) -> list[tuple[str, int | None, int]]:
    rows = await pool.fetch(
        "SELECT state, error_code, status_rechecks FROM recipients WHERE id = ANY($1) ORDER BY id", ids
    )
    return [(r["state"], r["error_code"], r["status_rechecks"]) for r in rows]


async def test_rows_whose_callbacks_were_lost_get_their_final_status_from_a_fetch_and_others_are_unharmed(
    pool: asyncpg.Pool,
    admin: SimulatorAdmin,
    client: TwilioClient,
    connection: AbstractRobustConnection,
    status_spy: AbstractQueue,
) -> None:
    # Given a tenant whose messages Twilio delivered (one failed) but whose callbacks were all
    # lost, a row with a SID Twilio does not know, a recent row, and a tenant Twilio refuses
    tenant_id, credentials = await new_tenant(pool, admin)
    sids = [await create(client, credentials, f"+1555{i:07d}") for i in range(3)]
    sids.append(await create(client, credentials, UNDELIVERABLE))
    await wait_final_at_twilio(client, credentials, sids)
    ids = await sent_rows(pool, tenant_id, [*sids, "SM" + uuid.uuid4().hex])
    recent = await sent_rows(pool, tenant_id, [await create(client, credentials, "+15559999999")], age_s=1)
    refused_tenant, _ = await new_tenant(pool, admin, registered=False)
    refused = await sent_rows(pool, refused_tenant, ["SM" + uuid.uuid4().hex])
    before = {outcome: rechecks(outcome) for outcome in ("changed", "unchanged", "not_found", "error")}
    publisher = await Publisher.open(connection)
    sender = maintenance(pool, connection, publisher, client)
    assert await sender.lease.acquire()

    # When maintenance re-checks, and the tracker applies what it published
    published = await sender.recheck_statuses()
    applied = await apply_published(pool, status_spy)

    # Then the delivered rows are delivered, the failed one carries Twilio's error code
    assert published == 4
    assert {c.message_sid for c in applied} == set(sids)
    assert await states(pool, ids) == [
        ("delivered", None, 1),
        ("delivered", None, 1),
        ("delivered", None, 1),
        ("failed_delivery", 63016, 1),
        ("sent", None, 1),
    ]
    sources = await pool.fetch(
        "SELECT to_state FROM message_events WHERE recipient_id = ANY($1) AND to_state <> 'sent'", ids
    )
    assert sorted(r["to_state"] for r in sources) == ["delivered"] * 3 + ["failed_delivery"]
    # And the recent row was not fetched, the refused tenant's row waits without counting a re-check
    assert await states(pool, recent) == [("sent", None, 0)]
    assert await states(pool, refused) == [("sent", None, 0)]
    assert rechecks("changed") - before["changed"] == 4
    assert rechecks("not_found") - before["not_found"] == 1
    assert rechecks("error") - before["error"] >= 1

    # And a second pass right after fetches none of them again (each waits its doubled interval)
    assert await sender.recheck_statuses() == 0
    assert await apply_published(pool, status_spy) == []
    assert rechecks("not_found") - before["not_found"] == 1
    await sender.lease.release()


async def test_re_checks_are_bounded_per_tenant_per_pass_and_per_row(
    pool: asyncpg.Pool,
    admin: SimulatorAdmin,
    client: TwilioClient,
    connection: AbstractRobustConnection,
    status_spy: AbstractQueue,
) -> None:
    # Given a busy tenant with five rows at sent (SIDs Twilio does not know), and a quiet tenant
    # with one row whose callbacks were lost
    busy, _ = await new_tenant(pool, admin)
    busy_ids = await sent_rows(pool, busy, ["SM" + uuid.uuid4().hex for _ in range(5)])
    quiet, quiet_credentials = await new_tenant(pool, admin)
    quiet_sid = await create(client, quiet_credentials, "+15550000001")
    await wait_final_at_twilio(client, quiet_credentials, [quiet_sid])
    quiet_ids = await sent_rows(pool, quiet, [quiet_sid])
    publisher = await Publisher.open(connection)
    sender = maintenance(pool, connection, publisher, client, after_s=0.2, per_tenant=2, max_rechecks=2)
    assert await sender.lease.acquire()

    # When one pass runs / Then the busy tenant had two rows fetched and the quiet one was not starved
    await sender.recheck_statuses()
    await apply_published(pool, status_spy)
    assert sorted(r[2] for r in await states(pool, busy_ids)) == [0, 0, 0, 1, 1]
    assert await states(pool, quiet_ids) == [("delivered", None, 1)]

    # When passes keep running / Then no row is fetched more than twice
    for _ in range(12):
        await sender.recheck_statuses()
        await asyncio.sleep(0.25)
    assert [r[2] for r in await states(pool, busy_ids)] == [2] * 5
    await sender.lease.release()


async def test_re_checks_are_bounded_in_all_per_pass_and_shared_in_turns_however_many_tenants_are_due(
    pool: asyncpg.Pool,
    admin: SimulatorAdmin,
    client: TwilioClient,
    connection: AbstractRobustConnection,
    status_spy: AbstractQueue,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given three tenants with two rows each left at sent for ages (SIDs Twilio does not know),
    # the first tenant's the oldest, and room for four re-checks per pass
    monkeypatch.setattr(maintenance_module, "STATUS_RECHECK_BATCH", 4)
    ages = 10 * 365 * 86_400
    rows = []
    for k in range(3):
        tenant, _ = await new_tenant(pool, admin)
        sids = ["SM" + uuid.uuid4().hex for _ in range(2)]
        rows.append(await sent_rows(pool, tenant, sids, age_s=ages + 3600 * (3 - k)))
    await only_these_due(pool, [row for ids in rows for row in ids])
    publisher = await Publisher.open(connection)
    sender = maintenance(pool, connection, publisher, client, per_tenant=2)
    assert await sender.lease.acquire()

    # When one pass runs / Then every tenant's oldest row was fetched, and the oldest tenant's
    # second one
    await sender.recheck_statuses()
    assert [[r[2] for r in await states(pool, ids)] for ids in rows] == [[1, 1], [1, 0], [1, 0]]

    # When the next pass runs / Then the rows left are fetched
    await sender.recheck_statuses()
    assert [[r[2] for r in await states(pool, ids)] for ids in rows] == [[1, 1], [1, 1], [1, 1]]
    await sender.lease.release()


async def test_tenants_whose_re_checks_keep_failing_do_not_hold_back_another_tenants(
    pool: asyncpg.Pool,
    admin: SimulatorAdmin,
    client: TwilioClient,
    connection: AbstractRobustConnection,
    status_spy: AbstractQueue,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given four tenants whose credentials Twilio refuses, with older rows left at sent than fit in
    # a pass, and a tenant whose callbacks were lost for one delivered message
    monkeypatch.setattr(maintenance_module, "STATUS_RECHECK_BATCH", 6)
    refused = []
    for k in range(4):
        tenant, _ = await new_tenant(pool, admin, registered=False)
        sids = ["SM" + uuid.uuid4().hex for _ in range(3)]
        refused.append(await sent_rows(pool, tenant, sids, age_s=86_400 + 3600 * k))
    lost, lost_credentials = await new_tenant(pool, admin)
    lost_sid = await create(client, lost_credentials, "+15550000002")
    await wait_final_at_twilio(client, lost_credentials, [lost_sid])
    lost_ids = await sent_rows(pool, lost, [lost_sid])
    await only_these_due(pool, [*lost_ids, *(row for ids in refused for row in ids)])
    publisher = await Publisher.open(connection)
    sender = maintenance(pool, connection, publisher, client, after_s=0.2, per_tenant=3)
    assert await sender.lease.acquire()

    # When one pass runs / Then the refused tenants' rows were only postponed, and the other
    # tenant's row got its status
    await sender.recheck_statuses()
    await apply_published(pool, status_spy)
    assert await states(pool, lost_ids) == [("delivered", None, 1)]
    for ids in refused:
        assert [r[2] for r in await states(pool, ids)] == [0, 0, 0]
    await sender.lease.release()


async def test_the_client_fetches_a_message_as_twilio_returns_it(
    admin: SimulatorAdmin, client: TwilioClient, pool: asyncpg.Pool
) -> None:
    _, credentials = await new_tenant(pool, admin)
    sid = await create(client, credentials, "+15550000002")
    await wait_final_at_twilio(client, credentials, [sid])
    fetched = await client.fetch_message(credentials, sid)
    assert (fetched.sid, fetched.status, fetched.error_code) == (sid, "delivered", None)
    with pytest.raises(TwilioError) as missing:
        await client.fetch_message(credentials, "SM" + uuid.uuid4().hex)
    assert missing.value.http_status == 404 and missing.value.code == 20404

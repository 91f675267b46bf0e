"""On a RabbitMQ cluster of three nodes of this test's own, the engine connected to all three
(``WCE_AMQP_URL`` lists them) survives the loss of the node holding the queue leaders
mid-campaign: the quorum queues elect leaders on the other nodes, the services fail over to a
live node, and the campaign completes with nothing lost and no number sent twice beyond the
counted ambiguous sends."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from shared import topology
from tests.e2e.engine.conftest import FAST_ENV
from tests.e2e.engine.engine_helpers import seed_customers, wait_sent
from tests.e2e.engine.test_engine_resilience import assert_exactly_once
from tests.e2e.helpers import create_campaign, new_tenant
from tests.rabbitmq_cluster import RabbitCluster
from tests.support import IsolatedEnvironment, Stack

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitCluster]:
    running = RabbitCluster(Path(tmp_path_factory.mktemp("rabbitmq-cluster")))
    try:
        running.start()
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def cluster_stack(
    cluster: RabbitCluster, isolated_env: IsolatedEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    env = isolated_env.env(**FAST_ENV)
    env["WCE_AMQP_URL"] = cluster.amqp_url
    # Replicated tenant queues, so the node's loss moves their leaders too.
    env["WCE_DISPATCH_QUEUE_TYPE"] = "quorum"
    stack = Stack(env=env, log_dir=tmp_path_factory.mktemp("cluster-engine"), senders=2)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


async def test_killing_the_node_of_the_queue_leaders_mid_campaign_loses_and_duplicates_nothing(
    cluster: RabbitCluster, cluster_stack: Stack, pool: asyncpg.Pool
) -> None:
    # Given a running 8,000-recipient campaign on an engine connected to the three nodes
    tenant = await new_tenant(cluster_stack, rate=None)
    await seed_customers(pool, tenant, 8_000, start=500_000)
    started = await create_campaign(cluster_stack, tenant)
    dispatch = topology.dispatch_queue_name(tenant.id, "quorum")
    leaders = await asyncio.to_thread(cluster.queue_leaders, cluster.nodes[1])
    assert {topology.SEND_QUEUE, topology.STATUS_QUEUE, dispatch} <= leaders.keys(), leaders
    await wait_sent(pool, started["id"], 2_000, timeout_s=180)

    # When the node that leads the send queue is killed (SIGKILL, no clean shutdown)
    victim = next(node for node in cluster.nodes if node.name == leaders[topology.SEND_QUEUE])
    await asyncio.to_thread(victim.kill)

    # Then the campaign completes, every number once except counted ambiguous sends
    await assert_exactly_once(cluster_stack, pool, tenant, started["id"], 8_000)
    # And the send and dispatch queues are led from a surviving node
    survivor = next(node for node in cluster.nodes if node is not victim)
    after = await asyncio.to_thread(cluster.queue_leaders, survivor)
    for name in (topology.SEND_QUEUE, topology.STATUS_QUEUE, dispatch):
        assert after[name] != victim.name and after[name] in {node.name for node in cluster.nodes}

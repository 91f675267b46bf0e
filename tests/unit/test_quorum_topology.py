"""Every durable queue is a quorum queue under a name of the quorum generation; work and dispatch
queues hand a message delivered too often to their own parked queue; private queues stay classic."""

from __future__ import annotations

import pathlib
import uuid

import pytest

from shared import topology
from shared.settings import Settings


def durable_queues() -> list[topology.QueueSpec]:
    tenant = str(uuid.uuid4())
    work = [*topology.WORK_QUEUES, topology.dispatch_queue(tenant, "quorum")]
    return [
        *work,
        *(topology.parked_queue(spec.name) for spec in work),
        *(topology.retry_queue(delay) for delay in Settings().retry_tiers_s),
    ]


def test_every_durable_queue_is_a_quorum_queue_of_the_current_generation() -> None:
    for spec in durable_queues():
        assert spec.args()["x-queue-type"] == "quorum", spec.name
        assert f".{topology.QUEUE_GENERATION}" in spec.name, f"{spec.name} keeps a classic queue's name"


def test_work_and_dispatch_queues_park_a_message_delivered_past_the_limit_in_their_own_dlq() -> None:
    tenant = str(uuid.uuid4())
    for spec in [*topology.WORK_QUEUES, topology.dispatch_queue(tenant, "quorum")]:
        args = spec.args()
        assert args["x-delivery-limit"] == topology.DELIVERY_LIMIT
        assert args["x-dead-letter-exchange"] == topology.PARKED_EXCHANGE
        parked = topology.parked_queue(spec.name)
        assert (topology.PARKED_EXCHANGE, args["x-dead-letter-routing-key"]) in parked.bindings
        assert parked.name == f"{spec.name}.dlq"
        assert args["x-dead-letter-strategy"] == "at-least-once"
        assert args["x-overflow"] == "reject-publish", "at-least-once dead-lettering needs it"


def test_parked_queues_have_no_limit_that_could_drop_what_they_hold() -> None:
    for spec in durable_queues():
        if spec.name.endswith(".dlq"):
            assert "x-delivery-limit" not in spec.args() and "x-message-ttl" not in spec.args()
            assert "x-dead-letter-exchange" not in spec.args()


def test_consumers_park_before_the_broker_does() -> None:
    assert Settings().consumer_max_deliveries < topology.DELIVERY_LIMIT
    try:
        Settings(consumer_max_deliveries=topology.DELIVERY_LIMIT)
    except ValueError as error:
        assert "consumer_max_deliveries" in str(error)
    else:
        raise AssertionError("a consumer limit at the broker's limit was accepted")


def test_no_queue_name_of_the_classic_generation_is_reused() -> None:
    classic = {
        "wce.send",
        "wce.status.callbacks",
        "wce.status.inbound",
        "wce.segmenter.commands",
        "wce.segmenter.booking",
        "wce.retry.5s",
        "wce.retry.30s",
    }
    names = {spec.name for spec in durable_queues()}
    assert not names & classic
    assert not any(name.startswith("wce.dispatch.") and name.count(".") == 2 for name in names)


def test_queue_names_in_the_alerts_and_the_autoscalers_are_the_topologys() -> None:
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    known = {spec.name for spec in durable_queues()}
    texts = [root / "deploy/prometheus/alerts.yml", root / "deploy/k8s/production/keda.yaml"]
    for path in texts:
        names = re.findall(r'queue="(wce\.[^"]+)"|queueName: (wce\.\S+)', path.read_text())
        for name in {a or b for a, b in names}:
            assert name in known, f"{path.name} names {name}, which the topology does not declare"


def test_the_dispatch_queue_type_is_read_from_dotenv_like_every_setting(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a .env asking for classic tenant queues and nothing in the environment
    (tmp_path / ".env").write_text("WCE_DISPATCH_QUEUE_TYPE=classic\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WCE_DISPATCH_QUEUE_TYPE", raising=False)

    # Then the names are the classic ones, as the settings object reads them
    assert Settings().dispatch_queue_type == topology.dispatch_queue_type() == "classic"
    assert topology.dispatch_queue_name("t") == "wce.dispatch.t"

    # And the environment wins over .env, as for every setting
    monkeypatch.setenv("WCE_DISPATCH_QUEUE_TYPE", "quorum")
    assert topology.dispatch_queue_name("t") == f"wce.dispatch.{topology.QUEUE_GENERATION}.t"

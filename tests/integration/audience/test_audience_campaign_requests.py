"""Another system requests campaigns over the broker with its own AMQP client (pika, blocking),
knowing only what the AsyncAPI document says (exchanges, routing keys, AMQP properties, payload
schemas): exactly one campaign per idempotency key, outcomes published back as documented."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import jsonschema
import pika
import yaml

from tests.e2e.helpers import customers, import_customers, new_tenant
from tests.support import ROOT, IsolatedEnvironment, Stack


class Contract:
    """The broker contract as docs/asyncapi.yaml states it: where each message goes, its AMQP
    properties and its payload schema. The external system below knows nothing else."""

    def __init__(self) -> None:
        self.document: dict[str, Any] = yaml.safe_load((ROOT / "docs" / "asyncapi.yaml").read_text())

    def channel(self, channel_id: str) -> dict[str, Any]:
        channel: dict[str, Any] = self.document["channels"][channel_id]
        return channel

    def exchange(self, channel_id: str) -> str:
        return str(self.channel(channel_id)["bindings"]["amqp"]["exchange"]["name"])

    def message(self, channel_id: str, version: int = 1) -> dict[str, Any]:
        """The channel's message of this payload version (the first when it carries only one)."""
        names = list(self.channel(channel_id)["messages"])
        messages = [self.document["components"]["messages"][name] for name in names]
        for message in messages:
            if message["bindings"]["amqp"]["messageType"].endswith(f".v{version}"):
                found: dict[str, Any] = message
                return found
        raise AssertionError(f"{channel_id} carries no version {version}")

    def operation(self, channel_id: str) -> dict[str, Any]:
        [operation] = [
            op
            for op in self.document["operations"].values()
            if op["channel"]["$ref"] == f"#/channels/{channel_id}"
        ]
        return operation

    def channel_of_key(self, routing_key: str) -> str:
        for channel_id, channel in self.document["channels"].items():
            address = channel["address"]
            for name, parameter in (channel.get("parameters") or {}).items():
                for value in parameter.get("enum", []):
                    if address.replace("{" + name + "}", value) == routing_key:
                        return str(channel_id)
            if address == routing_key:
                return str(channel_id)
        raise AssertionError(f"{routing_key} is on no channel of the contract")

    def check(self, routing_key: str, message_type: str | None, body: dict[str, Any]) -> None:
        """A message the engine sent is on a channel the engine sends on, and matches it."""
        channel_id = self.channel_of_key(routing_key)
        assert self.operation(channel_id)["action"] == "send", routing_key
        message = self.message(channel_id)
        assert message_type == message["bindings"]["amqp"]["messageType"], routing_key
        schema = {**message["payload"], "components": self.document["components"]}
        jsonschema.validate(body, schema, cls=jsonschema.Draft202012Validator)


class ExternalSystem:
    """A requester that only knows the broker contract: exchanges, routing keys, JSON bodies."""

    def __init__(self, amqp_url: str) -> None:
        self.contract = Contract()
        parameters = pika.URLParameters(amqp_url)
        self.user = parameters.credentials.username
        self.connection = pika.BlockingConnection(parameters)
        self.channel = self.connection.channel()
        self.channel.confirm_delivery()
        declared = self.channel.queue_declare(queue="", exclusive=True)
        self.replies = declared.method.queue
        for key in ("campaign.accepted", "campaign.rejected", "campaign.started"):
            self.channel.queue_bind(
                self.replies, self.contract.exchange(self.contract.channel_of_key(key)), routing_key=key
            )

    def request(self, body: dict[str, Any]) -> None:
        channel_id = "campaign.requested"
        assert self.contract.operation(channel_id)["action"] == "receive"
        message = self.contract.message(channel_id, version=body["v"])
        self.channel.basic_publish(
            self.contract.exchange(channel_id),
            self.contract.channel(channel_id)["address"],
            json.dumps(body).encode(),
            pika.BasicProperties(
                content_type=message["contentType"],
                delivery_mode=self.contract.operation(channel_id)["bindings"]["amqp"]["deliveryMode"],
                type=message["bindings"]["amqp"]["messageType"],
                user_id=self.user,
            ),
            mandatory=True,
        )

    def next_event(self, timeout_s: float = 30.0) -> tuple[str, dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            method, properties, body = self.channel.basic_get(self.replies, auto_ack=True)
            if method is not None:
                payload = json.loads(body)
                self.contract.check(method.routing_key, properties.type, payload)
                return method.routing_key, payload
            self.connection.process_data_events(time_limit=0.05)
        raise TimeoutError("no event from the segmenter")

    def events_until(self, wanted: set[str]) -> dict[str, dict[str, Any]]:
        seen: dict[str, dict[str, Any]] = {}
        while not wanted <= seen.keys():
            key, body = self.next_event()
            seen[key] = body
        return seen

    def close(self) -> None:
        self.connection.close()


def request_body(tenant_id: str, key: str, **overrides: Any) -> dict[str, Any]:
    return {
        "v": 1,
        "tenant_id": tenant_id,
        "idempotency_key": key,
        "name": "spring promo",
        "audience": {"segment": "all_customers"},
        "template": {"body": "Hi {customer_first_name}!"},
        **overrides,
    }


def conversation(amqp_url: str, tenant_id: str) -> dict[str, Any]:
    system = ExternalSystem(amqp_url)
    try:
        system.request(request_body(tenant_id, "order-1"))
        first = system.events_until({"campaign.accepted", "campaign.started"})
        system.request(request_body(tenant_id, "order-1"))
        _, repeated = system.next_event()
        system.request(
            request_body(
                tenant_id,
                "order-2",
                audience={"segment": "lapsed", "days": -5},
                template={"body": "Hi {customer_nickname}"},
            )
        )
        rejected_key, rejected = system.next_event()
        return {"first": first, "repeated": repeated, "rejected_key": rejected_key, "rejected": rejected}
    finally:
        system.close()


async def test_a_campaign_requested_over_the_broker_is_created_once_per_key_and_outcomes_come_back(
    stack: Stack, isolated_env: IsolatedEnvironment, pool: asyncpg.Pool
) -> None:
    # Given a tenant with three customers
    tenant = await new_tenant(stack)
    await import_customers(stack, tenant, customers(3, start=50_000))

    # When another system requests a campaign, repeats the same request, then sends a bad one
    outcome = await asyncio.to_thread(conversation, isolated_env.amqp_url, tenant.id)

    # Then the first is accepted and started, the repeat answers with the same campaign
    accepted = outcome["first"]["campaign.accepted"]
    assert accepted["idempotency_key"] == "order-1"
    assert outcome["first"]["campaign.started"]["campaign_id"] == accepted["campaign_id"]
    assert outcome["repeated"]["campaign_id"] == accepted["campaign_id"]
    tenant_id = uuid.UUID(tenant.id)
    assert await pool.fetchval("SELECT count(*) FROM campaigns WHERE tenant_id = $1", tenant_id) == 1
    # And the bad one is rejected with the field-level reasons the HTTP API gives
    assert outcome["rejected_key"] == "campaign.rejected"
    assert outcome["rejected"]["idempotency_key"] == "order-2"
    assert [reason["field"] for reason in outcome["rejected"]["reasons"]] == ["audience.days"]
    # And the accepted campaign's snapshot holds the three customers
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        total = await pool.fetchval(
            "SELECT count(*) FROM recipients WHERE campaign_id = $1", uuid.UUID(accepted["campaign_id"])
        )
        if total == 3:
            break
        await asyncio.sleep(0.1)
    assert total == 3


async def test_a_request_for_an_unknown_template_shortcode_is_rejected_naming_the_template(
    stack: Stack, isolated_env: IsolatedEnvironment
) -> None:
    tenant = await new_tenant(stack)

    def ask() -> tuple[str, dict[str, Any]]:
        system = ExternalSystem(isolated_env.amqp_url)
        try:
            system.request(request_body(tenant.id, "order-9", template={"body": "Hi {customer_nickname}"}))
            return system.next_event()
        finally:
            system.close()

    key, body = await asyncio.to_thread(ask)
    assert key == "campaign.rejected"
    assert [reason["field"].split(".")[0] for reason in body["reasons"]] == ["template"]


async def test_a_request_of_version_2_schedules_the_campaign_and_a_bad_schedule_is_rejected_naming_it(
    stack: Stack, isolated_env: IsolatedEnvironment, pool: asyncpg.Pool
) -> None:
    # Given a tenant of New York
    tenant = await new_tenant(stack, timezone="America/New_York")

    def ask() -> list[tuple[str, dict[str, Any]]]:
        system = ExternalSystem(isolated_env.amqp_url)
        try:
            answers = []
            for key, schedule in (
                ("later-1", {"at": "2031-05-04T09:30"}),
                ("later-2", {"at": "2001-05-04T09:30"}),
                ("later-3", {"at": "2031-05-04T09:30", "timezone": "Atlantis/Capital"}),
            ):
                system.request(request_body(tenant.id, key, v=2, schedule=schedule))
                answers.append(system.next_event())
            return answers
        finally:
            system.close()

    # When another system requests a campaign for a local time, one in the past, one in no zone
    scheduled, past, nowhere = await asyncio.to_thread(ask)
    # Then the first is accepted, scheduled for that New York time, and not started
    assert scheduled[0] == "campaign.accepted" and scheduled[1]["state"] == "scheduled"
    row = await pool.fetchrow(
        "SELECT state, scheduled_at, schedule_timezone, started_at FROM campaigns WHERE id = $1",
        uuid.UUID(scheduled[1]["campaign_id"]),
    )
    assert row["scheduled_at"] == datetime(2031, 5, 4, 9, 30, tzinfo=ZoneInfo("America/New_York"))
    assert (row["state"], row["schedule_timezone"], row["started_at"]) == (
        "scheduled",
        "America/New_York",
        None,
    )
    # And the others are rejected naming the schedule's field, and create nothing
    assert past[0] == "campaign.rejected"
    assert [reason["field"] for reason in past[1]["reasons"]] == ["schedule.at"]
    assert nowhere[0] == "campaign.rejected"
    assert [reason["field"] for reason in nowhere[1]["reasons"]] == ["schedule.timezone"]
    assert (
        await pool.fetchval("SELECT count(*) FROM campaigns WHERE tenant_id = $1", uuid.UUID(tenant.id)) == 1
    )

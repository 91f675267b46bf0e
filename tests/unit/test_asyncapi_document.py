"""docs/asyncapi.yaml is AsyncAPI 3.0 that validates against the official schema, is what
scripts/render_asyncapi.py renders from the models and the topology, and says the right thing
about direction: the engine receives what its own queues bind and sends every event it publishes."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from scripts.render_asyncapi import DOCUMENT, rendered_text
from shared import topology
from shared.events import CampaignAccepted, CampaignLifecycle, CampaignRejected, TenantChanged

ROOT = Path(__file__).resolve().parents[2]
OFFICIAL_SCHEMA = ROOT / "tests" / "contracts" / "asyncapi-3.0.0.schema.json"


def document() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(DOCUMENT.read_text())
    return loaded


def validator() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(json.loads(OFFICIAL_SCHEMA.read_text()))


def test_the_document_is_what_the_models_and_the_topology_render() -> None:
    assert DOCUMENT.read_text() == rendered_text(), "run `python -m scripts.render_asyncapi`"


def test_the_document_validates_against_the_official_asyncapi_3_schema() -> None:
    errors = [f"{list(e.absolute_path)}: {e.message[:200]}" for e in validator().iter_errors(document())]
    assert not errors, errors[:5]


def test_the_official_schema_refuses_a_2x_direction_in_a_3_0_document() -> None:
    broken = copy.deepcopy(document())
    next(iter(broken["operations"].values()))["action"] = "subscribe"
    assert not validator().is_valid(broken)


def _matches(pattern: str, key: str) -> bool:
    regex = "^" + re.escape(pattern).replace(r"\#", ".*").replace(r"\*", "[^.]+") + "$"
    return re.match(regex, key) is not None


def _bound_by_the_engine(exchange: str, key: str) -> bool:
    return any(
        bound_exchange == exchange and _matches(pattern, key)
        for spec in (topology.COMMANDS, topology.BOOKING)
        for bound_exchange, pattern in spec.bindings
    )


def test_the_engine_receives_what_its_queues_bind_and_sends_the_rest() -> None:
    doc = document()
    for operation in doc["operations"].values():
        channel_id = operation["channel"]["$ref"].rsplit("/", 1)[-1]
        channel = doc["channels"][channel_id]
        exchange = channel["bindings"]["amqp"]["exchange"]["name"]
        receives = _bound_by_the_engine(exchange, channel["address"])
        assert operation["action"] == ("receive" if receives else "send"), channel_id


def test_every_event_the_engine_publishes_and_every_command_has_its_own_channel() -> None:
    doc = document()
    addresses = {channel["address"]: channel for channel in doc["channels"].values()}
    for key in (CampaignAccepted.ROUTING_KEY, CampaignRejected.ROUTING_KEY, TenantChanged.ROUTING_KEY):
        assert key in addresses, key
    lifecycle = addresses["campaign.{event}"]
    assert [f"campaign.{name}" for name in lifecycle["parameters"]["event"]["enum"]] == list(
        CampaignLifecycle.ROUTING_KEYS
    )
    for command in ("campaign.pause", "campaign.resume", "campaign.cancel", "campaign.requested"):
        assert command in addresses, command
        assert addresses[command]["bindings"]["amqp"]["exchange"]["name"] == topology.COMMANDS_EXCHANGE


@pytest.mark.parametrize("name", ["CampaignCommand", "CampaignLifecycle", "TenantChanged"])
def test_each_message_states_its_version_as_a_constant(name: str) -> None:
    message = document()["components"]["messages"][name]
    assert message["payload"]["properties"]["v"]["const"] == 1
    assert message["bindings"]["amqp"]["messageType"].endswith(".v1")

"""The AsyncAPI document describes exactly the payloads the code validates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from shared import topology
from shared.events import (
    BOOKING_EVENTS,
    CampaignAccepted,
    CampaignCommand,
    CampaignLifecycle,
    CampaignRejected,
    CampaignRequested,
    CampaignRequestedV2,
    Event,
)

DOC = yaml.safe_load((Path(__file__).resolve().parents[3] / "docs" / "asyncapi.yaml").read_text())
DOCUMENTED: list[type[Event]] = [
    *BOOKING_EVENTS,
    CampaignRequested,
    CampaignRequestedV2,
    CampaignAccepted,
    CampaignRejected,
    CampaignLifecycle,
    CampaignCommand,
]


@pytest.mark.parametrize("model", DOCUMENTED, ids=[m.__name__ for m in DOCUMENTED])
def test_each_message_documents_the_models_fields_and_version(model: type[Event]) -> None:
    message: dict[str, Any] = DOC["components"]["messages"][model.__name__]
    payload = message["payload"]
    assert message["headers"]["properties"]["type"]["const"] == model.message_type()
    assert set(payload["properties"]) == set(model.model_fields)
    required = {name for name, info in model.model_fields.items() if info.is_required()}
    assert set(payload.get("required", [])) == required
    assert payload.get("additionalProperties") is False


def test_every_channel_names_an_exchange_of_the_topology() -> None:
    exchanges = {spec.name for spec in topology.EXCHANGES}
    for name, channel in DOC["channels"].items():
        assert channel["bindings"]["amqp"]["exchange"]["name"] in exchanges, name


def test_every_booking_event_and_the_campaign_request_have_a_channel_named_by_their_routing_key() -> None:
    routed: list[type[Event]] = [*BOOKING_EVENTS, CampaignRequested, CampaignAccepted, CampaignRejected]
    for model in routed:
        assert model.TYPE in DOC["channels"]

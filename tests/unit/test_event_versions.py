"""Every broker payload reads only its own version: another `v` (or a `v` that is not a number) is
refused with a reason that names it; lifecycle keys and request answers never overlap."""

from __future__ import annotations

import orjson
import pytest
from pydantic import ValidationError

from shared.events import (
    BOOKING_EVENTS,
    CampaignAccepted,
    CampaignCommand,
    CampaignLifecycle,
    CampaignRejected,
    CampaignRequested,
    CampaignRequestedV2,
    Event,
    TenantChanged,
)

MODELS: list[type[Event]] = [
    *BOOKING_EVENTS,
    CampaignRequested,
    CampaignRequestedV2,
    CampaignCommand,
    TenantChanged,
]


@pytest.mark.parametrize("model", MODELS, ids=[m.__name__ for m in MODELS])
@pytest.mark.parametrize("version", [3, 0, "1", True])
def test_a_body_of_another_version_is_refused_naming_it(model: type[Event], version: object) -> None:
    if version == 3 and model.VERSION == 1:
        version = 2
    with pytest.raises(ValidationError) as refused:
        model.model_validate_json(orjson.dumps({"v": version}))
    errors = [error for error in refused.value.errors() if error["loc"] == ("v",)]
    assert errors, refused.value
    if version in (2, 3, 0):
        assert f"unsupported version {version}" in errors[0]["msg"]


def test_the_lifecycle_keys_cover_every_lifecycle_event_and_no_request_answer() -> None:
    assert len(CampaignLifecycle.ROUTING_KEYS) == 7
    answers = {CampaignRequested.ROUTING_KEY, CampaignAccepted.ROUTING_KEY, CampaignRejected.ROUTING_KEY}
    assert not answers & set(CampaignLifecycle.ROUTING_KEYS)

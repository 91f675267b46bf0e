"""The status-callback batch as the webhook writes it and the consumer reads it, held to the model
that is the contract."""

from __future__ import annotations

import uuid

import orjson
import pytest
from pydantic import ValidationError

from services.tracker.wire import MESSAGE_TYPE, batch_body, canonical_uuid, decode_batch, encode_callback
from shared.events import StatusCallback, StatusCallbackBatch

TENANT = "7b0d5c1e-0000-4000-8000-000000000001"
PARAMS = {"MessageSid": "SM1", "MessageStatus": "delivered", "From": "whatsapp:+14155238886", "Body": 'é "q"'}


def test_the_body_is_what_the_model_would_write() -> None:
    # Given two callbacks encoded by the webhook
    body = batch_body(
        [
            encode_callback(tenant_id=TENANT, params=PARAMS, idempotency_token="tok-1", received_at=1.5),
            encode_callback(
                tenant_id=TENANT, params={}, idempotency_token=None, received_at=1700000000.123456
            ),
        ]
    )

    # Then the model reads them as they were given, and writes the same JSON
    model = StatusCallbackBatch(
        callbacks=[
            StatusCallback(
                tenant_id=uuid.UUID(TENANT), params=PARAMS, idempotency_token="tok-1", received_at=1.5
            ),
            StatusCallback(tenant_id=uuid.UUID(TENANT), params={}, received_at=1700000000.123456),
        ]
    )
    assert StatusCallbackBatch.model_validate_json(body) == model
    assert orjson.loads(body) == model.model_dump(mode="json")
    assert body == model.to_bytes()
    assert MESSAGE_TYPE == "twilio.status.batch.v1"


def test_a_body_the_webhook_wrote_reads_back_unchanged() -> None:
    body = batch_body(
        [encode_callback(tenant_id=TENANT, params=PARAMS, idempotency_token=None, received_at=2.25)] * 3
    )
    assert decode_batch(body) == [(TENANT, PARAMS, None, 2.25)] * 3


@pytest.mark.parametrize(
    "callback",
    [
        # Another spelling of the tenant id, an integer time, defaults left out
        {"tenant_id": TENANT.upper(), "params": PARAMS, "idempotency_token": "t", "received_at": 7},
        {"v": 1, "tenant_id": "{" + TENANT + "}", "params": PARAMS, "received_at": 7.0},
        {
            "v": 1,
            "tenant_id": TENANT.replace("-", ""),
            "params": {},
            "idempotency_token": None,
            "received_at": 7.0,
        },
    ],
)
def test_other_bodies_the_model_accepts_read_as_the_model_reads_them(callback: dict[str, object]) -> None:
    body = orjson.dumps({"callbacks": [callback]})
    expected = StatusCallbackBatch.model_validate_json(body).callbacks[0]
    assert decode_batch(body) == [(TENANT, expected.params, expected.idempotency_token, expected.received_at)]
    assert isinstance(decode_batch(body)[0][3], float)


GOOD = {"v": 1, "tenant_id": TENANT, "params": PARAMS, "idempotency_token": None, "received_at": 1.0}


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        orjson.dumps({"v": 1, "callbacks": []}),
        orjson.dumps({"v": 1, "callbacks": [GOOD] * 10_001}),
        orjson.dumps({"v": 1, "callbacks": [GOOD], "extra": 1}),
        orjson.dumps({"v": 1, "callbacks": [{**GOOD, "extra": 1}]}),
        orjson.dumps({"v": 1, "callbacks": [{**GOOD, "tenant_id": "tenant-1"}]}),
        orjson.dumps({"v": 1, "callbacks": [{**GOOD, "params": {"MessageSid": 1}}]}),
        orjson.dumps({"v": 1, "callbacks": [{**GOOD, "params": ["MessageSid"]}]}),
        orjson.dumps({"v": 1, "callbacks": [{**GOOD, "idempotency_token": 5}]}),
        orjson.dumps({"v": 1, "callbacks": [{**GOOD, "received_at": "soon"}]}),
        orjson.dumps({"v": "one", "callbacks": [GOOD]}),
        # A version this engine does not read
        orjson.dumps({"v": 2, "callbacks": [GOOD]}),
        orjson.dumps({"v": 1, "callbacks": [{**GOOD, "v": 2}]}),
    ],
)
def test_a_body_the_model_refuses_is_refused_with_the_models_reason(body: bytes) -> None:
    with pytest.raises(ValidationError) as refused:
        decode_batch(body)
    with pytest.raises(ValidationError) as by_model:
        StatusCallbackBatch.model_validate_json(body)
    assert str(refused.value) == str(by_model.value)


def test_a_tenant_id_reads_in_canonical_form_or_not_at_all() -> None:
    assert canonical_uuid(TENANT) == TENANT
    assert canonical_uuid(TENANT.upper()) == TENANT
    assert canonical_uuid(TENANT.replace("-", "")) == TENANT
    assert canonical_uuid("urn:uuid:" + TENANT) == TENANT
    assert canonical_uuid("tenant-1") is None
    assert canonical_uuid("") is None

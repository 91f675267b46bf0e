"""Pure pieces of the foundation: settings, secrets, phones, topology names, event payloads."""

from __future__ import annotations

import uuid

import pytest
from cryptography.fernet import Fernet
from pydantic import ValidationError

from shared import topology
from shared.apikeys import hash_api_key, new_api_key
from shared.crypto import SecretBox
from shared.events import RecipientBatch, SendChunk
from shared.phones import InvalidPhone, mask, to_e164, to_e164_or_none
from shared.settings import DEVELOPMENT_ENCRYPTION_KEY, Settings

REAL_TOKEN = "a-real-operator-token-0123456789abcdef"


@pytest.fixture(autouse=True)
def _no_secrets_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WCE_OPERATOR_TOKEN", raising=False)
    monkeypatch.delenv("WCE_ENCRYPTION_KEYS", raising=False)


def test_production_settings_refuse_the_development_encryption_key() -> None:
    with pytest.raises(ValidationError, match="WCE_ENCRYPTION_KEYS"):
        Settings(environment="production", operator_token=REAL_TOKEN)


def test_production_settings_refuse_the_development_operator_token() -> None:
    with pytest.raises(ValidationError, match="WCE_OPERATOR_TOKEN"):
        Settings(environment="production", encryption_keys=[Fernet.generate_key().decode()])


def test_production_settings_accept_real_secrets() -> None:
    settings = Settings(
        environment="production",
        operator_token=REAL_TOKEN,
        encryption_keys=[Fernet.generate_key().decode()],
        twilio_api_base_url="https://api.twilio.com",
        twilio_content_base_url="https://content.twilio.com",
        public_base_url="https://hooks.example.com",
    )
    assert DEVELOPMENT_ENCRYPTION_KEY not in settings.encryption_keys


def test_settings_read_comma_separated_lists_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WCE_RETRY_TIERS_S", "1,10,100")
    monkeypatch.setenv(
        "WCE_ENCRYPTION_KEYS", f"{DEVELOPMENT_ENCRYPTION_KEY}, {Fernet.generate_key().decode()}"
    )
    settings = Settings()
    assert settings.retry_tiers_s == [1, 10, 100]
    assert len(settings.encryption_keys) == 2


def test_retry_tiers_must_ascend() -> None:
    with pytest.raises(ValidationError, match="ascending"):
        Settings(retry_tiers_s=[30, 5])


def test_secrets_survive_a_key_rotation() -> None:
    old_key, new_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    token = SecretBox([old_key]).encrypt("auth-token")
    rotated_box = SecretBox([new_key, old_key])
    assert rotated_box.decrypt(token) == "auth-token"
    rotated = rotated_box.rotate(token)
    assert SecretBox([new_key]).decrypt(rotated) == "auth-token"


def test_a_secret_under_an_unknown_key_is_refused_clearly() -> None:
    token = SecretBox([Fernet.generate_key().decode()]).encrypt("x")
    with pytest.raises(ValueError, match="cannot be decrypted"):
        SecretBox([Fernet.generate_key().decode()]).decrypt(token)


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("+1 (415) 555-2671", "US", "+14155552671"),
        ("415-555-2671", "US", "+14155552671"),
        ("whatsapp:+14155552671", "US", "+14155552671"),
        ("030 123456", "DE", "+4930123456"),
        ("0049 30 123456", "US", "+4930123456"),
        ("07400 123456", "GB", "+447400123456"),
    ],
)
def test_phones_are_normalised_to_e164_with_the_default_region(raw: str, region: str, expected: str) -> None:
    assert to_e164(raw, region) == expected


@pytest.mark.parametrize("raw", ["", "hello", "+1 555", "12"])
def test_unparseable_phones_are_refused(raw: str) -> None:
    with pytest.raises(InvalidPhone):
        to_e164(raw, "US")
    assert to_e164_or_none(raw, "US") is None


def test_masked_phones_keep_the_country_and_the_last_digits() -> None:
    assert mask("+14155552671") == "+141••••••71"


def test_api_keys_are_random_and_stored_as_a_hash() -> None:
    first, second = new_api_key(), new_api_key()
    assert first != second
    assert hash_api_key(first) != first and len(hash_api_key(first)) == 64


def test_retry_queues_dead_letter_back_into_the_throttled_path() -> None:
    spec = topology.retry_queue(30)
    assert spec.args() == {
        "x-queue-type": "quorum",
        "x-message-ttl": 30_000,
        "x-dead-letter-exchange": topology.RECIPIENTS_EXCHANGE,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


def test_dispatch_queues_have_a_single_active_consumer() -> None:
    tenant = str(uuid.uuid4())
    for queue_type in topology.DISPATCH_QUEUE_TYPES:
        spec = topology.dispatch_queue(tenant, queue_type)
        assert spec.args()["x-single-active-consumer"] is True
        assert spec.args().get("x-queue-type", "classic") == queue_type
        assert spec.bindings == ((topology.RECIPIENTS_EXCHANGE, tenant),)
    assert topology.dispatch_queue_name(tenant, "classic") == f"wce.dispatch.{tenant}"


def test_events_refuse_unknown_fields_and_carry_their_version() -> None:
    tenant, campaign = uuid.uuid4(), uuid.uuid4()
    batch = RecipientBatch(tenant_id=tenant, campaign_id=campaign, recipient_ids=[1, 2])
    assert RecipientBatch.model_validate_json(batch.to_bytes()) == batch
    assert RecipientBatch.message_type() == "recipients.batch.v1"
    with pytest.raises(ValidationError):
        RecipientBatch.model_validate(
            {"tenant_id": str(tenant), "campaign_id": str(campaign), "recipient_ids": [1], "x": 1}
        )
    with pytest.raises(ValidationError):
        RecipientBatch.model_validate(
            {"tenant_id": str(tenant), "campaign_id": str(campaign), "recipient_ids": []}
        )


def test_send_chunks_space_their_slots() -> None:
    chunk = SendChunk(
        tenant_id=uuid.uuid4(),
        campaign_id=uuid.uuid4(),
        recipient_ids=[1, 2, 3],
        first_slot_at=100.0,
        interval_s=0.5,
    )
    assert [chunk.slot_at(i) for i in range(3)] == [100.0, 100.5, 101.0]

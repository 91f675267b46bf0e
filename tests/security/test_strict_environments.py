"""Every environment but development refuses the settings that make a local run easy: the
simulator or any plain-HTTP Twilio, a public URL Twilio cannot reach over HTTPS, and the
development secrets — unless an insecure endpoint is explicitly allowed."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.fernet import Fernet
from pydantic import ValidationError

from services.segmenter.routes_webhooks import _checked_url
from shared.http import InputError
from shared.settings import DEVELOPMENT_ENCRYPTION_KEY, DEVELOPMENT_OPERATOR_TOKEN, Settings
from shared.url_checks import insecure_url_reason

TOKEN = "operator-token-for-the-security-suite-7f3a9c"
SAFE: dict[str, Any] = {
    "operator_token": TOKEN,
    "encryption_keys": [Fernet.generate_key().decode()],
    "twilio_api_base_url": "https://api.twilio.com",
    "twilio_content_base_url": "https://content.twilio.com",
    "public_base_url": "https://hooks.example.com",
}


@pytest.fixture(autouse=True)
def _nothing_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WCE_OPERATOR_TOKEN", "WCE_ENCRYPTION_KEYS", "WCE_ENVIRONMENT", "WCE_PUBLIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("environment", ["test", "production"])
def test_a_strict_environment_accepts_public_https_endpoints_and_real_secrets(environment: str) -> None:
    Settings(environment=environment, **SAFE)


@pytest.mark.parametrize("environment", ["test", "production"])
@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("twilio_api_base_url", "http://127.0.0.1:8010", "WCE_TWILIO_API_BASE_URL is not https"),
        ("twilio_api_base_url", "https://127.0.0.1:8010", "WCE_TWILIO_API_BASE_URL points at this machine"),
        ("twilio_api_base_url", "http://api.twilio.com", "WCE_TWILIO_API_BASE_URL is not https"),
        ("twilio_content_base_url", "https://twilio-sim:8010", "WCE_TWILIO_CONTENT_BASE_URL is a private"),
        ("public_base_url", "http://hooks.example.com", "WCE_PUBLIC_BASE_URL is not https"),
        ("public_base_url", "https://10.1.2.3", "WCE_PUBLIC_BASE_URL is a private address"),
        ("public_base_url", "https://localhost:8001", "WCE_PUBLIC_BASE_URL points at this machine"),
        ("encryption_keys", [DEVELOPMENT_ENCRYPTION_KEY], "WCE_ENCRYPTION_KEYS must be set"),
        ("operator_token", DEVELOPMENT_OPERATOR_TOKEN, "WCE_OPERATOR_TOKEN must be set"),
    ],
)
def test_a_strict_environment_refuses_development_defaults(
    environment: str, field: str, value: object, message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(environment=environment, **{**SAFE, field: value})


def test_the_simulator_defaults_are_refused_outside_development() -> None:
    with pytest.raises(ValidationError, match="WCE_PUBLIC_BASE_URL"):
        Settings(environment="test", operator_token=TOKEN, encryption_keys=SAFE["encryption_keys"])


def test_a_closed_test_installation_may_allow_the_simulator_explicitly() -> None:
    settings = Settings(
        environment="test",
        operator_token=TOKEN,
        encryption_keys=SAFE["encryption_keys"],
        allow_insecure_twilio=True,
        allow_insecure_public_url=True,
    )
    assert settings.twilio_api_base_url.startswith("http://127.0.0.1")


def test_development_keeps_its_local_defaults() -> None:
    assert Settings(environment="development").twilio_api_base_url.startswith("http://127.0.0.1")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://api.twilio.com", None),
        ("https://user:pw@api.twilio.com", "carries credentials"),
        ("https://[::1]:8010", "points at this machine"),
        ("https://169.254.169.254", "is a private address"),
        ("ftp://api.twilio.com", "is not https"),
    ],
)
def test_url_checks_name_what_is_wrong(url: str, reason: str | None) -> None:
    assert insecure_url_reason(url) == reason


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/x",
        "https://127.0.0.1:9000/x",
        "https://10.0.0.5/x",
        "https://169.254.169.254/x",
    ],
)
def test_a_strict_environment_refuses_webhook_endpoints_that_are_not_public_https(url: str) -> None:
    strict = Settings(environment="production", **SAFE)
    with pytest.raises(InputError) as refused:
        _checked_url(url, strict)
    assert refused.value.errors[0]["field"] == "url"
    assert _checked_url("https://hooks.example.com/x", strict) == "https://hooks.example.com/x"


def test_a_closed_test_installation_may_allow_local_webhook_endpoints_explicitly() -> None:
    allowed = Settings(environment="test", allow_insecure_webhook_urls=True, **SAFE)
    assert not allowed.strict_webhook_urls
    assert _checked_url("http://127.0.0.1:9000/x", allowed) == "http://127.0.0.1:9000/x"
    assert Settings(environment="production", **SAFE).strict_webhook_urls
    assert not Settings().strict_webhook_urls

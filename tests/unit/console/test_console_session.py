"""The console's session cookie: sealed (unreadable, unalterable), expiring, with a CSRF token
that only its own session matches, marked Secure, HttpOnly and SameSite=Strict by default; and
the settings that would weaken it refused at start."""

from __future__ import annotations

import time

import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from pydantic import ValidationError

from services.console.app import create_app
from services.console.session import SessionBox, anonymous, signed_in
from shared.settings import ConsoleSettings

KEY = Fernet.generate_key().decode()


def test_a_sealed_session_opens_to_the_same_session_and_does_not_show_its_key() -> None:
    # Given a tenant's session
    box = SessionBox([KEY], max_age_s=60)
    session = signed_in("tenant", "wce_secret-api-key-value", name="Bloom", timezone="Europe/Berlin")

    # When it is sealed and opened again
    sealed = box.seal(session)

    # Then it is the same session, and the sealed text does not contain the key
    assert box.open(sealed) == session
    assert "secret-api-key" not in sealed


def test_an_altered_forged_or_expired_cookie_opens_to_nothing() -> None:
    box = SessionBox([KEY], max_age_s=1)
    sealed = box.seal(signed_in("operator", "token", name="Operator"))
    other = SessionBox([Fernet.generate_key().decode()], max_age_s=60)
    assert box.open(sealed[:-4] + "AAAA") is None
    assert box.open(other.seal(signed_in("tenant", "key", name="x"))) is None
    assert box.open("not a cookie") is None
    assert box.open(None) is None
    time.sleep(2.1)
    assert box.open(sealed) is None


def test_an_older_key_still_opens_cookies_after_a_rotation() -> None:
    old, new = KEY, Fernet.generate_key().decode()
    sealed = SessionBox([old], max_age_s=60).seal(anonymous())
    assert SessionBox([new, old], max_age_s=60).open(sealed) is not None


def test_only_the_sessions_own_csrf_token_matches_and_sign_in_makes_a_new_one() -> None:
    before = anonymous()
    after = signed_in("tenant", "key", name="x")
    assert before.csrf_matches(before.csrf)
    assert not before.csrf_matches(after.csrf)
    assert not before.csrf_matches("")
    assert not before.csrf_matches(None)
    assert before.csrf != after.csrf


def test_the_cookie_is_secure_http_only_and_same_site_strict_by_default() -> None:
    # Given a console with the default cookie settings
    app = create_app(ConsoleSettings(console_session_keys=[KEY]))

    # When a browser opens the sign-in page
    with TestClient(app, base_url="https://console.example") as client:
        answer = client.get("/signin")

    # Then its session cookie carries every flag
    cookie = answer.headers["set-cookie"]
    assert "wce_console=" in cookie
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"secure", "httponly", "samesite=strict", "path=/"} <= flags


def test_the_console_refuses_the_development_key_outside_development_and_plain_cookies_in_production() -> (
    None
):
    ConsoleSettings(environment="development", console_cookie_secure=False)
    with pytest.raises(ValidationError, match="WCE_CONSOLE_SESSION_KEYS"):
        ConsoleSettings(environment="test")
    ConsoleSettings(environment="test", console_session_keys=[KEY], console_cookie_secure=False)
    with pytest.raises(ValidationError, match="WCE_CONSOLE_COOKIE_SECURE"):
        ConsoleSettings(environment="production", console_session_keys=[KEY], console_cookie_secure=False)
    ConsoleSettings(environment="production", console_session_keys=[KEY])


def test_the_console_needs_none_of_the_engines_secrets_in_production(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a production environment with only the console's own key
    for name in ("WCE_DATABASE_URL", "WCE_AMQP_URL", "WCE_ENCRYPTION_KEYS", "WCE_OPERATOR_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WCE_ENVIRONMENT", "production")
    monkeypatch.setenv("WCE_CONSOLE_SESSION_KEYS", KEY)

    # Then its settings load, and they hold no database, broker or secret of the engine
    settings = ConsoleSettings(_env_file=None)  # type: ignore[call-arg]
    assert settings.console_session_keys == [KEY]
    assert not {"database_url", "amqp_url", "encryption_keys", "operator_token"} & set(
        ConsoleSettings.model_fields
    )


def test_the_consoles_pages_and_static_files_are_packaged_with_it() -> None:
    # The engine image installs the project as a package: files that are not Python must be
    # named as package data, or the console would start without its pages.
    import fnmatch
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "services"
    ]
    console = root / "services/console"
    files = [
        p.relative_to(root / "services").as_posix()
        for p in console.rglob("*")
        if p.is_file() and p.suffix != ".py"
    ]
    unpackaged = [
        f for f in files if "__pycache__" not in f and not any(fnmatch.fnmatch(f, p) for p in patterns)
    ]
    assert files and unpackaged == []

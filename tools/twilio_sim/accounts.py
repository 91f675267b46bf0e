"""Simulated Twilio accounts and HTTP Basic authentication against them."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass

ACCOUNT_SID_RE = re.compile(r"^AC[0-9a-fA-F]{32}$")


@dataclass(slots=True)
class Account:
    sid: str
    auth_token: str
    inbound_url: str | None
    # The WhatsApp channel installation Twilio names in callbacks; stable per account.
    channel_install_sid: str


class AccountBook:
    def __init__(self) -> None:
        self._accounts: dict[str, Account] = {}
        # Decoding and comparing credentials on every create is measurable at
        # thousands of requests per second; remember headers that were valid.
        self._valid_headers: dict[bytes, Account] = {}

    def get(self, sid: str) -> Account | None:
        return self._accounts.get(sid)

    def upsert(self, sid: str, auth_token: str, inbound_url: str | None) -> tuple[Account, bool]:
        """Create or update an account; the flag says whether it is new."""
        existing = self._accounts.get(sid)
        self._valid_headers.clear()
        if existing is not None:
            existing.auth_token = auth_token
            existing.inbound_url = inbound_url
            return existing, False
        install = "XE" + hashlib.sha256(sid.encode()).hexdigest()[:32]
        account = self._accounts[sid] = Account(sid, auth_token, inbound_url, install)
        return account, True

    def clear(self) -> None:
        self._accounts.clear()
        self._valid_headers.clear()

    def authenticate(self, authorization: bytes | None) -> Account | None:
        """The account whose SID and Auth Token the Basic header carries, else None."""
        if authorization is None:
            return None
        account = self._valid_headers.get(authorization)
        if account is not None:
            return account
        username, password = _basic_credentials(authorization)
        account = self._accounts.get(username) if username is not None else None
        if (
            account is None
            or password is None
            or not hmac.compare_digest(account.auth_token.encode(), password.encode())
        ):
            return None
        self._valid_headers[authorization] = account
        return account


def _basic_credentials(header: bytes) -> tuple[str | None, str | None]:
    scheme, _, encoded = header.partition(b" ")
    if scheme.lower() != b"basic":
        return None, None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    username, sep, password = decoded.partition(":")
    if not sep:
        return None, None
    return username, password

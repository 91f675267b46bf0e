"""The console's session: who is signed in, sealed into one cookie.

The cookie holds the credential (a tenant's API key or the operator token) because the console
keeps no server-side state and calls the APIs with it; it is encrypted and authenticated with a
Fernet key from the settings, so it can be neither read nor altered in the browser, and it expires
after the session's maximum age whatever the browser does. It is HttpOnly (no script reads it),
SameSite=Strict (no other site's page sends it) and Secure (HTTPS only) unless switched off for a
development console on http://127.0.0.1. Every session, signed in or not, carries its own CSRF
token, which every form posts back.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass, replace
from typing import Literal

import orjson
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

COOKIE_NAME = "wce_console"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"

Kind = Literal["anonymous", "tenant", "operator"]


@dataclass(frozen=True)
class Session:
    kind: Kind
    csrf: str
    credential: str | None = None
    # What the pages show without asking the API again (refreshed when the settings change).
    name: str | None = None
    timezone: str = "UTC"

    @property
    def signed_in(self) -> bool:
        return self.kind != "anonymous" and self.credential is not None

    def csrf_matches(self, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(presented.encode(), self.csrf.encode())

    def renamed(self, *, name: str | None, timezone: str) -> Session:
        return replace(self, name=name, timezone=timezone)


def anonymous() -> Session:
    return Session(kind="anonymous", csrf=secrets.token_urlsafe(32))


def signed_in(kind: Kind, credential: str, *, name: str | None, timezone: str = "UTC") -> Session:
    """A new session with a new CSRF token: nothing of the anonymous one survives sign-in."""
    return Session(
        kind=kind, csrf=secrets.token_urlsafe(32), credential=credential, name=name, timezone=timezone
    )


class SessionBox:
    """Seals sessions into cookie values and opens them; the first key seals, every key opens."""

    def __init__(self, keys: list[str], max_age_s: int) -> None:
        self._fernet = MultiFernet([Fernet(key.encode()) for key in keys])
        self.max_age_s = max_age_s

    def seal(self, session: Session) -> str:
        payload = {
            "k": session.kind,
            "c": session.csrf,
            "t": session.credential,
            "n": session.name,
            "z": session.timezone,
        }
        return self._fernet.encrypt(orjson.dumps(payload)).decode()

    def open(self, value: str | None) -> Session | None:
        """The session in a cookie value; None when it is missing, forged, altered or expired."""
        if not value:
            return None
        try:
            data = orjson.loads(self._fernet.decrypt(value.encode(), ttl=self.max_age_s))
        except (InvalidToken, orjson.JSONDecodeError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("k") not in ("anonymous", "tenant", "operator"):
            return None
        return Session(
            kind=data["k"],
            csrf=str(data["c"]),
            credential=data.get("t"),
            name=data.get("n"),
            timezone=str(data.get("z") or "UTC"),
        )

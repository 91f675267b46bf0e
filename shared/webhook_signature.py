"""Signatures of outbound webhook deliveries, and how a receiver checks them (README "Outbound
webhooks" documents the same procedure with a test vector).

Every delivery carries ``WCE-Signature: t=<unix seconds>,v1=<hex>``: ``v1`` is the lowercase hex
HMAC-SHA256, keyed with the endpoint's secret (its UTF-8 bytes, ``whsec_`` prefix included), of
``<t>.`` followed by the exact body bytes. The timestamp is inside the signed text, so a captured
delivery cannot be replayed later with a fresh one: a receiver refuses a ``t`` further than its
tolerance from its own clock. A header may carry several ``v1`` values; one matching is enough.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

SIGNATURE_HEADER = "WCE-Signature"
SECRET_PREFIX = "whsec_"
# How far a receiver should let a delivery's timestamp be from its own clock.
DEFAULT_TOLERANCE_S = 300


class SignatureError(ValueError):
    """A delivery whose signature does not verify (the reason says why, never the secret)."""


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    return f"t={timestamp},v1={signature(secret, timestamp, body)}"


def verify(
    secret: str, header: str, body: bytes, *, now: float, tolerance_s: int = DEFAULT_TOLERANCE_S
) -> int:
    """The delivery's timestamp when ``header`` signs ``body`` with ``secret`` within the
    tolerance of ``now``; SignatureError otherwise."""
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isdigit():
            timestamp = int(value)
        elif name == "v1" and value:
            candidates.append(value)
    if timestamp is None or not candidates:
        raise SignatureError("the header has no t= timestamp or no v1= signature")
    if abs(now - timestamp) > tolerance_s:
        raise SignatureError("the timestamp is outside the tolerance")
    expected = signature(secret, timestamp, body)
    if not any(hmac.compare_digest(expected, candidate) for candidate in candidates):
        raise SignatureError("no signature matches")
    return timestamp

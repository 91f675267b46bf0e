"""The operator's bearer token, held in memory only as its SHA-256 digest.

The token guards every operator route (tenants, API keys, credits), so a weak one is refused in
every environment: it must be at least ``MIN_LENGTH`` characters with enough distinct characters
to be a generated secret rather than a word. An empty or missing presented token never matches.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

MIN_LENGTH = 32
MIN_DISTINCT_CHARACTERS = 10
GENERATE_HINT = "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class OperatorTokenDigest:
    """What the services keep of the operator token: enough to check a presented one, nothing more."""

    __slots__ = ("_sha256",)

    def __init__(self, sha256: bytes) -> None:
        self._sha256 = sha256

    @classmethod
    def of(cls, token: str) -> OperatorTokenDigest:
        """The digest of a configured token, refused (ValueError, never echoing it) when weak."""
        token = token.strip()
        if len(token) < MIN_LENGTH:
            raise ValueError(f"WCE_OPERATOR_TOKEN must be at least {MIN_LENGTH} characters; {GENERATE_HINT}")
        if len(set(token)) < MIN_DISTINCT_CHARACTERS:
            raise ValueError(f"WCE_OPERATOR_TOKEN is too repetitive to be a secret; {GENERATE_HINT}")
        return cls(_digest(token))

    def matches(self, presented: str | None) -> bool:
        # An empty or missing token is refused before any comparison: it can never open the API.
        if not presented:
            return False
        return hmac.compare_digest(_digest(presented), self._sha256)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, OperatorTokenDigest):
            return NotImplemented
        return hmac.compare_digest(self._sha256, other._sha256)

    def __hash__(self) -> int:
        return hash(self._sha256)

    def __repr__(self) -> str:
        return "OperatorTokenDigest(<redacted>)"

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            _validate, serialization=core_schema.plain_serializer_function_ser_schema(lambda _: "<redacted>")
        )


def _validate(value: object) -> OperatorTokenDigest:
    if isinstance(value, OperatorTokenDigest):
        return value
    if not isinstance(value, str):
        raise ValueError("WCE_OPERATOR_TOKEN must be a string")
    return OperatorTokenDigest.of(value)

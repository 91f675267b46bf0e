"""Tenant API keys: shown once, stored as a SHA-256 hash (keys are random, so no salt is needed)."""

from __future__ import annotations

import hashlib
import secrets

KEY_PREFIX = "wce_"


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def display_prefix(key: str) -> str:
    return key[: len(KEY_PREFIX) + 6]

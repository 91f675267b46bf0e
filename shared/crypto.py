"""Secrets at rest (tenants' Twilio auth tokens): MultiFernet, newest key first, so keys rotate."""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class SecretBox:
    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise ValueError("at least one encryption key is required")
        self._fernet = MultiFernet([Fernet(key.encode()) for key in keys])

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise ValueError("secret cannot be decrypted with the configured keys") from exc

    def rotate(self, token: str) -> str:
        """Re-encrypt under the newest key."""
        return self._fernet.rotate(token.encode()).decode()

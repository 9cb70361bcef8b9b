"""Encryption at rest for secrets we must read back (TOTP seeds, OAuth and
channel credentials): Fernet (AES-128-CBC + HMAC-SHA256) keyed from the
configured encryption key."""
from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken

from core.errors import ConfigError


class Cipher:
    def __init__(self, key: str | None) -> None:
        if not key:
            raise ConfigError("no encryption key configured")
        self._fernet = Fernet(base64.urlsafe_b64encode(hashlib.sha256(key.encode()).digest()))

    def encrypt(self, plain: str) -> str:
        return self._fernet.encrypt(plain.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise ConfigError("a stored secret cannot be decrypted with this key") from exc

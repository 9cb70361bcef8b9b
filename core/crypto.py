"""Encryption at rest for secrets we must read back (TOTP seeds, OAuth and
channel credentials): Fernet (AES-128-CBC + HMAC-SHA256) keyed from the
configured encryption key."""
from __future__ import annotations

import base64
import hashlib
import hmac

from cryptography.fernet import Fernet, InvalidToken

from core.errors import ConfigError


class Cipher:
    def __init__(self, key: str | None) -> None:
        if not key:
            raise ConfigError("no encryption key configured")
        self._key = key.encode()
        self._fernet = Fernet(base64.urlsafe_b64encode(hashlib.sha256(key.encode()).digest()))

    def encrypt(self, plain: str) -> str:
        return self._fernet.encrypt(plain.encode()).decode()

    def derive(self, purpose: bytes) -> bytes:
        """A key of its own for `purpose` (a MAC's), from the configured key."""
        return hmac.new(self._key, b"bidi-derive:" + purpose, hashlib.sha256).digest()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise ConfigError("a stored secret cannot be decrypted with this key") from exc

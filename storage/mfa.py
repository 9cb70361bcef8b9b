"""The second factor: TOTP (RFC 6238: 30 s steps, ±1 step, a code is never
accepted twice) with single-use recovery codes (stored as SHA-256).

Turning it on or off needs a right code; wrong guesses are bounded by the
caller's `Guesses` (a window of attempts per user, kept in Redis by the API):
each attempt is reserved before the code is checked."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID

import asyncpg
import pyotp

from core.crypto import Cipher
from core.errors import Conflict, Invalid, Unauthorized
from core.security import digest, opaque_token, same
from storage.audit import Actor, record

ISSUER = "Bidi"
RECOVERY_CODES = 10


class Guesses(Protocol):
    """A bound on one user's wrong codes."""

    async def reserve(self) -> None:
        """Count one attempt; raise (RateLimited) when none is left."""

    async def clear(self) -> None:
        """Forget the attempts: a right code was given."""


@dataclass(frozen=True)
class Enrollment:
    secret: str
    otpauth_url: str


def totp_step(secret: str, code: str, now: float | None = None) -> int | None:
    """The time step `code` belongs to (current ±1), or None."""
    totp = pyotp.TOTP(secret)
    moment = time.time() if now is None else now
    step = int(moment // totp.interval)
    for candidate in (step, step - 1, step + 1):
        if same(totp.at(candidate * totp.interval), code):
            return candidate
    return None


async def check(conn: asyncpg.Connection, user: Any, code: str | None,
                cipher: Cipher | None = None) -> bool:
    """Accept a fresh TOTP code or an unused recovery code of `user` (a row
    with `id` and `mfa_secret`), consuming it."""
    if not code:
        return False
    code = code.strip().replace(" ", "")
    if code.isdigit() and len(code) == 6 and user["mfa_secret"] and cipher is not None:
        step = totp_step(cipher.decrypt(user["mfa_secret"]), code)
        if step is None:
            return False
        updated = await conn.fetchval(
            "UPDATE users SET mfa_last_step = $2 WHERE id = $1"
            " AND (mfa_last_step IS NULL OR mfa_last_step < $2) RETURNING id", user["id"], step)
        return updated is not None  # a replayed code changes nothing
    hashed = digest(code)
    consumed = await conn.fetchval(
        "UPDATE users SET mfa_recovery_codes = array_remove(mfa_recovery_codes, $2)"
        " WHERE id = $1 AND $2 = ANY(mfa_recovery_codes) RETURNING id", user["id"], hashed)
    return consumed is not None


async def _state(conn: asyncpg.Connection, user_id: UUID) -> asyncpg.Record:
    user = await conn.fetchrow(
        "SELECT id, email, mfa_enabled, mfa_secret, mfa_last_step FROM users WHERE id = $1",
        user_id)
    if user is None:
        raise Unauthorized("this account no longer exists")
    return user


async def enroll(conn: asyncpg.Connection, user_id: UUID, cipher: Cipher) -> Enrollment:
    """A new TOTP secret for the user, not in force until `enable`."""
    user = await _state(conn, user_id)
    if user["mfa_enabled"]:
        raise Conflict("two-factor sign-in is already on; disable it first")
    secret = pyotp.random_base32()
    await conn.execute("UPDATE users SET mfa_secret = $2, mfa_last_step = NULL WHERE id = $1",
                       user["id"], cipher.encrypt(secret))
    url = pyotp.TOTP(secret).provisioning_uri(name=user["email"], issuer_name=ISSUER)
    return Enrollment(secret, url)


async def _right_code(conn: asyncpg.Connection, user: Any, code: str, cipher: Cipher,
                      guesses: Guesses) -> None:
    await guesses.reserve()
    if not await check(conn, user, code, cipher):
        raise Invalid("wrong or already used code", field="code")
    await guesses.clear()


async def enable(conn: asyncpg.Connection, actor: Actor, user_id: UUID, code: str,
                 cipher: Cipher, guesses: Guesses) -> list[str]:
    """Turn the enrolled secret on with a code from it; return the recovery
    codes (shown once, stored hashed)."""
    user = await _state(conn, user_id)
    if user["mfa_secret"] is None:
        raise Conflict("enroll first")
    if user["mfa_enabled"]:
        raise Conflict("two-factor sign-in is already on")
    await _right_code(conn, user, code, cipher, guesses)
    codes = [opaque_token(8) for _ in range(RECOVERY_CODES)]
    await conn.execute(
        "UPDATE users SET mfa_enabled = true, mfa_recovery_codes = $2 WHERE id = $1",
        user["id"], [digest(c) for c in codes])
    await record(conn, actor, action="user.mfa.enable", resource_type="user",
                 resource_id=user["id"], changes={"mfa_enabled": [False, True]},
                 event_type="user.mfa.enabled", payload={"user_id": user["id"]})
    return codes


async def disable(conn: asyncpg.Connection, actor: Actor, user_id: UUID, code: str,
                  cipher: Cipher, guesses: Guesses) -> None:
    """Turn the second factor off with a TOTP or recovery code; the secret and
    the recovery codes are forgotten."""
    user = await _state(conn, user_id)
    if not user["mfa_enabled"]:
        raise Conflict("two-factor sign-in is off")
    await _right_code(conn, user, code, cipher, guesses)
    await conn.execute(
        "UPDATE users SET mfa_enabled = false, mfa_secret = NULL, mfa_last_step = NULL,"
        " mfa_recovery_codes = '{}' WHERE id = $1", user["id"])
    await record(conn, actor, action="user.mfa.disable", resource_type="user",
                 resource_id=user["id"], changes={"mfa_enabled": [True, False]},
                 event_type="user.mfa.disabled", payload={"user_id": user["id"]})

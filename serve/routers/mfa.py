"""TOTP second factor (RFC 6238: 30 s steps, ±1 step, a code is never
accepted twice) with single-use recovery codes."""
from __future__ import annotations

import time
from typing import Any
from uuid import UUID

import asyncpg
import pyotp
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from core.crypto import Cipher
from core.errors import Conflict, Invalid
from core.security import digest, opaque_token, same
from serve.auth import Principal, runtime_of, session
from serve.models import Strict
from serve.throttle import per_user, reserve_code, throttles
from storage.audit import record

router = APIRouter(prefix="/v1/auth/mfa", tags=["auth"], dependencies=[Depends(per_user)])
ISSUER = "Bidi"
RECOVERY_CODES = 10


class CodeIn(Strict):
    code: str = Field(min_length=6, max_length=32)


class EnrollOut(BaseModel):
    secret: str
    otpauth_url: str


class RecoveryOut(BaseModel):
    recovery_codes: list[str]


def _cipher(request: Request) -> Cipher:
    return Cipher(runtime_of(request).settings.encryption_key.get_secret_value())


def totp_step(secret: str, code: str, now: float | None = None) -> int | None:
    """The time step `code` belongs to (current ±1), or None."""
    totp = pyotp.TOTP(secret)
    moment = time.time() if now is None else now
    step = int(moment // totp.interval)
    for candidate in (step, step - 1, step + 1):
        if same(totp.at(candidate * totp.interval), code):
            return candidate
    return None


async def check_second_factor(conn: asyncpg.Connection, user: Any, code: str | None,
                              cipher: Cipher | None = None) -> bool:
    """Accept a fresh TOTP code or an unused recovery code, consuming it."""
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


async def _user(conn: asyncpg.Connection, principal: Principal) -> Any:
    return await conn.fetchrow(
        "SELECT id, email, mfa_enabled, mfa_secret, mfa_last_step FROM users WHERE id = $1",
        UUID(principal.user))


@router.post("/enroll", response_model=EnrollOut)
async def enroll(request: Request, principal: Principal = Depends(session)) -> Any:
    runtime = runtime_of(request)
    secret = pyotp.random_base32()
    async with runtime.db.system_tx() as conn:
        user = await _user(conn, principal)
        if user["mfa_enabled"]:
            raise Conflict("two-factor sign-in is already on; disable it first")
        await conn.execute("UPDATE users SET mfa_secret = $2, mfa_last_step = NULL WHERE id = $1",
                           user["id"], _cipher(request).encrypt(secret))
    url = pyotp.TOTP(secret).provisioning_uri(name=user["email"], issuer_name=ISSUER)
    return {"secret": secret, "otpauth_url": url}


@router.post("/verify", response_model=RecoveryOut)
async def verify(body: CodeIn, request: Request,
                 principal: Principal = Depends(session)) -> Any:
    runtime = runtime_of(request)
    codes = [opaque_token(8) for _ in range(RECOVERY_CODES)]
    async with runtime.db.system_tx() as conn:
        user = await _user(conn, principal)
        if user["mfa_secret"] is None:
            raise Conflict("enroll first")
        if user["mfa_enabled"]:
            raise Conflict("two-factor sign-in is already on")
        attempt = await reserve_code(request, user["id"])
        if not await check_second_factor(conn, user, body.code, _cipher(request)):
            raise Invalid("wrong or already used code", field="code")
        await throttles(request).codes.clear(attempt)
        await conn.execute(
            "UPDATE users SET mfa_enabled = true, mfa_recovery_codes = $2 WHERE id = $1",
            user["id"], [digest(c) for c in codes])
        await record(conn, principal.actor, action="user.mfa.enable", resource_type="user",
                     resource_id=user["id"], changes={"mfa_enabled": [False, True]},
                     event_type="user.mfa.enabled", payload={"user_id": user["id"]})
    return {"recovery_codes": codes}


@router.post("/disable", status_code=204)
async def disable(body: CodeIn, request: Request,
                  principal: Principal = Depends(session)) -> None:
    runtime = runtime_of(request)
    async with runtime.db.system_tx() as conn:
        user = await _user(conn, principal)
        if not user["mfa_enabled"]:
            raise Conflict("two-factor sign-in is off")
        full = await conn.fetchrow(
            "SELECT id, mfa_secret, mfa_recovery_codes FROM users WHERE id = $1", user["id"])
        attempt = await reserve_code(request, user["id"])
        if not await check_second_factor(conn, full, body.code, _cipher(request)):
            raise Invalid("wrong or already used code", field="code")
        await throttles(request).codes.clear(attempt)
        await conn.execute(
            "UPDATE users SET mfa_enabled = false, mfa_secret = NULL, mfa_last_step = NULL,"
            " mfa_recovery_codes = '{}' WHERE id = $1", user["id"])
        await record(conn, principal.actor, action="user.mfa.disable", resource_type="user",
                     resource_id=user["id"], changes={"mfa_enabled": [True, False]},
                     event_type="user.mfa.disabled", payload={"user_id": user["id"]})

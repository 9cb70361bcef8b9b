"""TOTP second factor: enroll, turn on with a code (recovery codes shown
once), turn off with a code (storage.mfa holds the rules)."""
from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from core.crypto import Cipher
from serve.auth import Principal, runtime_of, session
from serve.models import Strict
from serve.throttle import CodeGuesses, per_user
from storage import mfa

router = APIRouter(prefix="/v1/auth/mfa", tags=["auth"], dependencies=[Depends(per_user)])


class CodeIn(Strict):
    code: str = Field(min_length=6, max_length=32)


class EnrollOut(BaseModel):
    secret: str
    otpauth_url: str


class RecoveryOut(BaseModel):
    recovery_codes: list[str]


def _cipher(request: Request) -> Cipher:
    return Cipher(runtime_of(request).settings.encryption_key.get_secret_value())


@router.post("/enroll", response_model=EnrollOut)
async def enroll(request: Request, principal: Principal = Depends(session)) -> Any:
    async with runtime_of(request).db.system_tx() as conn:
        enrollment = await mfa.enroll(conn, UUID(principal.user), _cipher(request))
    return {"secret": enrollment.secret, "otpauth_url": enrollment.otpauth_url}


@router.post("/verify", response_model=RecoveryOut)
async def verify(body: CodeIn, request: Request,
                 principal: Principal = Depends(session)) -> Any:
    user_id = UUID(principal.user)
    async with runtime_of(request).db.system_tx() as conn:
        codes = await mfa.enable(conn, principal.actor, user_id, body.code, _cipher(request),
                                 CodeGuesses(request, user_id))
    return {"recovery_codes": codes}


@router.post("/disable", status_code=204)
async def disable(body: CodeIn, request: Request,
                  principal: Principal = Depends(session)) -> None:
    user_id = UUID(principal.user)
    async with runtime_of(request).db.system_tx() as conn:
        await mfa.disable(conn, principal.actor, user_id, body.code, _cipher(request),
                          CodeGuesses(request, user_id))

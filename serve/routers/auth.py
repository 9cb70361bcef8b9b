"""Sign-up, sign-in, token refresh with rotation, sign-out, `me`, org switch."""
from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, EmailStr, Field

from core.crypto import Cipher
from core.errors import Unauthorized
from core.security import ACCESS_TTL, hash_password, issue_access_token
from serve.auth import Principal, client_ip, runtime_of, session
from serve.models import Strict
from serve.throttle import per_ip, per_ip_register, refuse, throttles
from storage import identity

router = APIRouter(prefix="/v1", tags=["auth"])


class RegisterIn(Strict):
    email: EmailStr = Field(max_length=255)
    password: str = Field(min_length=8, max_length=256)
    name: str = Field(min_length=1, max_length=255)
    organization_name: str = Field(min_length=1, max_length=255)


class LoginIn(Strict):
    # Only looked up, so only its shape is checked: an address that was valid
    # when its account was made (or a local one, as the demo's) signs in.
    email: str = Field(min_length=3, max_length=255, pattern=r"^[^@\s]+@[^@\s]+$")
    password: str = Field(min_length=1, max_length=256)
    totp_code: str | None = Field(default=None, max_length=32)


class RefreshIn(Strict):
    refresh_token: str = Field(min_length=1, max_length=512)


class LogoutIn(Strict):
    refresh_token: str | None = Field(default=None, max_length=512)


class SwitchOrgIn(Strict):
    organization_id: UUID


class UserOut(BaseModel):
    id: UUID
    email: str
    name: str | None
    avatar_url: str | None = None
    mfa_enabled: bool = False
    created_at: datetime | None = None


class OrgOut(BaseModel):
    id: UUID
    name: str
    slug: str
    role: str


class TokensOut(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"
    expires_in: int = ACCESS_TTL


class SessionOut(TokensOut):
    user: UserOut
    organization: OrgOut


class MeOut(BaseModel):
    user: UserOut
    organization: OrgOut
    memberships: list[OrgOut]


def _access(request: Request, user_id: Any, org_id: Any, role: str) -> str:
    secret = runtime_of(request).settings.jwt_secret.get_secret_value()
    return issue_access_token(secret, str(user_id), str(org_id), role)


def _org(org: identity.Membership) -> dict[str, Any]:
    return {"id": org.org_id, "name": org.name, "slug": org.slug, "role": org.role}


def _session(request: Request, signed: identity.SignedIn) -> dict[str, Any]:
    return {"access_token": _access(request, signed.user["id"], signed.org.org_id,
                                    signed.org.role),
            "refresh_token": signed.refresh_token, "user": signed.user,
            "organization": _org(signed.org)}


@router.post("/auth/register", status_code=201, response_model=SessionOut,
             dependencies=[Depends(per_ip_register)])
async def register(body: RegisterIn, request: Request) -> dict[str, Any]:
    runtime = runtime_of(request)
    password_hash = await asyncio.to_thread(hash_password, body.password)
    async with runtime.db.system_tx() as conn:
        signed = await identity.register(
            conn, email=body.email, password_hash=password_hash, name=body.name,
            org_name=body.organization_name, ip=client_ip(request),
            user_agent=request.headers.get("user-agent"))
    return _session(request, signed)


@router.post("/auth/login", response_model=SessionOut,
             responses={401: {"description": "bad credentials; `mfa_required` when the"
                                             " password is right and the code is missing"},
                        429: {"description": "too many failed attempts"}})
async def login(body: LoginIn, request: Request) -> dict[str, Any]:
    runtime = runtime_of(request)
    limits = throttles(request)
    account = f"rate_limit:login:acct:{body.email.lower()}"
    ip = f"rate_limit:login:ip:{client_ip(request) or 'unknown'}"
    message = "too many failed sign-in attempts; try again later"
    # Each attempt is counted before its password is checked, so parallel
    # guesses cannot all slip under the limit; a right answer gives it back.
    refuse(await limits.login_accounts.reserve(account), message)
    by_ip = await limits.login_ips.reserve(ip)
    if not by_ip.allowed:
        await limits.login_accounts.give_back(account)
        refuse(by_ip, message)
    async with runtime.db.system_tx() as conn:
        signed = await identity.login(
            conn, email=body.email, password=body.password, code=body.totp_code,
            cipher=Cipher(runtime.settings.encryption_key.get_secret_value()))
    await limits.login_accounts.clear(account)
    await limits.login_ips.give_back(ip)
    return _session(request, signed)


@router.post("/auth/refresh", response_model=TokensOut, dependencies=[Depends(per_ip)],
             responses={401: {"description": "invalid, expired or reused token"}})
async def refresh(body: RefreshIn, request: Request) -> dict[str, Any]:
    runtime = runtime_of(request)
    async with runtime.db.system_tx() as conn:
        outcome = await identity.rotate_refresh(conn, body.refresh_token)
    if isinstance(outcome, str):  # raised after COMMIT: a family revocation sticks
        raise Unauthorized(outcome)
    user_id, org_id, role, new_token = outcome
    return {"access_token": _access(request, user_id, org_id, role),
            "refresh_token": new_token}


@router.post("/auth/logout", status_code=204, response_class=Response)
async def logout(request: Request, body: LogoutIn | None = None,
                 principal: Principal = Depends(session)) -> Response:
    # the session of the refresh token sent; without one, every session in this org
    async with runtime_of(request).db.system_tx() as conn:
        await identity.logout(conn, UUID(principal.user), UUID(principal.org_id),
                              body.refresh_token if body is not None else None)
    return Response(status_code=204)


@router.get("/me", response_model=MeOut, tags=["me"])
async def me(request: Request, principal: Principal = Depends(session)) -> Any:
    async with runtime_of(request).db.system_tx() as conn:
        found = await identity.me(conn, UUID(principal.user), principal.org_id)
    return {"user": found.user, "organization": _org(found.org),
            "memberships": [_org(o) for o in found.memberships]}


@router.post("/auth/switch-org", response_model=SessionOut)
async def switch_org(body: SwitchOrgIn, request: Request,
                     principal: Principal = Depends(session)) -> dict[str, Any]:
    async with runtime_of(request).db.system_tx() as conn:
        signed = await identity.switch_org(conn, UUID(principal.user), body.organization_id)
    return _session(request, signed)

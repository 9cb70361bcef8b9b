"""Sign-up, sign-in, token refresh with rotation, sign-out, `me`, org switch."""
from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, EmailStr, Field

from core.crypto import Cipher
from core.errors import Forbidden, NotFound, Unauthorized
from core.security import ACCESS_TTL, hash_password, issue_access_token, verify_password
from serve.auth import Principal, client_ip, runtime_of, session
from serve.models import Strict
from serve.routers.mfa import check_second_factor
from serve.throttle import per_ip, per_ip_register, refuse, throttles
from storage import identity
from storage.audit import Actor, record

router = APIRouter(prefix="/v1", tags=["auth"])


class RegisterIn(Strict):
    email: EmailStr = Field(max_length=255)
    password: str = Field(min_length=8, max_length=256)
    name: str = Field(min_length=1, max_length=255)
    organization_name: str = Field(min_length=1, max_length=255)


class LoginIn(Strict):
    email: EmailStr = Field(max_length=255)
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


@router.post("/auth/register", status_code=201, response_model=SessionOut,
             dependencies=[Depends(per_ip_register)])
async def register(body: RegisterIn, request: Request) -> dict[str, Any]:
    runtime = runtime_of(request)
    password_hash = await asyncio.to_thread(hash_password, body.password)
    async with runtime.db.system_tx() as conn:
        user, org = await identity.create_user_and_org(
            conn, email=body.email, password_hash=password_hash, name=body.name,
            org_name=body.organization_name)
        refresh, _ = await identity.issue_refresh(conn, user["id"], org["id"])
        actor = Actor(str(org["id"]), str(user["id"]), client_ip(request),
                      request.headers.get("user-agent"))
        await record(conn, actor, action="organization.create", resource_type="organization",
                     resource_id=org["id"], changes={"name": org["name"]},
                     event_type="organization.created",
                     payload={"organization_id": org["id"], "owner_id": user["id"]})
    return {"access_token": _access(request, user["id"], org["id"], "owner"),
            "refresh_token": refresh, "user": user,
            "organization": {**org, "role": "owner"}}


@router.post("/auth/login", response_model=SessionOut,
             responses={401: {"description": "bad credentials"},
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
        user = await identity.user_by_email(conn, body.email)
        stored = user["password_hash"] if user is not None else None
        ok = await asyncio.to_thread(verify_password, stored, body.password)
        if ok and user is not None and user["mfa_enabled"]:
            ok = await check_second_factor(
                conn, user, body.totp_code,
                Cipher(runtime.settings.encryption_key.get_secret_value()))
        if not ok or user is None:
            raise Unauthorized("wrong email, password or code")
        orgs = await identity.memberships(conn, user["id"])
        if not orgs:
            raise Forbidden("this account belongs to no organization")
        first = orgs[0]
        refresh, _ = await identity.issue_refresh(conn, user["id"], first["organization_id"])
    await limits.login_accounts.clear(account)
    await limits.login_ips.give_back(ip)
    return {"access_token": _access(request, user["id"], first["organization_id"],
                                    first["role"]),
            "refresh_token": refresh, "user": dict(user),
            "organization": _org(first)}


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
    async with runtime_of(request).db.system_tx() as conn:
        if body is not None and body.refresh_token:
            await identity.revoke_token_family(conn, body.refresh_token)
        else:  # every session of this user in this org
            await conn.execute(
                "UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = $1"
                " AND organization_id = $2 AND revoked_at IS NULL",
                UUID(principal.user), UUID(principal.org_id))
    return Response(status_code=204)


@router.get("/me", response_model=MeOut, tags=["me"])
async def me(request: Request, principal: Principal = Depends(session)) -> Any:
    runtime = runtime_of(request)
    async with runtime.db.system_tx() as conn:
        user = await conn.fetchrow(
            f"SELECT {identity.USER_COLUMNS} FROM users WHERE id = $1", UUID(principal.user))
        orgs = await identity.memberships(conn, UUID(principal.user))
    if user is None:
        raise Unauthorized("this account no longer exists")
    current = next((o for o in orgs if str(o["organization_id"]) == principal.org_id), None)
    if current is None:
        raise Unauthorized("no longer a member of this organization")
    return {"user": dict(user), "organization": _org(current),
            "memberships": [_org(o) for o in orgs]}


@router.post("/auth/switch-org", response_model=SessionOut)
async def switch_org(body: SwitchOrgIn, request: Request,
                     principal: Principal = Depends(session)) -> dict[str, Any]:
    runtime = runtime_of(request)
    async with runtime.db.system_tx() as conn:
        orgs = await identity.memberships(conn, UUID(principal.user))
        target = next((o for o in orgs if o["organization_id"] == body.organization_id), None)
        if target is None:
            raise NotFound("organization not found")
        user = await conn.fetchrow(
            f"SELECT {identity.USER_COLUMNS} FROM users WHERE id = $1", UUID(principal.user))
        refresh_token, _ = await identity.issue_refresh(conn, user["id"], body.organization_id)
    return {"access_token": _access(request, user["id"], body.organization_id, target["role"]),
            "refresh_token": refresh_token, "user": dict(user), "organization": _org(target)}


def _org(row: Any) -> dict[str, Any]:
    return {"id": row["organization_id"], "name": row["name"], "slug": row["slug"],
            "role": row["role"]}

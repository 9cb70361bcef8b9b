"""Members of an organization: list, invite by emailed token, accept, change
role, remove. Only an owner grants or takes away ownership, and the last
owner can be neither demoted nor removed."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, EmailStr, Field

from core.errors import Conflict, Forbidden, Invalid, NotFound
from core.rbac import Role
from core.security import digest, opaque_token
from serve.auth import Caller, Principal, current_principal, require, runtime_of, session
from serve.models import Strict
from serve.pagination import Page, PageParams, page_params
from storage.audit import Actor, record
from storage.revocations import revoke_sessions

router = APIRouter(prefix="/v1", tags=["members"])
INVITE_TTL = timedelta(days=7)


class MemberOut(BaseModel):
    user_id: UUID
    email: str
    name: str | None
    role: str
    joined_at: datetime | None


class InviteIn(Strict):
    email: EmailStr = Field(max_length=255)
    role: Role = Role.BIDI


class InviteOut(BaseModel):
    id: UUID
    email: str
    role: str
    expires_at: datetime
    accepted_at: datetime | None = None
    created_at: datetime | None = None


class InviteCreated(InviteOut):
    token: str = Field(description="Sent to the invitee; shown this once.")


class AcceptIn(Strict):
    token: str = Field(min_length=1, max_length=256)


class RoleIn(Strict):
    role: Role


class AcceptedOut(BaseModel):
    organization_id: UUID
    role: str


def _guard_owner_change(principal: Principal, *roles: str) -> None:
    if Role.OWNER in roles and principal.role != Role.OWNER:
        raise Forbidden("only an owner can grant or take away ownership")


async def _other_owners(conn: asyncpg.Connection, user_id: UUID) -> int:
    owners = await conn.fetch(
        "SELECT user_id FROM organization_members WHERE role = 'owner' FOR UPDATE")
    return sum(1 for r in owners if r["user_id"] != user_id)


@router.get("/members", response_model=Page[MemberOut])
async def list_members(request: Request, page: PageParams = Depends(page_params),
                       principal: Principal = Depends(require("org:read"))) -> Any:
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        total = await conn.fetchval("SELECT count(*) FROM organization_members")
        rows = await conn.fetch(
            "SELECT m.user_id, u.email, u.name, m.role, m.created_at AS joined_at"
            " FROM organization_members m JOIN users u ON u.id = m.user_id"
            " ORDER BY m.created_at, m.user_id LIMIT $1 OFFSET $2", page.limit, page.offset)
    return {"page": page.page, "limit": page.limit, "total": total,
            "data": [dict(r) for r in rows]}


@router.post("/members/invitations", status_code=201, response_model=InviteCreated)
async def invite(body: InviteIn, request: Request,
                 principal: Principal = Depends(require("members:manage"))) -> Any:
    _guard_owner_change(principal, body.role)
    token = opaque_token()
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        if await conn.fetchval(
                "SELECT 1 FROM organization_members m JOIN users u ON u.id = m.user_id"
                " WHERE lower(u.email) = lower($1)", body.email):
            raise Conflict("already a member")
        row = await conn.fetchrow(
            "INSERT INTO invitations (organization_id, email, role, token_hash, invited_by,"
            " expires_at) VALUES ($1, $2, $3, $4, $5, $6)"
            " RETURNING id, email, role, expires_at, accepted_at, created_at",
            UUID(principal.org_id), body.email, body.role.value, digest(token),
            principal.actor.user_id and UUID(principal.actor.user_id),
            datetime.now(UTC) + INVITE_TTL)
        await record(conn, principal.actor, action="member.invite", resource_type="invitation",
                     resource_id=row["id"], changes={"email": body.email, "role": body.role},
                     event_type="member.invited",
                     payload={"invitation_id": row["id"], "email": body.email,
                              "role": body.role.value})
    return {**dict(row), "token": token}


@router.get("/members/invitations", response_model=list[InviteOut])
async def list_invitations(request: Request,
                           principal: Principal = Depends(require("members:manage"))) -> Any:
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        rows = await conn.fetch(
            "SELECT id, email, role, expires_at, accepted_at, created_at FROM invitations"
            " WHERE accepted_at IS NULL AND expires_at > now() ORDER BY created_at")
    return [dict(r) for r in rows]


@router.post("/invitations/accept", response_model=AcceptedOut)
async def accept(body: AcceptIn, request: Request,
                 principal: Principal = Depends(session)) -> Any:
    user_id = UUID(principal.user)
    async with runtime_of(request).db.system_tx() as conn:
        invitation = await conn.fetchrow(
            "SELECT id, organization_id, email, role, expires_at, accepted_at FROM invitations"
            " WHERE token_hash = $1 FOR UPDATE", digest(body.token))
        if invitation is None or invitation["accepted_at"] is not None:
            raise NotFound("invitation not found or already used")
        if invitation["expires_at"] < datetime.now(UTC):
            raise Invalid("invitation expired", field="token")
        email = await conn.fetchval("SELECT email FROM users WHERE id = $1", user_id)
        if email is None or email.lower() != invitation["email"].lower():
            raise Forbidden("this invitation was sent to another email address")
        try:
            await conn.execute(
                "INSERT INTO organization_members (organization_id, user_id, role)"
                " VALUES ($1, $2, $3)", invitation["organization_id"], user_id,
                invitation["role"])
        except asyncpg.UniqueViolationError:
            raise Conflict("already a member") from None
        await conn.execute("UPDATE invitations SET accepted_at = now() WHERE id = $1",
                           invitation["id"])
        org_id = str(invitation["organization_id"])
        await record(conn, Actor(org_id, str(user_id), principal.ip, principal.user_agent),
                     action="member.join", resource_type="user", resource_id=user_id,
                     changes={"role": invitation["role"]}, event_type="member.joined",
                     payload={"user_id": user_id, "role": invitation["role"]})
    return {"organization_id": invitation["organization_id"], "role": invitation["role"]}


@router.patch("/members/{user_id}", response_model=MemberOut)
async def change_role(user_id: UUID, body: RoleIn, request: Request,
                      principal: Principal = Depends(require("members:manage"))) -> Any:
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        current = await conn.fetchval(
            "SELECT role FROM organization_members WHERE user_id = $1 FOR UPDATE", user_id)
        if current is None:
            raise NotFound("member not found")
        _guard_owner_change(principal, current, body.role)
        if current == Role.OWNER and body.role != Role.OWNER \
                and await _other_owners(conn, user_id) == 0:
            raise Conflict("the last owner cannot be demoted")
        await conn.execute("UPDATE organization_members SET role = $2 WHERE user_id = $1",
                           user_id, body.role.value)
        row = await conn.fetchrow(
            "SELECT m.user_id, u.email, u.name, m.role, m.created_at AS joined_at"
            " FROM organization_members m JOIN users u ON u.id = m.user_id"
            " WHERE m.user_id = $1", user_id)
        await record(conn, principal.actor, action="member.role", resource_type="user",
                     resource_id=user_id, changes={"role": [current, body.role.value]},
                     event_type="member.role.changed",
                     payload={"user_id": user_id, "from": current, "to": body.role.value})
    if current != body.role.value:
        # Tokens name the role: the old ones go, the member refreshes into the new one.
        # Their API keys are cut down to the new role where they are used (serve.auth).
        await revoke_sessions(runtime_of(request).redis, principal.org_id, str(user_id),
                              f"role changed to {body.role.value}")
    return dict(row)


@router.delete("/members/{user_id}", status_code=204, response_class=Response)
async def remove_member(user_id: UUID, request: Request,
                        principal: Principal = Depends(current_principal)) -> Response:
    """Remove a member (or leave, as a signed-in user removing themself): their
    sessions in this org end, their WebSockets close and their API keys are
    revoked."""
    leaving = principal.caller is Caller.USER and principal.user_id == str(user_id)
    if not leaving:
        await require("members:manage")(request, principal)
    runtime = runtime_of(request)
    async with runtime.db.tenant_tx(principal.org_id, principal.user_id) as conn:
        current = await conn.fetchval(
            "SELECT role FROM organization_members WHERE user_id = $1 FOR UPDATE", user_id)
        if current is None:
            raise NotFound("member not found")
        if not leaving:
            _guard_owner_change(principal, current)
        if current == Role.OWNER and await _other_owners(conn, user_id) == 0:
            raise Conflict("the last owner cannot be removed")
        await conn.execute("DELETE FROM organization_members WHERE user_id = $1", user_id)
        keys = await conn.fetch(
            "UPDATE api_keys SET revoked_at = now() WHERE created_by = $1"
            " AND revoked_at IS NULL RETURNING id", user_id)
        await record(conn, principal.actor, action="member.remove", resource_type="user",
                     resource_id=user_id,
                     changes={"role": current, "api_keys_revoked": [k["id"] for k in keys]},
                     event_type="member.removed", payload={"user_id": user_id})
    async with runtime.db.system_tx() as conn:
        await conn.execute(
            "UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = $1"
            " AND organization_id = $2 AND revoked_at IS NULL", user_id, UUID(principal.org_id))
    await revoke_sessions(runtime.redis, principal.org_id, str(user_id),
                          "removed from the organization")
    return Response(status_code=204)

"""Members of an organization: list, invite by emailed token, accept, change
role, remove (storage.members holds the rules)."""
from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, EmailStr, Field

from core.rbac import Role
from serve.auth import Caller, Principal, current_principal, require, runtime_of, session
from serve.models import Strict
from serve.pagination import Page, PageParams, page_params
from storage import members

router = APIRouter(prefix="/v1", tags=["members"])


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


@router.get("/members", response_model=Page[MemberOut])
async def list_members(request: Request, page: PageParams = Depends(page_params),
                       principal: Principal = Depends(require("org:read"))) -> Any:
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        total, rows = await members.page(conn, page.limit, page.offset)
    return {"page": page.page, "limit": page.limit, "total": total, "data": rows}


@router.post("/members/invitations", status_code=201, response_model=InviteCreated)
async def invite(body: InviteIn, request: Request,
                 principal: Principal = Depends(require("members:manage"))) -> Any:
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        made = await members.invite(conn, principal.actor, acting_role=principal.role,
                                    email=body.email, role=body.role)
    return {**made.invitation, "token": made.token}


@router.get("/members/invitations", response_model=list[InviteOut])
async def list_invitations(request: Request,
                           principal: Principal = Depends(require("members:manage"))) -> Any:
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        invitations = await members.pending_invitations(conn)
    return invitations


@router.post("/invitations/accept", response_model=AcceptedOut)
async def accept(body: AcceptIn, request: Request,
                 principal: Principal = Depends(session)) -> Any:
    async with runtime_of(request).db.system_tx() as conn:
        joined = await members.accept(conn, UUID(principal.user), body.token,
                                      ip=principal.ip, user_agent=principal.user_agent)
    return {"organization_id": joined.org_id, "role": joined.role}


@router.patch("/members/{user_id}", response_model=MemberOut)
async def change_role(user_id: UUID, body: RoleIn, request: Request,
                      principal: Principal = Depends(require("members:manage"))) -> Any:
    runtime = runtime_of(request)
    change = await members.change_role(runtime.db, runtime.redis, principal.actor, user_id,
                                       body.role, acting_role=principal.role)
    return change.member


@router.delete("/members/{user_id}", status_code=204, response_class=Response)
async def remove_member(user_id: UUID, request: Request,
                        principal: Principal = Depends(current_principal)) -> Response:
    """Remove a member (or leave, as a signed-in user removing themself): their
    sessions in this org end, their WebSockets close and their API keys are
    revoked."""
    # Leaving is a person's own act: an API key never leaves on its creator's behalf.
    leaving = principal.caller is Caller.USER and principal.user_id == str(user_id)
    if not leaving:
        await require("members:manage")(request, principal)
    runtime = runtime_of(request)
    await members.remove(runtime.db, runtime.redis, principal.actor, user_id,
                         acting_role=principal.role, leaving=leaving)
    return Response(status_code=204)

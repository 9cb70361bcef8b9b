"""The caller's organization: read it, change its name and settings
(admins), delete it with everything in it (owners, naming its slug)."""
from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, EmailStr, Field

from serve.auth import Principal, require, runtime_of
from serve.models import Strict
from storage import organizations

router = APIRouter(prefix="/v1/organization", tags=["organization"])


class OrganizationOut(BaseModel):
    id: UUID
    name: str
    slug: str
    settings: dict[str, Any]
    billing_email: str | None
    created_at: datetime | None
    updated_at: datetime | None


class OrganizationPatch(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=255)
    settings: dict[str, Any] | None = None
    billing_email: EmailStr | None = Field(default=None, max_length=255)


class DeleteIn(Strict):
    confirm_slug: str = Field(min_length=1, max_length=100)


@router.get("", response_model=OrganizationOut)
async def get_organization(request: Request,
                           principal: Principal = Depends(require("org:read"))) -> Any:
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        found = await organizations.get(conn)
    return found


@router.patch("", response_model=OrganizationOut)
async def update_organization(body: OrganizationPatch, request: Request,
                              principal: Principal = Depends(require("org:manage"))) -> Any:
    fields = {k: getattr(body, k) for k in body.model_fields_set}
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        updated = await organizations.update(conn, principal.actor, fields)
    return updated


@router.delete("", status_code=204, response_class=Response)
async def delete_organization(body: DeleteIn, request: Request,
                              principal: Principal = Depends(require("org:delete"))) -> Response:
    await organizations.delete(runtime_of(request).db, principal.actor, body.confirm_slug)
    return Response(status_code=204)

"""The caller's organization: read it, change its name and settings
(admins), delete it with everything in it (owners, naming its slug)."""
from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, EmailStr, Field

from core.errors import Invalid, NotFound
from serve.auth import Principal, require, runtime_of
from serve.models import Strict
from storage.audit import record

router = APIRouter(prefix="/v1/organization", tags=["organization"])
COLUMNS = "id, name, slug, settings, billing_email, created_at, updated_at"


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
        row = await conn.fetchrow(f"SELECT {COLUMNS} FROM organizations")
    if row is None:
        raise NotFound("organization not found")
    return {**dict(row), "settings": row["settings"] or {}}


@router.patch("", response_model=OrganizationOut)
async def update_organization(body: OrganizationPatch, request: Request,
                              principal: Principal = Depends(require("org:manage"))) -> Any:
    fields = {k: getattr(body, k) for k in body.model_fields_set}
    if any(v is None for k, v in fields.items() if k != "billing_email"):
        raise Invalid("name and settings cannot be null")
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        before = await conn.fetchrow(f"SELECT {COLUMNS} FROM organizations FOR UPDATE")
        if before is None:
            raise NotFound("organization not found")
        if fields:
            sets = ", ".join(f"{k} = ${i}" for i, k in enumerate(fields, 1))
            await conn.execute(f"UPDATE organizations SET {sets}, updated_at = now()",
                               *fields.values())
        row = await conn.fetchrow(f"SELECT {COLUMNS} FROM organizations")
        changes = {k: [before[k], row[k]] for k in fields if before[k] != row[k]}
        await record(conn, principal.actor, action="organization.update",
                     resource_type="organization", resource_id=row["id"], changes=changes,
                     event_type="organization.updated", payload={"changes": changes})
    return {**dict(row), "settings": row["settings"] or {}}


@router.delete("", status_code=204, response_class=Response)
async def delete_organization(body: DeleteIn, request: Request,
                              principal: Principal = Depends(require("org:delete"))) -> Response:
    runtime = runtime_of(request)
    async with runtime.db.tenant_tx(principal.org_id, principal.user_id) as conn:
        slug = await conn.fetchval("SELECT slug FROM organizations")
    if slug is None:
        raise NotFound("organization not found")
    if body.confirm_slug != slug:
        raise Invalid("confirm_slug must be the organization's slug", field="confirm_slug")
    # Deleting the tenant row cascades to every tenant table; bidi_app may not
    # delete organizations, so this one statement runs as the owner role.
    async with runtime.db.system_tx() as conn:
        await conn.execute("DELETE FROM organizations WHERE id = $1", UUID(principal.org_id))
    return Response(status_code=204)

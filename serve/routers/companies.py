"""Companies: CRUD with free-text search, filters and pagination. Every
mutation writes its audit row and its event in the same transaction."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import asyncpg
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field

from core.errors import Invalid, NotFound
from serve.auth import Principal, require, runtime_of
from serve.crud import Conditions, delete_one, escape_like, get_one, insert_sql
from serve.models import Strict
from serve.pagination import Page, PageParams, page_params
from storage.audit import record

router = APIRouter(prefix="/v1/companies", tags=["companies"])

Size = Literal["startup", "small", "medium", "large", "enterprise"]
Stage = Literal["lead", "prospect", "customer", "partner"]
NOT_NULL = ("name",)


class CompanyPatch(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=255)
    industry: str | None = Field(default=None, max_length=100)
    description: str | None = Field(default=None, max_length=100_000)
    size: Size | None = None
    stage: Stage | None = None
    website: str | None = Field(default=None, max_length=255)
    logo_url: str | None = Field(default=None, max_length=2048)
    metadata: dict[str, Any] | None = None


class CompanyIn(CompanyPatch):
    name: str = Field(min_length=1, max_length=255)


class CompanyOut(BaseModel):
    id: UUID
    name: str
    industry: str | None
    description: str | None
    size: str | None
    stage: str | None
    website: str | None
    logo_url: str | None
    metadata: dict[str, Any]
    created_at: datetime | None
    updated_at: datetime | None


COLUMNS = ("id, name, industry, description, size, stage, website, logo_url,"
           " coalesce(metadata, '{}'::jsonb) AS metadata, created_at, updated_at")



def _patch_fields(body: Strict, not_null: tuple[str, ...]) -> dict[str, Any]:
    """The fields a PATCH sets; a NOT NULL column cannot be set to null."""
    fields = {k: getattr(body, k) for k in body.model_fields_set}
    for name in not_null:
        if name in fields and fields[name] is None:
            raise Invalid(f"{name} cannot be null", field=name)
    return fields


def _filters(q: str | None, industry: str | None, stage: str | None,
             size: str | None) -> Conditions:
    cond = Conditions()
    if q:
        n = cond.param("%" + escape_like(q) + "%")
        cond.add(f"(name ILIKE {n} OR industry ILIKE {n} OR website ILIKE {n})")
    if industry:
        cond.add(f"lower(industry) = lower({cond.param(industry)})")
    cond.equal(stage=stage or None, size=size or None)
    return cond


@router.get("", response_model=Page[CompanyOut])
async def list_companies(
    request: Request,
    page: PageParams = Depends(page_params),
    q: str | None = Query(None, max_length=200, description="name, industry, website"),
    industry: str | None = Query(None, max_length=100),
    stage: Stage | None = None,
    size: Size | None = None,
    principal: Principal = Depends(require("crm:read")),
) -> Any:
    cond = _filters(q, industry, stage, size)
    paging, args = cond.paging(page)
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        total = await conn.fetchval(f"SELECT count(*) FROM companies{cond.where()}", *cond.args)
        rows = await conn.fetch(f"SELECT {COLUMNS} FROM companies{cond.where()}"
                                f" ORDER BY created_at DESC, id{paging}", *args)
    return {"page": page.page, "limit": page.limit, "total": total,
            "data": [dict(r) for r in rows]}


@router.post("", status_code=201, response_model=CompanyOut)
async def create_company(body: CompanyIn, request: Request,
                         principal: Principal = Depends(require("crm:write"))) -> Any:
    fields = body.model_dump(exclude_none=True)
    names = ["organization_id", *fields]
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        row = await conn.fetchrow(insert_sql("companies", names, COLUMNS),
                                  UUID(principal.org_id), *fields.values())
        await record(conn, principal.actor, action="company.create", resource_type="company",
                     resource_id=row["id"], changes=fields, event_type="company.created",
                     payload=dict(row))
    return dict(row)


@router.get("/{company_id}", response_model=CompanyOut)
async def get_company(company_id: UUID, request: Request,
                      principal: Principal = Depends(require("crm:read"))) -> Any:
    return dict(await get_one(request, principal, "companies", COLUMNS, "company", company_id))


async def _update(conn: asyncpg.Connection, company_id: UUID,
                  fields: dict[str, Any]) -> tuple[asyncpg.Record, asyncpg.Record]:
    before = await conn.fetchrow(
        f"SELECT {COLUMNS} FROM companies WHERE id = $1 FOR UPDATE", company_id)
    if before is None:
        raise NotFound("company not found")
    if not fields:
        return before, before
    sets = ", ".join(f"{name} = ${i}" for i, name in enumerate(fields, 2))
    row = await conn.fetchrow(
        f"UPDATE companies SET {sets}, updated_at = now() WHERE id = $1 RETURNING {COLUMNS}",
        company_id, *fields.values())
    return before, row


@router.patch("/{company_id}", response_model=CompanyOut)
async def update_company(company_id: UUID, body: CompanyPatch, request: Request,
                         principal: Principal = Depends(require("crm:write"))) -> Any:
    fields = _patch_fields(body, NOT_NULL)
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        before, row = await _update(conn, company_id, fields)
        changes = {k: [before[k], row[k]] for k in fields if before[k] != row[k]}
        if changes:
            await record(conn, principal.actor, action="company.update",
                         resource_type="company", resource_id=company_id, changes=changes,
                         event_type="company.updated",
                         payload={"id": company_id, "changes": changes})
    return dict(row)


@router.delete("/{company_id}", status_code=204, response_class=Response)
async def delete_company(company_id: UUID, request: Request,
                         principal: Principal = Depends(require("crm:write"))) -> Response:
    return await delete_one(request, principal, "companies", "company", company_id)

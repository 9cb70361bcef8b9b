"""Companies: CRUD with free-text search, filters and pagination, over
`storage.companies` (the rules, audit rows and events)."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field

from serve.auth import Principal, require, runtime_of
from serve.models import Strict
from serve.pagination import Page, PageParams, page_params
from storage import companies
from storage.companies import CompanyFilters

router = APIRouter(prefix="/v1/companies", tags=["companies"])

Size = Literal["startup", "small", "medium", "large", "enterprise"]
Stage = Literal["lead", "prospect", "customer", "partner"]


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
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        found = await companies.page(conn, CompanyFilters(q, industry, stage, size), page)
    return found.as_dict()


@router.post("", status_code=201, response_model=CompanyOut)
async def create_company(body: CompanyIn, request: Request,
                         principal: Principal = Depends(require("crm:write"))) -> Any:
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        return await companies.create(conn, principal.actor, body.model_dump(exclude_none=True))


@router.get("/{company_id}", response_model=CompanyOut)
async def get_company(company_id: UUID, request: Request,
                      principal: Principal = Depends(require("crm:read"))) -> Any:
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        return await companies.get(conn, company_id)


@router.patch("/{company_id}", response_model=CompanyOut)
async def update_company(company_id: UUID, body: CompanyPatch, request: Request,
                         principal: Principal = Depends(require("crm:write"))) -> Any:
    fields = {k: getattr(body, k) for k in body.model_fields_set}
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        return await companies.update(conn, principal.actor, company_id, fields)


@router.delete("/{company_id}", status_code=204, response_class=Response)
async def delete_company(company_id: UUID, request: Request,
                         principal: Principal = Depends(require("crm:write"))) -> Response:
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        await companies.delete(conn, principal.actor, company_id)
    return Response(status_code=204)

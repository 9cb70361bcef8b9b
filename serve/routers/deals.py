"""Deals: CRUD with filters and pagination, stage moves and notes, over
`storage.deals` and `storage.notes` (the reference checks, audit rows and
events, `deal.stage.changed` among them)."""
from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Body, Depends, Query, Request, Response
from pydantic import BaseModel, Field

from serve.auth import Principal, require, runtime_of
from serve.models import NoteIn, NoteOut, Strict
from serve.pagination import Page, PageParams, page_params
from storage import deals, notes
from storage.deals import DealFilters

router = APIRouter(prefix="/v1/deals", tags=["deals"])
CURRENCY = r"^[A-Z]{3}$"


class DealPatch(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=255)
    pipeline_id: UUID | None = None
    stage_id: UUID | None = None
    contact_id: UUID | None = None
    company_id: UUID | None = None
    value: Decimal | None = Field(default=None, ge=0, max_digits=12, decimal_places=2)
    currency: str | None = Field(default=None, pattern=CURRENCY)
    expected_close_date: date | None = None
    probability: int | None = Field(default=None, ge=0, le=100)
    notes: str | None = Field(default=None, max_length=100_000)
    metadata: dict[str, Any] | None = None


class DealIn(DealPatch):
    name: str = Field(min_length=1, max_length=255)
    pipeline_id: UUID
    currency: str = Field(default="USD", pattern=CURRENCY)
    probability: int = Field(default=0, ge=0, le=100)


class DealOut(BaseModel):
    id: UUID
    pipeline_id: UUID | None
    stage_id: UUID | None
    contact_id: UUID | None
    company_id: UUID | None
    name: str
    value: float | None
    currency: str | None
    expected_close_date: date | None
    probability: int | None
    notes: str | None
    metadata: dict[str, Any]
    created_at: datetime | None
    updated_at: datetime | None


@router.get("", response_model=Page[DealOut])
async def list_deals(
    request: Request,
    page: PageParams = Depends(page_params),
    q: str | None = Query(None, max_length=200, description="deal name"),
    pipeline_id: UUID | None = None,
    stage_id: UUID | None = None,
    contact_id: UUID | None = None,
    company_id: UUID | None = None,
    principal: Principal = Depends(require("crm:read")),
) -> Any:
    filters = DealFilters(q, pipeline_id, stage_id, contact_id, company_id)
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        found = await deals.page(conn, filters, page)
    return found.as_dict()


@router.post("", status_code=201, response_model=DealOut)
async def create_deal(body: DealIn, request: Request,
                      principal: Principal = Depends(require("crm:write"))) -> Any:
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        return await deals.create(conn, principal.actor, body.model_dump(exclude_none=True))


@router.get("/{deal_id}", response_model=DealOut)
async def get_deal(deal_id: UUID, request: Request,
                   principal: Principal = Depends(require("crm:read"))) -> Any:
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        return await deals.get(conn, deal_id)


@router.patch("/{deal_id}", response_model=DealOut)
async def update_deal(deal_id: UUID, body: DealPatch, request: Request,
                      principal: Principal = Depends(require("crm:write"))) -> Any:
    fields = {k: getattr(body, k) for k in body.model_fields_set}
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        return await deals.update(conn, principal.actor, deal_id, fields)


@router.delete("/{deal_id}", status_code=204, response_class=Response)
async def delete_deal(deal_id: UUID, request: Request,
                      principal: Principal = Depends(require("crm:write"))) -> Response:
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        await deals.delete(conn, principal.actor, deal_id)
    return Response(status_code=204)


@router.get("/{deal_id}/notes", response_model=list[NoteOut])
async def notes_of_deal(deal_id: UUID, request: Request,
                        principal: Principal = Depends(require("crm:read"))) -> Any:
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        return await notes.of(conn, "deal", deal_id)


@router.post("/{deal_id}/notes", status_code=201, response_model=NoteOut)
async def note_on_deal(deal_id: UUID, request: Request, body: NoteIn = Body(...),
                       principal: Principal = Depends(require("crm:write"))) -> Any:
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        return await notes.add(conn, principal.actor, "deal", deal_id, body.body)

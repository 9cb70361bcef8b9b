"""Deals: CRUD with filters and pagination, stage moves (`deal.stage.changed`)
and notes. Every reference a deal stores (pipeline, stage, contact, company)
is checked to be visible in the tenant, and a stage to belong to the deal's
pipeline, before it is written: foreign keys do not see row-level security."""
from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg
from fastapi import APIRouter, Body, Depends, Query, Request, Response
from pydantic import BaseModel, Field

from core.errors import Invalid, NotFound
from serve.auth import Principal, require, runtime_of
from serve.crud import (
    Conditions,
    add_note,
    delete_one,
    escape_like,
    get_one,
    insert_sql,
    list_notes,
)
from serve.models import NoteIn, NoteOut, Strict
from serve.pagination import Page, PageParams, page_params
from storage.audit import append_event, record

router = APIRouter(prefix="/v1/deals", tags=["deals"])
NOT_NULL = ("name", "pipeline_id", "stage_id", "currency", "probability")
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


COLUMNS = ("id, pipeline_id, stage_id, contact_id, company_id, name, value, currency,"
           " expected_close_date, probability, notes,"
           " coalesce(metadata, '{}'::jsonb) AS metadata, created_at, updated_at")


def deal_out(row: asyncpg.Record) -> dict[str, Any]:
    """A deal as the API shows it: the value as a number."""
    out = dict(row)
    if out.get("value") is not None:
        out["value"] = float(out["value"])
    return out



async def _resolve_stage(conn: asyncpg.Connection, pipeline_id: UUID | None,
                         stage_id: UUID | None) -> UUID:
    """The stage to store: `stage_id` if it is in the pipeline, else the first one.
    KEY SHARE locks keep the pipeline and stage from being deleted under us."""
    if pipeline_id is None or not await conn.fetchval(
            "SELECT 1 FROM pipelines WHERE id = $1 FOR KEY SHARE", pipeline_id):
        raise Invalid("pipeline not found", field="pipeline_id")
    if stage_id is None:
        first = await conn.fetchval(
            "SELECT id FROM pipeline_stages WHERE pipeline_id = $1"
            " ORDER BY order_index LIMIT 1 FOR KEY SHARE", pipeline_id)
        if first is None:
            raise Invalid("the pipeline has no stages", field="pipeline_id")
        return first  # type: ignore[no-any-return]
    owner = await conn.fetchval(
        "SELECT pipeline_id FROM pipeline_stages WHERE id = $1 FOR KEY SHARE", stage_id)
    if owner != pipeline_id:
        raise Invalid("stage not found in this pipeline", field="stage_id")
    return stage_id


async def _check_refs(conn: asyncpg.Connection, fields: dict[str, Any]) -> None:
    for field, table in (("contact_id", "contacts"), ("company_id", "companies")):
        ref = fields.get(field)
        if ref is not None and not await conn.fetchval(
                f"SELECT 1 FROM {table} WHERE id = $1 FOR KEY SHARE", ref):
            raise Invalid(f"{field.removesuffix('_id')} not found", field=field)


async def _write(conn: asyncpg.Connection, sql: str, *args: Any) -> asyncpg.Record:
    try:
        return await conn.fetchrow(sql, *args)
    except asyncpg.ForeignKeyViolationError:  # a reference deleted since we checked it
        raise Invalid("a referenced record no longer exists") from None


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
    cond = Conditions()
    cond.equal(pipeline_id=pipeline_id, stage_id=stage_id, contact_id=contact_id,
               company_id=company_id)
    if q:
        cond.add(f"name ILIKE {cond.param('%' + escape_like(q) + '%')}")
    paging, args = cond.paging(page)
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        total = await conn.fetchval(f"SELECT count(*) FROM deals{cond.where()}", *cond.args)
        rows = await conn.fetch(f"SELECT {COLUMNS} FROM deals{cond.where()}"
                                f" ORDER BY created_at DESC, id{paging}", *args)
    return {"page": page.page, "limit": page.limit, "total": total,
            "data": [deal_out(r) for r in rows]}


@router.post("", status_code=201, response_model=DealOut)
async def create_deal(body: DealIn, request: Request,
                      principal: Principal = Depends(require("crm:write"))) -> Any:
    fields = body.model_dump(exclude_none=True)
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        fields["stage_id"] = await _resolve_stage(conn, body.pipeline_id, body.stage_id)
        await _check_refs(conn, fields)
        names = ["organization_id", *fields]
        row = await _write(conn, insert_sql("deals", names, COLUMNS),
                           UUID(principal.org_id), *fields.values())
        await record(conn, principal.actor, action="deal.create", resource_type="deal",
                     resource_id=row["id"], changes=fields, event_type="deal.created",
                     payload=deal_out(row))
    return deal_out(row)


@router.get("/{deal_id}", response_model=DealOut)
async def get_deal(deal_id: UUID, request: Request,
                   principal: Principal = Depends(require("crm:read"))) -> Any:
    return deal_out(await get_one(request, principal, "deals", COLUMNS, "deal", deal_id))


def _patch_fields(body: DealPatch) -> dict[str, Any]:
    fields = {k: getattr(body, k) for k in body.model_fields_set}
    for name in NOT_NULL:
        if name in fields and fields[name] is None:
            raise Invalid(f"{name} cannot be null", field=name)
    return fields


async def _apply(conn: asyncpg.Connection, before: asyncpg.Record,
                 fields: dict[str, Any]) -> asyncpg.Record:
    moved = fields.get("pipeline_id", before["pipeline_id"]) != before["pipeline_id"]
    if "stage_id" in fields or moved:  # a new pipeline without a stage: its first stage
        pipeline_id = fields.get("pipeline_id", before["pipeline_id"])
        fields["stage_id"] = await _resolve_stage(conn, pipeline_id, fields.get("stage_id"))
    await _check_refs(conn, fields)
    sets = ", ".join(f"{name} = ${i}" for i, name in enumerate(fields, 2))
    return await _write(
        conn, f"UPDATE deals SET {sets}, updated_at = now() WHERE id = $1 RETURNING {COLUMNS}",
        before["id"], *fields.values())


@router.patch("/{deal_id}", response_model=DealOut)
async def update_deal(deal_id: UUID, body: DealPatch, request: Request,
                      principal: Principal = Depends(require("crm:write"))) -> Any:
    fields = _patch_fields(body)
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        before = await conn.fetchrow(
            f"SELECT {COLUMNS} FROM deals WHERE id = $1 FOR UPDATE", deal_id)
        if before is None:
            raise NotFound("deal not found")
        if not fields:
            return deal_out(before)
        row = await _apply(conn, before, fields)
        old, new = deal_out(before), deal_out(row)
        changes = {k: [old[k], new[k]] for k in fields if old[k] != new[k]}
        if not changes:
            return new
        await record(conn, principal.actor, action="deal.update", resource_type="deal",
                     resource_id=deal_id, changes=changes, event_type="deal.updated",
                     payload={"id": deal_id, "changes": changes})
        if "stage_id" in changes:
            await append_event(conn, principal.org_id, "deal.stage.changed", "deal", deal_id,
                               {"deal_id": deal_id, "from_stage_id": before["stage_id"],
                                "to_stage_id": row["stage_id"],
                                "pipeline_id": row["pipeline_id"]},
                               user_id=principal.user_id)
    return new


@router.delete("/{deal_id}", status_code=204, response_class=Response)
async def delete_deal(deal_id: UUID, request: Request,
                      principal: Principal = Depends(require("crm:write"))) -> Response:
    return await delete_one(request, principal, "deals", "deal", deal_id)


@router.get("/{deal_id}/notes", response_model=list[NoteOut])
async def notes_of_deal(deal_id: UUID, request: Request,
                        principal: Principal = Depends(require("crm:read"))) -> Any:
    return await list_notes(request, principal, "deal", deal_id)


@router.post("/{deal_id}/notes", status_code=201, response_model=NoteOut)
async def note_on_deal(deal_id: UUID, request: Request, body: NoteIn = Body(...),
                       principal: Principal = Depends(require("crm:write"))) -> Any:
    return await add_note(request, principal, "deal", deal_id, body.body)

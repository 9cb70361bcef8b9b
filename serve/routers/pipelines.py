"""Pipelines and their ordered stages, and the kanban view of a pipeline's
deals. One default pipeline per org; stage order is kept as 0..n-1. Every
mutation writes its audit row and its event in the same transaction.

Stage mutations take a NO KEY UPDATE lock on the pipeline row, which orders
them among themselves without blocking deal writes (those take KEY SHARE).
A pipeline or stage that still has deals is not deleted (409): the schema
would cascade or orphan the deals without a trace."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg
from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from core.errors import Conflict, Invalid, NotFound
from serve.auth import Principal, require, runtime_of
from serve.models import Strict
from serve.pagination import Page, PageParams, page_params
from serve.routers.deals import COLUMNS as DEAL_COLUMNS
from serve.routers.deals import DealOut, deal_out
from storage.audit import Actor, record

router = APIRouter(prefix="/v1/pipelines", tags=["pipelines"])
COLOR = r"^#[0-9a-fA-F]{6}$"
KANBAN_DEALS = 50
MAX_STAGES = 100


class StagePatch(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=255)
    color: str | None = Field(default=None, pattern=COLOR)


class StageIn(StagePatch):
    name: str = Field(min_length=1, max_length=255)


class PipelinePatch(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=255)
    description: str | None = Field(default=None, max_length=100_000)
    is_default: bool | None = None


class PipelineIn(PipelinePatch):
    name: str = Field(min_length=1, max_length=255)
    is_default: bool = False
    stages: list[StageIn] = Field(default_factory=list, max_length=MAX_STAGES)


class ReorderIn(Strict):
    stage_ids: list[UUID] = Field(min_length=1, max_length=MAX_STAGES)


class StageOut(BaseModel):
    id: UUID
    pipeline_id: UUID
    name: str
    order_index: int
    color: str | None
    created_at: datetime | None


class PipelineOut(BaseModel):
    id: UUID
    name: str
    description: str | None
    is_default: bool
    created_at: datetime | None
    updated_at: datetime | None
    stages: list[StageOut]


class KanbanStage(BaseModel):
    id: UUID
    name: str
    order_index: int
    color: str | None
    count: int
    value_sum: float
    deals: list[DealOut]


class KanbanOut(BaseModel):
    pipeline_id: UUID
    stages: list[KanbanStage]
    total_count: int
    total_value: float


COLUMNS = ("id, name, description, coalesce(is_default, false) AS is_default,"
           " created_at, updated_at")
STAGE_COLUMNS = "id, pipeline_id, name, order_index, color, created_at"


async def _stages(conn: asyncpg.Connection, pipeline_ids: list[UUID]) -> dict[UUID, list[Any]]:
    rows = await conn.fetch(
        f"SELECT {STAGE_COLUMNS} FROM pipeline_stages WHERE pipeline_id = ANY($1::uuid[])"
        " ORDER BY order_index", pipeline_ids)
    found: dict[UUID, list[Any]] = {pid: [] for pid in pipeline_ids}
    for row in rows:
        found[row["pipeline_id"]].append(dict(row))
    return found


async def _pipeline(conn: asyncpg.Connection, pipeline_id: UUID, lock: str = "") -> Any:
    row = await conn.fetchrow(f"SELECT {COLUMNS} FROM pipelines WHERE id = $1 {lock}",
                              pipeline_id)
    if row is None:
        raise NotFound("pipeline not found")
    return row


async def _full(conn: asyncpg.Connection, row: asyncpg.Record) -> dict[str, Any]:
    return {**dict(row), "stages": (await _stages(conn, [row["id"]]))[row["id"]]}


async def _clear_default(conn: asyncpg.Connection, actor: Actor, keep: UUID) -> None:
    """`keep` is now the default: no other pipeline of the org stays one."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                       f"pipelines.default:{actor.org_id}")
    cleared = await conn.fetch(
        "UPDATE pipelines SET is_default = false, updated_at = now()"
        " WHERE is_default AND id <> $1 RETURNING id", keep)
    for row in cleared:
        changes = {"is_default": [True, False]}
        await record(conn, actor, action="pipeline.update", resource_type="pipeline",
                     resource_id=row["id"], changes=changes, event_type="pipeline.updated",
                     payload={"id": row["id"], "changes": changes})


async def _renumber(conn: asyncpg.Connection, pipeline_id: UUID, ordered: list[UUID]) -> None:
    """order_index := 0..n-1 in `ordered`; through negatives, since
    UNIQUE(pipeline_id, order_index) is checked row by row."""
    await conn.execute("UPDATE pipeline_stages SET order_index = -1 - order_index"
                       " WHERE pipeline_id = $1", pipeline_id)
    await conn.execute(
        "UPDATE pipeline_stages s SET order_index = o.i - 1"
        " FROM unnest($2::uuid[]) WITH ORDINALITY AS o(id, i)"
        " WHERE s.id = o.id AND s.pipeline_id = $1", pipeline_id, ordered)


@router.get("", response_model=Page[PipelineOut])
async def list_pipelines(request: Request, page: PageParams = Depends(page_params),
                         principal: Principal = Depends(require("crm:read"))) -> Any:
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        total = await conn.fetchval("SELECT count(*) FROM pipelines")
        rows = await conn.fetch(f"SELECT {COLUMNS} FROM pipelines ORDER BY created_at, id"
                                " LIMIT $1 OFFSET $2", page.limit, page.offset)
        stages = await _stages(conn, [r["id"] for r in rows])
    return {"page": page.page, "limit": page.limit, "total": total,
            "data": [{**dict(r), "stages": stages[r["id"]]} for r in rows]}


@router.post("", status_code=201, response_model=PipelineOut)
async def create_pipeline(body: PipelineIn, request: Request,
                          principal: Principal = Depends(require("crm:write"))) -> Any:
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        row = await conn.fetchrow(
            f"INSERT INTO pipelines (organization_id, name, description, is_default)"
            f" VALUES ($1, $2, $3, $4) RETURNING {COLUMNS}",
            UUID(principal.org_id), body.name, body.description, body.is_default)
        await conn.execute(
            "INSERT INTO pipeline_stages (organization_id, pipeline_id, name, color, order_index)"
            " SELECT $1, $2, s.name, s.color, s.i - 1"
            " FROM unnest($3::text[], $4::text[]) WITH ORDINALITY AS s(name, color, i)",
            UUID(principal.org_id), row["id"], [s.name for s in body.stages],
            [s.color for s in body.stages])
        if body.is_default:
            await _clear_default(conn, principal.actor, row["id"])
        out = await _full(conn, row)
        await record(conn, principal.actor, action="pipeline.create", resource_type="pipeline",
                     resource_id=row["id"], changes=body.model_dump(),
                     event_type="pipeline.created", payload=out)
    return out


@router.get("/{pipeline_id}", response_model=PipelineOut)
async def get_pipeline(pipeline_id: UUID, request: Request,
                       principal: Principal = Depends(require("crm:read"))) -> Any:
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        return await _full(conn, await _pipeline(conn, pipeline_id))


@router.patch("/{pipeline_id}", response_model=PipelineOut)
async def update_pipeline(pipeline_id: UUID, body: PipelinePatch, request: Request,
                          principal: Principal = Depends(require("crm:write"))) -> Any:
    fields = {k: getattr(body, k) for k in body.model_fields_set}
    for name in ("name", "is_default"):
        if name in fields and fields[name] is None:
            raise Invalid(f"{name} cannot be null", field=name)
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        before = await _pipeline(conn, pipeline_id, "FOR NO KEY UPDATE")
        changes = {k: [before[k], v] for k, v in fields.items() if before[k] != v}
        if not changes:
            return await _full(conn, before)
        sets = ", ".join(f"{name} = ${i}" for i, name in enumerate(changes, 2))
        row = await conn.fetchrow(
            f"UPDATE pipelines SET {sets}, updated_at = now() WHERE id = $1"
            f" RETURNING {COLUMNS}", pipeline_id, *(new for _, new in changes.values()))
        if "is_default" in changes and changes["is_default"][1]:
            await _clear_default(conn, principal.actor, pipeline_id)
        await record(conn, principal.actor, action="pipeline.update", resource_type="pipeline",
                     resource_id=pipeline_id, changes=changes, event_type="pipeline.updated",
                     payload={"id": pipeline_id, "changes": changes})
        return await _full(conn, row)


@router.delete("/{pipeline_id}", status_code=204, response_class=Response)
async def delete_pipeline(pipeline_id: UUID, request: Request,
                          principal: Principal = Depends(require("crm:write"))) -> Response:
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        await _pipeline(conn, pipeline_id, "FOR UPDATE")
        deals = await conn.fetchval("SELECT count(*) FROM deals WHERE pipeline_id = $1",
                                    pipeline_id)
        if deals:
            raise Conflict("the pipeline has deals; move or delete them first",
                           details={"deals": deals})
        await conn.execute("DELETE FROM pipelines WHERE id = $1", pipeline_id)
        await record(conn, principal.actor, action="pipeline.delete", resource_type="pipeline",
                     resource_id=pipeline_id, changes=None, event_type="pipeline.deleted",
                     payload={"id": pipeline_id})
    return Response(status_code=204)


@router.get("/{pipeline_id}/stages", response_model=list[StageOut])
async def list_stages(pipeline_id: UUID, request: Request,
                      principal: Principal = Depends(require("crm:read"))) -> Any:
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        await _pipeline(conn, pipeline_id)
        return (await _stages(conn, [pipeline_id]))[pipeline_id]


@router.post("/{pipeline_id}/stages", status_code=201, response_model=StageOut)
async def add_stage(pipeline_id: UUID, body: StageIn, request: Request,
                    principal: Principal = Depends(require("crm:write"))) -> Any:
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        await _pipeline(conn, pipeline_id, "FOR NO KEY UPDATE")
        row = await conn.fetchrow(
            f"INSERT INTO pipeline_stages (organization_id, pipeline_id, name, color,"
            f" order_index) SELECT $1, $2, $3, $4, coalesce(max(order_index), -1) + 1"
            f" FROM pipeline_stages WHERE pipeline_id = $2 RETURNING {STAGE_COLUMNS}",
            UUID(principal.org_id), pipeline_id, body.name, body.color)
        await record(conn, principal.actor, action="pipeline.stage.create",
                     resource_type="pipeline_stage", resource_id=row["id"],
                     changes=body.model_dump(), event_type="pipeline.stage.created",
                     payload=dict(row))
    return dict(row)


@router.put("/{pipeline_id}/stages/order", response_model=list[StageOut])
async def reorder_stages(pipeline_id: UUID, body: ReorderIn, request: Request,
                         principal: Principal = Depends(require("crm:write"))) -> Any:
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        await _pipeline(conn, pipeline_id, "FOR NO KEY UPDATE")
        current = [s["id"] for s in (await _stages(conn, [pipeline_id]))[pipeline_id]]
        given = set(body.stage_ids)
        if len(body.stage_ids) != len(current) or given != set(current):
            raise Invalid("stage_ids must list each stage of the pipeline exactly once",
                          details={"field": "stage_ids",
                                   "missing": sorted(str(s) for s in set(current) - given),
                                   "unknown": sorted(str(s) for s in given - set(current))})
        await _renumber(conn, pipeline_id, body.stage_ids)
        await record(conn, principal.actor, action="pipeline.stages.reorder",
                     resource_type="pipeline", resource_id=pipeline_id,
                     changes={"stage_ids": [current, body.stage_ids]},
                     event_type="pipeline.stages.reordered",
                     payload={"pipeline_id": pipeline_id, "stage_ids": body.stage_ids})
        return (await _stages(conn, [pipeline_id]))[pipeline_id]


async def _stage(conn: asyncpg.Connection, pipeline_id: UUID, stage_id: UUID) -> Any:
    await _pipeline(conn, pipeline_id, "FOR NO KEY UPDATE")
    row = await conn.fetchrow(f"SELECT {STAGE_COLUMNS} FROM pipeline_stages"
                              " WHERE id = $1 AND pipeline_id = $2 FOR UPDATE",
                              stage_id, pipeline_id)
    if row is None:
        raise NotFound("stage not found")
    return row


@router.patch("/{pipeline_id}/stages/{stage_id}", response_model=StageOut)
async def update_stage(pipeline_id: UUID, stage_id: UUID, body: StagePatch, request: Request,
                       principal: Principal = Depends(require("crm:write"))) -> Any:
    fields = {k: getattr(body, k) for k in body.model_fields_set}
    if "name" in fields and fields["name"] is None:
        raise Invalid("name cannot be null", field="name")
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        before = await _stage(conn, pipeline_id, stage_id)
        changes = {k: [before[k], v] for k, v in fields.items() if before[k] != v}
        if not changes:
            return dict(before)
        sets = ", ".join(f"{name} = ${i}" for i, name in enumerate(changes, 2))
        row = await conn.fetchrow(
            f"UPDATE pipeline_stages SET {sets} WHERE id = $1 RETURNING {STAGE_COLUMNS}",
            stage_id, *(new for _, new in changes.values()))
        await record(conn, principal.actor, action="pipeline.stage.update",
                     resource_type="pipeline_stage", resource_id=stage_id, changes=changes,
                     event_type="pipeline.stage.updated",
                     payload={"id": stage_id, "pipeline_id": pipeline_id, "changes": changes})
    return dict(row)


@router.delete("/{pipeline_id}/stages/{stage_id}", status_code=204, response_class=Response)
async def delete_stage(pipeline_id: UUID, stage_id: UUID, request: Request,
                       principal: Principal = Depends(require("crm:write"))) -> Response:
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        await _stage(conn, pipeline_id, stage_id)
        deals = await conn.fetchval("SELECT count(*) FROM deals WHERE stage_id = $1", stage_id)
        if deals:
            raise Conflict("the stage has deals; move them first", details={"deals": deals})
        await conn.execute("DELETE FROM pipeline_stages WHERE id = $1", stage_id)
        rest = [s["id"] for s in (await _stages(conn, [pipeline_id]))[pipeline_id]]
        await _renumber(conn, pipeline_id, rest)
        await record(conn, principal.actor, action="pipeline.stage.delete",
                     resource_type="pipeline_stage", resource_id=stage_id, changes=None,
                     event_type="pipeline.stage.deleted",
                     payload={"id": stage_id, "pipeline_id": pipeline_id})
    return Response(status_code=204)


@router.get("/{pipeline_id}/kanban", response_model=KanbanOut)
async def kanban(pipeline_id: UUID, request: Request,
                 principal: Principal = Depends(require("crm:read"))) -> Any:
    """Each stage in order with its deal count, value sum and first deals
    (newest first); totals are over the stages."""
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        await _pipeline(conn, pipeline_id)
        stages = await conn.fetch(
            "SELECT s.id, s.name, s.order_index, s.color, count(d.id) AS count,"
            " coalesce(sum(d.value), 0) AS value_sum FROM pipeline_stages s"
            " LEFT JOIN deals d ON d.stage_id = s.id AND d.pipeline_id = s.pipeline_id"
            " WHERE s.pipeline_id = $1 GROUP BY s.id ORDER BY s.order_index", pipeline_id)
        deals = await conn.fetch(
            f"SELECT {DEAL_COLUMNS} FROM (SELECT *, row_number() OVER (PARTITION BY stage_id"
            f" ORDER BY created_at DESC, id) AS rn FROM deals WHERE pipeline_id = $1) d"
            f" WHERE rn <= $2 ORDER BY rn", pipeline_id, KANBAN_DEALS)
    by_stage: dict[UUID, list[dict[str, Any]]] = {s["id"]: [] for s in stages}
    for deal in deals:
        if deal["stage_id"] in by_stage:
            by_stage[deal["stage_id"]].append(deal_out(deal))
    total_value = sum((s["value_sum"] for s in stages), Decimal(0))
    return {"pipeline_id": pipeline_id, "total_count": sum(s["count"] for s in stages),
            "total_value": float(total_value),
            "stages": [{**dict(s), "value_sum": float(s["value_sum"]),
                        "deals": by_stage[s["id"]]} for s in stages]}

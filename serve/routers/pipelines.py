"""Pipelines and their ordered stages, and the kanban view of a pipeline's
deals, over `storage.pipelines` (one default pipeline per org, stage order,
the locks, and the refusal to delete a pipeline or stage with deals: 409)."""
from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from serve.auth import Principal, require, runtime_of
from serve.models import Strict
from serve.pagination import Page, PageParams, page_params
from serve.routers.deals import DealOut
from storage import pipelines

router = APIRouter(prefix="/v1/pipelines", tags=["pipelines"])
COLOR = r"^#[0-9a-fA-F]{6}$"
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


def _tx(request: Request,
        principal: Principal) -> AbstractAsyncContextManager[asyncpg.Connection]:
    return runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id)


@router.get("", response_model=Page[PipelineOut])
async def list_pipelines(request: Request, page: PageParams = Depends(page_params),
                         principal: Principal = Depends(require("crm:read"))) -> Any:
    async with _tx(request, principal) as conn:
        found = await pipelines.page(conn, page)
    return found.as_dict()


@router.post("", status_code=201, response_model=PipelineOut)
async def create_pipeline(body: PipelineIn, request: Request,
                          principal: Principal = Depends(require("crm:write"))) -> Any:
    async with _tx(request, principal) as conn:
        return await pipelines.create(conn, principal.actor, **body.model_dump())


@router.get("/{pipeline_id}", response_model=PipelineOut)
async def get_pipeline(pipeline_id: UUID, request: Request,
                       principal: Principal = Depends(require("crm:read"))) -> Any:
    async with _tx(request, principal) as conn:
        return await pipelines.get(conn, pipeline_id)


@router.patch("/{pipeline_id}", response_model=PipelineOut)
async def update_pipeline(pipeline_id: UUID, body: PipelinePatch, request: Request,
                          principal: Principal = Depends(require("crm:write"))) -> Any:
    fields = {k: getattr(body, k) for k in body.model_fields_set}
    async with _tx(request, principal) as conn:
        return await pipelines.update(conn, principal.actor, pipeline_id, fields)


@router.delete("/{pipeline_id}", status_code=204, response_class=Response)
async def delete_pipeline(pipeline_id: UUID, request: Request,
                          principal: Principal = Depends(require("crm:write"))) -> Response:
    async with _tx(request, principal) as conn:
        await pipelines.delete(conn, principal.actor, pipeline_id)
    return Response(status_code=204)


@router.get("/{pipeline_id}/stages", response_model=list[StageOut])
async def list_stages(pipeline_id: UUID, request: Request,
                      principal: Principal = Depends(require("crm:read"))) -> Any:
    async with _tx(request, principal) as conn:
        return await pipelines.stages(conn, pipeline_id)


@router.post("/{pipeline_id}/stages", status_code=201, response_model=StageOut)
async def add_stage(pipeline_id: UUID, body: StageIn, request: Request,
                    principal: Principal = Depends(require("crm:write"))) -> Any:
    async with _tx(request, principal) as conn:
        return await pipelines.add_stage(conn, principal.actor, pipeline_id, body.name,
                                         body.color)


@router.put("/{pipeline_id}/stages/order", response_model=list[StageOut])
async def reorder_stages(pipeline_id: UUID, body: ReorderIn, request: Request,
                         principal: Principal = Depends(require("crm:write"))) -> Any:
    async with _tx(request, principal) as conn:
        return await pipelines.reorder_stages(conn, principal.actor, pipeline_id,
                                              body.stage_ids)


@router.patch("/{pipeline_id}/stages/{stage_id}", response_model=StageOut)
async def update_stage(pipeline_id: UUID, stage_id: UUID, body: StagePatch, request: Request,
                       principal: Principal = Depends(require("crm:write"))) -> Any:
    fields = {k: getattr(body, k) for k in body.model_fields_set}
    async with _tx(request, principal) as conn:
        return await pipelines.update_stage(conn, principal.actor, pipeline_id, stage_id,
                                            fields)


@router.delete("/{pipeline_id}/stages/{stage_id}", status_code=204, response_class=Response)
async def delete_stage(pipeline_id: UUID, stage_id: UUID, request: Request,
                       principal: Principal = Depends(require("crm:write"))) -> Response:
    async with _tx(request, principal) as conn:
        await pipelines.delete_stage(conn, principal.actor, pipeline_id, stage_id)
    return Response(status_code=204)


@router.get("/{pipeline_id}/kanban", response_model=KanbanOut)
async def kanban(pipeline_id: UUID, request: Request,
                 principal: Principal = Depends(require("crm:read"))) -> Any:
    """Each stage in order with its deal count, value sum and first deals
    (newest first); totals are over the stages."""
    async with _tx(request, principal) as conn:
        return await pipelines.kanban(conn, pipeline_id)

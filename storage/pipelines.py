"""Pipelines and their ordered stages, and the kanban view of a pipeline's
deals. One default pipeline per org; stage order is kept as 0..n-1. Every
mutation writes its audit row and its event in the caller's transaction.

Stage mutations take a NO KEY UPDATE lock on the pipeline row, which orders
them among themselves without blocking deal writes (those take KEY SHARE).
A pipeline or stage that still has deals is not deleted (`Conflict`): the
schema would cascade or orphan the deals without a trace."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, TypedDict, cast
from uuid import UUID

import asyncpg

from core.errors import Conflict, Invalid, NotFound
from storage import deals as deals_
from storage import rows
from storage.audit import Actor, record
from storage.rows import Listing, Window

COLUMNS = ("id, name, description, coalesce(is_default, false) AS is_default,"
           " created_at, updated_at")
STAGE_COLUMNS = "id, pipeline_id, name, order_index, color, created_at"
WRITABLE = ("name", "description", "is_default")
STAGE_WRITABLE = ("name", "color")
KANBAN_DEALS = 50


class NewStage(TypedDict):
    name: str
    color: str | None


class Stage(TypedDict):
    id: UUID
    pipeline_id: UUID
    name: str
    order_index: int
    color: str | None
    created_at: datetime | None


class Pipeline(TypedDict):
    id: UUID
    name: str
    description: str | None
    is_default: bool
    created_at: datetime | None
    updated_at: datetime | None
    stages: list[Stage]


class KanbanStage(TypedDict):
    id: UUID
    name: str
    order_index: int
    color: str | None
    count: int
    value_sum: float
    deals: list[deals_.Deal]


class Kanban(TypedDict):
    pipeline_id: UUID
    stages: list[KanbanStage]
    total_count: int
    total_value: float


async def _stages(conn: asyncpg.Connection, pipeline_ids: list[UUID]) -> dict[UUID, list[Stage]]:
    found = await conn.fetch(
        f"SELECT {STAGE_COLUMNS} FROM pipeline_stages WHERE pipeline_id = ANY($1::uuid[])"
        " ORDER BY order_index", pipeline_ids)
    by_pipeline: dict[UUID, list[Stage]] = {pid: [] for pid in pipeline_ids}
    for row in found:
        by_pipeline[row["pipeline_id"]].append(cast(Stage, dict(row)))
    return by_pipeline


async def _pipeline(conn: asyncpg.Connection, pipeline_id: UUID, lock: str = "") -> Any:
    row = await conn.fetchrow(f"SELECT {COLUMNS} FROM pipelines WHERE id = $1 {lock}",
                              pipeline_id)
    if row is None:
        raise NotFound("pipeline not found")
    return row


async def _full(conn: asyncpg.Connection, row: asyncpg.Record) -> Pipeline:
    return cast(Pipeline, {**dict(row), "stages": (await _stages(conn, [row["id"]]))[row["id"]]})


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


async def page(conn: asyncpg.Connection, window: Window) -> Listing[Pipeline]:
    """One page of the pipelines with their stages, oldest first."""
    total = await conn.fetchval("SELECT count(*) FROM pipelines")
    found = await conn.fetch(f"SELECT {COLUMNS} FROM pipelines ORDER BY created_at, id"
                             " LIMIT $1 OFFSET $2", window.limit, window.offset)
    stages = await _stages(conn, [r["id"] for r in found])
    return rows.listing(window, total, [cast(Pipeline, {**dict(r), "stages": stages[r["id"]]})
                                        for r in found])


async def create(conn: asyncpg.Connection, actor: Actor, name: str, *,
                 description: str | None = None, is_default: bool = False,
                 stages: Sequence[Mapping[str, Any]] = ()) -> Pipeline:
    """A pipeline with `stages` ({name, color}) in that order; the org's one
    default when `is_default`."""
    new = [NewStage(name=s["name"], color=s.get("color")) for s in stages]
    row = rows.one(await conn.fetchrow(
        f"INSERT INTO pipelines (organization_id, name, description, is_default)"
        f" VALUES ($1, $2, $3, $4) RETURNING {COLUMNS}",
        UUID(actor.org_id), name, description, is_default), "INSERT INTO pipelines")
    await conn.execute(
        "INSERT INTO pipeline_stages (organization_id, pipeline_id, name, color, order_index)"
        " SELECT $1, $2, s.name, s.color, s.i - 1"
        " FROM unnest($3::text[], $4::text[]) WITH ORDINALITY AS s(name, color, i)",
        UUID(actor.org_id), row["id"], [s["name"] for s in new], [s["color"] for s in new])
    if is_default:
        await _clear_default(conn, actor, row["id"])
    out = await _full(conn, row)
    await record(conn, actor, action="pipeline.create", resource_type="pipeline",
                 resource_id=row["id"], changes={"name": name, "description": description,
                                                 "is_default": is_default, "stages": new},
                 event_type="pipeline.created", payload=dict(out))
    return out


async def get(conn: asyncpg.Connection, pipeline_id: UUID) -> Pipeline:
    return await _full(conn, await _pipeline(conn, pipeline_id))


async def update(conn: asyncpg.Connection, actor: Actor, pipeline_id: UUID,
                 fields: Mapping[str, Any]) -> Pipeline:
    """Set `fields` (name, description, is_default); made the default, the
    others stop being one. Nothing is written when nothing changes."""
    values = rows.writable(fields, WRITABLE, ("name", "is_default"))
    before = await _pipeline(conn, pipeline_id, "FOR NO KEY UPDATE")
    changes = {k: [before[k], v] for k, v in values.items() if before[k] != v}
    if not changes:
        return await _full(conn, before)
    row = rows.one(await conn.fetchrow(  # `before` is locked FOR NO KEY UPDATE
        f"UPDATE pipelines SET {rows.set_sql(changes)}, updated_at = now() WHERE id = $1"
        f" RETURNING {COLUMNS}", pipeline_id, *(new for _, new in changes.values())),
        "UPDATE pipelines")
    if "is_default" in changes and changes["is_default"][1]:
        await _clear_default(conn, actor, pipeline_id)
    await record(conn, actor, action="pipeline.update", resource_type="pipeline",
                 resource_id=pipeline_id, changes=changes, event_type="pipeline.updated",
                 payload={"id": pipeline_id, "changes": changes})
    return await _full(conn, row)


async def delete(conn: asyncpg.Connection, actor: Actor, pipeline_id: UUID) -> None:
    """Refused (`Conflict`, with the count) while the pipeline has deals."""
    await _pipeline(conn, pipeline_id, "FOR UPDATE")
    deals = await conn.fetchval("SELECT count(*) FROM deals WHERE pipeline_id = $1",
                                pipeline_id)
    if deals:
        raise Conflict("the pipeline has deals; move or delete them first",
                       details={"deals": deals})
    await conn.execute("DELETE FROM pipelines WHERE id = $1", pipeline_id)
    await record(conn, actor, action="pipeline.delete", resource_type="pipeline",
                 resource_id=pipeline_id, changes=None, event_type="pipeline.deleted",
                 payload={"id": pipeline_id})


async def stages(conn: asyncpg.Connection, pipeline_id: UUID) -> list[Stage]:
    """The pipeline's stages in order."""
    await _pipeline(conn, pipeline_id)
    return (await _stages(conn, [pipeline_id]))[pipeline_id]


async def add_stage(conn: asyncpg.Connection, actor: Actor, pipeline_id: UUID, name: str,
                    color: str | None = None) -> Stage:
    """A stage after the pipeline's last one."""
    await _pipeline(conn, pipeline_id, "FOR NO KEY UPDATE")
    row = rows.one(await conn.fetchrow(  # an aggregate without GROUP BY: one row
        f"INSERT INTO pipeline_stages (organization_id, pipeline_id, name, color,"
        f" order_index) SELECT $1, $2, $3, $4, coalesce(max(order_index), -1) + 1"
        f" FROM pipeline_stages WHERE pipeline_id = $2 RETURNING {STAGE_COLUMNS}",
        UUID(actor.org_id), pipeline_id, name, color), "INSERT INTO pipeline_stages")
    await record(conn, actor, action="pipeline.stage.create", resource_type="pipeline_stage",
                 resource_id=row["id"], changes={"name": name, "color": color},
                 event_type="pipeline.stage.created", payload=dict(row))
    return cast(Stage, dict(row))


async def reorder_stages(conn: asyncpg.Connection, actor: Actor, pipeline_id: UUID,
                         stage_ids: Sequence[UUID]) -> list[Stage]:
    """Put the stages in the order of `stage_ids`, which lists each stage of
    the pipeline exactly once (else `Invalid`, naming the missing and the
    unknown ids)."""
    ordered = list(stage_ids)
    await _pipeline(conn, pipeline_id, "FOR NO KEY UPDATE")
    current = [s["id"] for s in (await _stages(conn, [pipeline_id]))[pipeline_id]]
    given = set(ordered)
    if len(ordered) != len(current) or given != set(current):
        raise Invalid("stage_ids must list each stage of the pipeline exactly once",
                      details={"field": "stage_ids",
                               "missing": sorted(str(s) for s in set(current) - given),
                               "unknown": sorted(str(s) for s in given - set(current))})
    await _renumber(conn, pipeline_id, ordered)
    await record(conn, actor, action="pipeline.stages.reorder", resource_type="pipeline",
                 resource_id=pipeline_id, changes={"stage_ids": [current, ordered]},
                 event_type="pipeline.stages.reordered",
                 payload={"pipeline_id": pipeline_id, "stage_ids": ordered})
    return (await _stages(conn, [pipeline_id]))[pipeline_id]


async def _stage(conn: asyncpg.Connection, pipeline_id: UUID,
                 stage_id: UUID) -> asyncpg.Record:
    await _pipeline(conn, pipeline_id, "FOR NO KEY UPDATE")
    row = await conn.fetchrow(f"SELECT {STAGE_COLUMNS} FROM pipeline_stages"
                              " WHERE id = $1 AND pipeline_id = $2 FOR UPDATE",
                              stage_id, pipeline_id)
    if row is None:
        raise NotFound("stage not found")
    return row


async def update_stage(conn: asyncpg.Connection, actor: Actor, pipeline_id: UUID,
                       stage_id: UUID, fields: Mapping[str, Any]) -> Stage:
    """Set `fields` (name, color); nothing is written when nothing changes."""
    values = rows.writable(fields, STAGE_WRITABLE, ("name",))
    before = await _stage(conn, pipeline_id, stage_id)
    changes = {k: [before[k], v] for k, v in values.items() if before[k] != v}
    if not changes:
        return cast(Stage, dict(before))
    row = rows.one(await conn.fetchrow(  # `before` is locked FOR UPDATE
        f"UPDATE pipeline_stages SET {rows.set_sql(changes)} WHERE id = $1"
        f" RETURNING {STAGE_COLUMNS}", stage_id, *(new for _, new in changes.values())),
        "UPDATE pipeline_stages")
    await record(conn, actor, action="pipeline.stage.update", resource_type="pipeline_stage",
                 resource_id=stage_id, changes=changes, event_type="pipeline.stage.updated",
                 payload={"id": stage_id, "pipeline_id": pipeline_id, "changes": changes})
    return cast(Stage, dict(row))


async def delete_stage(conn: asyncpg.Connection, actor: Actor, pipeline_id: UUID,
                       stage_id: UUID) -> None:
    """Refused (`Conflict`, with the count) while the stage has deals; the
    stages after it move up."""
    await _stage(conn, pipeline_id, stage_id)
    deals = await conn.fetchval("SELECT count(*) FROM deals WHERE stage_id = $1", stage_id)
    if deals:
        raise Conflict("the stage has deals; move them first", details={"deals": deals})
    await conn.execute("DELETE FROM pipeline_stages WHERE id = $1", stage_id)
    rest = [s["id"] for s in (await _stages(conn, [pipeline_id]))[pipeline_id]]
    await _renumber(conn, pipeline_id, rest)
    await record(conn, actor, action="pipeline.stage.delete", resource_type="pipeline_stage",
                 resource_id=stage_id, changes=None, event_type="pipeline.stage.deleted",
                 payload={"id": stage_id, "pipeline_id": pipeline_id})


async def kanban(conn: asyncpg.Connection, pipeline_id: UUID,
                 per_stage: int = KANBAN_DEALS) -> Kanban:
    """Each stage in order with its deal count, value sum and first
    `per_stage` deals (newest first); totals are over the stages."""
    await _pipeline(conn, pipeline_id)
    columns = await conn.fetch(
        "SELECT s.id, s.name, s.order_index, s.color, count(d.id) AS count,"
        " coalesce(sum(d.value), 0) AS value_sum FROM pipeline_stages s"
        " LEFT JOIN deals d ON d.stage_id = s.id AND d.pipeline_id = s.pipeline_id"
        " WHERE s.pipeline_id = $1 GROUP BY s.id ORDER BY s.order_index", pipeline_id)
    first = await conn.fetch(
        f"SELECT {deals_.COLUMNS} FROM (SELECT *, row_number() OVER (PARTITION BY stage_id"
        f" ORDER BY created_at DESC, id) AS rn FROM deals WHERE pipeline_id = $1) d"
        f" WHERE rn <= $2 ORDER BY rn", pipeline_id, per_stage)
    by_stage: dict[UUID, list[deals_.Deal]] = {s["id"]: [] for s in columns}
    for deal in first:
        if deal["stage_id"] in by_stage:
            by_stage[deal["stage_id"]].append(deals_.from_row(deal))
    total_value = sum((s["value_sum"] for s in columns), Decimal(0))
    return Kanban(pipeline_id=pipeline_id, total_count=sum(s["count"] for s in columns),
                  total_value=float(total_value),
                  stages=[cast(KanbanStage, {**dict(s), "value_sum": float(s["value_sum"]),
                                             "deals": by_stage[s["id"]]}) for s in columns])

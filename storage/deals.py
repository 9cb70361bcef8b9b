"""Deals: create, read, list, update, stage moves (`deal.stage.changed`) and
delete, each mutation with its audit row and events in the caller's
transaction.

Every reference a deal stores (pipeline, stage, contact, company) is checked
to be visible in the tenant, and a stage to belong to the deal's pipeline,
before it is written: foreign keys do not see row-level security. KEY SHARE
locks keep what was checked from being deleted before the commit."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, TypedDict, cast
from uuid import UUID

import asyncpg

from core.errors import Invalid, NotFound
from storage import rows
from storage.audit import Actor, append_event, record
from storage.errors import expect
from storage.rows import Conditions, Listing, Window

COLUMNS = ("id, pipeline_id, stage_id, contact_id, company_id, name, value, currency,"
           " expected_close_date, probability, notes,"
           " coalesce(metadata, '{}'::jsonb) AS metadata, created_at, updated_at")
WRITABLE = ("name", "pipeline_id", "stage_id", "contact_id", "company_id", "value", "currency",
            "expected_close_date", "probability", "notes", "metadata")
NOT_NULL = ("name", "pipeline_id", "stage_id", "currency", "probability")

# a reference deleted between its check and the write
for _constraint in ("deals_pipeline_id_fkey", "deals_stage_id_fkey", "deals_contact_id_fkey",
                    "deals_company_id_fkey"):
    expect(_constraint, lambda: Invalid("a referenced record no longer exists"))


class Deal(TypedDict):
    id: UUID
    pipeline_id: UUID | None
    stage_id: UUID | None
    contact_id: UUID | None
    company_id: UUID | None
    name: str
    value: float | None  # numeric(12, 2) in the table
    currency: str | None
    expected_close_date: date | None
    probability: int | None
    notes: str | None
    metadata: dict[str, Any]
    created_at: datetime | None
    updated_at: datetime | None


@dataclass(frozen=True)
class DealFilters:
    q: str | None = None  # a part of the name
    pipeline_id: UUID | None = None
    stage_id: UUID | None = None
    contact_id: UUID | None = None
    company_id: UUID | None = None


def from_row(row: asyncpg.Record) -> Deal:
    """A deal as the API shows it: the value as a number."""
    out = dict(row)
    if out.get("value") is not None:
        out["value"] = float(out["value"])
    return cast(Deal, out)


async def page(conn: asyncpg.Connection, filters: DealFilters,
               window: Window) -> Listing[Deal]:
    """One page of the deals matching `filters`, newest first."""
    cond = Conditions()
    cond.equal(pipeline_id=filters.pipeline_id, stage_id=filters.stage_id,
               contact_id=filters.contact_id, company_id=filters.company_id)
    if filters.q:
        cond.add(f"name ILIKE {cond.param('%' + rows.escape_like(filters.q) + '%')}")
    total, found = await rows.filtered_page(conn, "deals", COLUMNS, cond, window)
    return rows.listing(window, total, [from_row(r) for r in found])


async def get(conn: asyncpg.Connection, deal_id: UUID) -> Deal:
    return from_row(await rows.get_one(conn, "deals", COLUMNS, "deal", deal_id))


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


async def _check_refs(conn: asyncpg.Connection, fields: Mapping[str, Any]) -> None:
    for field, table in (("contact_id", "contacts"), ("company_id", "companies")):
        ref = fields.get(field)
        if ref is not None and not await conn.fetchval(
                f"SELECT 1 FROM {table} WHERE id = $1 FOR KEY SHARE", ref):
            raise Invalid(f"{field.removesuffix('_id')} not found", field=field)


async def create(conn: asyncpg.Connection, actor: Actor, fields: Mapping[str, Any]) -> Deal:
    """A deal from `fields` (columns of WRITABLE; None values are left out):
    in the pipeline's first stage unless `stage_id` names one of its stages."""
    values = {k: v for k, v in rows.writable(fields, WRITABLE).items() if v is not None}
    if "name" not in values:
        raise Invalid("a deal needs a name", field="name")
    values["stage_id"] = await _resolve_stage(conn, values.get("pipeline_id"),
                                              values.get("stage_id"))
    await _check_refs(conn, values)
    row = rows.one(await conn.fetchrow(
        rows.insert_sql("deals", ["organization_id", *values], COLUMNS), UUID(actor.org_id),
        *values.values()), "INSERT INTO deals")
    deal = from_row(row)
    await record(conn, actor, action="deal.create", resource_type="deal", resource_id=row["id"],
                 changes=values, event_type="deal.created", payload=dict(deal))
    return deal


async def _apply(conn: asyncpg.Connection, before: asyncpg.Record,
                 values: dict[str, Any]) -> asyncpg.Record:
    moved = values.get("pipeline_id", before["pipeline_id"]) != before["pipeline_id"]
    if "stage_id" in values or moved:  # a new pipeline without a stage: its first stage
        pipeline_id = values.get("pipeline_id", before["pipeline_id"])
        values["stage_id"] = await _resolve_stage(conn, pipeline_id, values.get("stage_id"))
    await _check_refs(conn, values)
    # `before` is locked FOR UPDATE: the row is there to update
    return rows.one(await conn.fetchrow(
        f"UPDATE deals SET {rows.set_sql(values)}, updated_at = now() WHERE id = $1"
        f" RETURNING {COLUMNS}", before["id"], *values.values()), "UPDATE deals")


async def update(conn: asyncpg.Connection, actor: Actor, deal_id: UUID,
                 fields: Mapping[str, Any]) -> Deal:
    """Set `fields`. A new pipeline without a stage puts the deal in its first
    stage. When anything changed: the audit row and `deal.updated` naming
    it, and `deal.stage.changed` when the stage did."""
    values = rows.writable(fields, WRITABLE, NOT_NULL)
    before = await conn.fetchrow(f"SELECT {COLUMNS} FROM deals WHERE id = $1 FOR UPDATE",
                                 deal_id)
    if before is None:
        raise NotFound("deal not found")
    if not values:
        return from_row(before)
    row = await _apply(conn, before, values)
    new = from_row(row)
    was, now = cast(dict[str, Any], from_row(before)), cast(dict[str, Any], new)
    changes = {k: [was[k], now[k]] for k in values if was[k] != now[k]}
    if not changes:
        return new
    await record(conn, actor, action="deal.update", resource_type="deal", resource_id=deal_id,
                 changes=changes, event_type="deal.updated",
                 payload={"id": deal_id, "changes": changes})
    if "stage_id" in changes:
        await append_event(conn, actor.org_id, "deal.stage.changed", "deal", deal_id,
                           {"deal_id": deal_id, "from_stage_id": before["stage_id"],
                            "to_stage_id": row["stage_id"], "pipeline_id": row["pipeline_id"]},
                           user_id=actor.user_id, agent_id=actor.agent_id)
    return new


async def move_stage(conn: asyncpg.Connection, actor: Actor, deal_id: UUID,
                     stage_id: UUID) -> Deal:
    """Move the deal to another stage of its pipeline: `update` with the stage
    alone (the same checks, audit row and events)."""
    return await update(conn, actor, deal_id, {"stage_id": stage_id})


async def delete(conn: asyncpg.Connection, actor: Actor, deal_id: UUID) -> None:
    """Its notes go with it."""
    await rows.delete_one(conn, actor, "deals", "deal", deal_id)

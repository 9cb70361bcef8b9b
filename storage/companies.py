"""Companies: create, read, search, update, delete, each mutation with its
audit row and event in the caller's transaction."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypedDict, cast
from uuid import UUID

import asyncpg

from core.errors import Invalid, NotFound
from storage import rows
from storage.audit import Actor, record
from storage.rows import Conditions, Listing, Window

COLUMNS = ("id, name, industry, description, size, stage, website, logo_url,"
           " coalesce(metadata, '{}'::jsonb) AS metadata, created_at, updated_at")
WRITABLE = ("name", "industry", "description", "size", "stage", "website", "logo_url",
            "metadata")
NOT_NULL = ("name",)


class Company(TypedDict):
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


@dataclass(frozen=True)
class CompanyFilters:
    q: str | None = None  # a part of the name, industry or website
    industry: str | None = None  # case-insensitive
    stage: str | None = None
    size: str | None = None


def _company(row: asyncpg.Record) -> Company:
    return cast(Company, dict(row))


def _conditions(filters: CompanyFilters) -> Conditions:
    cond = Conditions()
    if filters.q:
        n = cond.param("%" + rows.escape_like(filters.q) + "%")
        cond.add(f"(name ILIKE {n} OR industry ILIKE {n} OR website ILIKE {n})")
    if filters.industry:
        cond.add(f"lower(industry) = lower({cond.param(filters.industry)})")
    cond.equal(stage=filters.stage or None, size=filters.size or None)
    return cond


async def page(conn: asyncpg.Connection, filters: CompanyFilters,
               window: Window) -> Listing[Company]:
    """One page of the companies matching `filters`, newest first."""
    total, found = await rows.filtered_page(conn, "companies", COLUMNS, _conditions(filters),
                                            window)
    return rows.listing(window, total, [_company(r) for r in found])


async def get(conn: asyncpg.Connection, company_id: UUID) -> Company:
    return _company(await rows.get_one(conn, "companies", COLUMNS, "company", company_id))


async def create(conn: asyncpg.Connection, actor: Actor, fields: Mapping[str, Any]) -> Company:
    """A company from `fields` (columns of WRITABLE; None values are left out)."""
    values = {k: v for k, v in rows.writable(fields, WRITABLE).items() if v is not None}
    if "name" not in values:
        raise Invalid("a company needs a name", field="name")
    names = ["organization_id", *values]
    row = rows.one(await conn.fetchrow(rows.insert_sql("companies", names, COLUMNS),
                                       UUID(actor.org_id), *values.values()),
                   "INSERT INTO companies")
    company = _company(row)
    await record(conn, actor, action="company.create", resource_type="company",
                 resource_id=row["id"], changes=values, event_type="company.created",
                 payload=dict(company))
    return company


async def update(conn: asyncpg.Connection, actor: Actor, company_id: UUID,
                 fields: Mapping[str, Any]) -> Company:
    """Set `fields`; the audit row and `company.updated` name what changed,
    and nothing is written when nothing did."""
    values = rows.writable(fields, WRITABLE, NOT_NULL)
    before = await conn.fetchrow(
        f"SELECT {COLUMNS} FROM companies WHERE id = $1 FOR UPDATE", company_id)
    if before is None:
        raise NotFound("company not found")
    if not values:
        return _company(before)
    row = rows.one(await conn.fetchrow(  # `before` is locked FOR UPDATE
        f"UPDATE companies SET {rows.set_sql(values)}, updated_at = now() WHERE id = $1"
        f" RETURNING {COLUMNS}", company_id, *values.values()), "UPDATE companies")
    changes = {k: [before[k], row[k]] for k in values if before[k] != row[k]}
    if changes:
        await record(conn, actor, action="company.update", resource_type="company",
                     resource_id=company_id, changes=changes, event_type="company.updated",
                     payload={"id": company_id, "changes": changes})
    return _company(row)


async def delete(conn: asyncpg.Connection, actor: Actor, company_id: UUID) -> None:
    """Its contacts and deals stay, without the company (ON DELETE SET NULL)."""
    await rows.delete_one(conn, actor, "companies", "company", company_id)

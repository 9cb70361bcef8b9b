"""The organization itself, seen from inside it: read, renamed and
reconfigured (audited with the before/after of each changed field), and
deleted with everything in it once its slug is named."""
from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, TypedDict
from uuid import UUID

import asyncpg

from core.errors import Invalid, NotFound
from storage.audit import Actor, record
from storage.db import Database
from storage.rows import one

COLUMNS = "id, name, slug, settings, billing_email, created_at, updated_at"
FIELDS = ("name", "settings", "billing_email")  # what an update may set
NULLABLE = ("billing_email",)


class Organization(TypedDict):
    id: UUID
    name: str
    slug: str
    settings: dict[str, Any]
    billing_email: str | None
    created_at: datetime | None
    updated_at: datetime | None


def _organization(row: Any) -> Organization:
    return Organization(**{**dict(row), "settings": row["settings"] or {}})  # type: ignore[typeddict-item]


async def get(conn: asyncpg.Connection) -> Organization:
    """The tenant's organization (the one of `tenant_tx`)."""
    row = await conn.fetchrow(f"SELECT {COLUMNS} FROM organizations")
    if row is None:
        raise NotFound("organization not found")
    return _organization(row)


async def update(conn: asyncpg.Connection, actor: Actor,
                 fields: Mapping[str, Any]) -> Organization:
    """Set `fields` (among FIELDS; only `billing_email` may be None)."""
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        raise Invalid(f"cannot change {', '.join(unknown)}", field=unknown[0])
    if any(v is None for k, v in fields.items() if k not in NULLABLE):
        raise Invalid("name and settings cannot be null")
    before = await conn.fetchrow(f"SELECT {COLUMNS} FROM organizations FOR UPDATE")
    if before is None:
        raise NotFound("organization not found")
    if fields:
        # column names come from FIELDS alone, never from the caller
        sets = ", ".join(f"{k} = ${i}" for i, k in enumerate(fields, 1))
        await conn.execute(f"UPDATE organizations SET {sets}, updated_at = now()",
                           *fields.values())
    row = one(await conn.fetchrow(f"SELECT {COLUMNS} FROM organizations"),  # locked above
              "SELECT FROM organizations")
    changes = {k: [before[k], row[k]] for k in fields if before[k] != row[k]}
    await record(conn, actor, action="organization.update", resource_type="organization",
                 resource_id=row["id"], changes=changes, event_type="organization.updated",
                 payload={"changes": changes})
    return _organization(row)


async def delete(db: Database, actor: Actor, confirm_slug: str) -> None:
    """Delete the actor's organization and every row it holds, if
    `confirm_slug` is its slug."""
    async with db.tenant_tx(actor.org_id, actor.user_id) as conn:
        slug = await conn.fetchval("SELECT slug FROM organizations")
    if slug is None:
        raise NotFound("organization not found")
    if confirm_slug != slug:
        raise Invalid("confirm_slug must be the organization's slug", field="confirm_slug")
    # Deleting the tenant row cascades to every tenant table; bidi_app may not
    # delete organizations, so this one statement runs as the owner role.
    async with db.system_tx() as conn:
        await conn.execute("DELETE FROM organizations WHERE id = $1", UUID(actor.org_id))


async def by_slug(conn: asyncpg.Connection, slug: str) -> UUID | None:
    """The id of the organization with `slug` (owner role: before any tenant)."""
    found = await conn.fetchval("SELECT id FROM organizations WHERE slug = $1", slug)
    return None if found is None else UUID(str(found))


async def create(conn: asyncpg.Connection, name: str, slug: str) -> UUID:
    """An organization with no member yet (owner role), e.g. a seeded demo;
    a sign-up makes one with its owner (`identity.create_user_and_org`)."""
    return UUID(str(one(await conn.fetchrow(
        "INSERT INTO organizations (name, slug) VALUES ($1, $2) RETURNING id", name, slug),
        "INSERT INTO organizations")["id"]))

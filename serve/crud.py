"""Steps every CRUD router shares."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

import asyncpg
from fastapi import Request, Response

from core.errors import NotFound
from serve.auth import Principal, runtime_of
from serve.pagination import PageParams
from storage.audit import record


async def delete_one(request: Request, principal: Principal, table: str, resource: str,
                     row_id: UUID) -> Response:
    """Delete one tenant row, with its audit row and `<resource>.deleted` event."""
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        deleted = await conn.fetchval(f"DELETE FROM {table} WHERE id = $1 RETURNING id", row_id)
        if deleted is None:
            raise NotFound(f"{resource} not found")
        await record(conn, principal.actor, action=f"{resource}.delete", resource_type=resource,
                     resource_id=row_id, changes=None, event_type=f"{resource}.deleted",
                     payload={"id": row_id})
    return Response(status_code=204)


async def get_one(request: Request, principal: Principal, table: str, columns: str,
                  resource: str, row_id: UUID) -> asyncpg.Record:
    """One tenant row by id, or `NotFound` (also for another org's id)."""
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        row = await conn.fetchrow(f"SELECT {columns} FROM {table} WHERE id = $1", row_id)
    if row is None:
        raise NotFound(f"{resource} not found")
    return row


async def list_page(request: Request, principal: Principal, table: str, columns: str,
                    page: PageParams) -> dict[str, object]:
    """One page of all of a tenant's rows of `table`, newest first."""
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        total = await conn.fetchval(f"SELECT count(*) FROM {table}")
        rows = await conn.fetch(f"SELECT {columns} FROM {table} ORDER BY created_at DESC, id"
                                " LIMIT $1 OFFSET $2", page.limit, page.offset)
    return {"page": page.page, "limit": page.limit, "total": total,
            "data": [dict(r) for r in rows]}


class Conditions:
    """A list's WHERE clause, built up with its numbered parameters; the page's
    LIMIT and OFFSET come after them."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.args: list[Any] = []

    def param(self, value: Any) -> str:
        """A placeholder for `value`."""
        self.args.append(value)
        return f"${len(self.args)}"

    def add(self, condition: str) -> None:
        self.parts.append(condition)

    def equal(self, **columns: Any) -> None:
        """`column = value` for each value that is not None."""
        for column, value in columns.items():
            if value is not None:
                self.add(f"{column} = {self.param(value)}")

    def where(self) -> str:
        return f" WHERE {' AND '.join(self.parts)}" if self.parts else ""

    def paging(self, page: PageParams) -> tuple[str, list[Any]]:
        """`LIMIT .. OFFSET ..` and every argument of the statement."""
        n = len(self.args)
        return f" LIMIT ${n + 1} OFFSET ${n + 2}", [*self.args, page.limit, page.offset]


def escape_like(text: str) -> str:
    """`text` matched literally inside a LIKE pattern."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def insert_sql(table: str, names: Sequence[str], returning: str) -> str:
    """`INSERT INTO table (names) VALUES ($1..$n) RETURNING returning`."""
    params = ", ".join(f"${i}" for i in range(1, len(names) + 1))
    return f"INSERT INTO {table} ({', '.join(names)}) VALUES ({params}) RETURNING {returning}"


NOTE_COLUMNS = "id, body, author_id, contact_id, deal_id, created_at"


async def list_notes(request: Request, principal: Principal, parent: str,
                     parent_id: UUID) -> list[dict[str, object]]:
    """The notes of a contact or a deal (`parent` is "contact" or "deal")."""
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        if not await conn.fetchval(f"SELECT 1 FROM {parent}s WHERE id = $1", parent_id):
            raise NotFound(f"{parent} not found")
        rows = await conn.fetch(f"SELECT {NOTE_COLUMNS} FROM notes WHERE {parent}_id = $1"
                                " ORDER BY created_at, id", parent_id)
    return [dict(r) for r in rows]


async def add_note(request: Request, principal: Principal, parent: str, parent_id: UUID,
                   body: str) -> dict[str, object]:
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        # FOR KEY SHARE: the parent cannot be deleted under the new note
        if not await conn.fetchval(f"SELECT 1 FROM {parent}s WHERE id = $1 FOR KEY SHARE",
                                   parent_id):
            raise NotFound(f"{parent} not found")
        row = await conn.fetchrow(
            f"INSERT INTO notes (organization_id, {parent}_id, author_id, body)"
            f" VALUES ($1, $2, $3, $4) RETURNING {NOTE_COLUMNS}", UUID(principal.org_id),
            parent_id, principal.user_id and UUID(principal.user_id), body)
        await record(conn, principal.actor, action="note.create", resource_type="note",
                     resource_id=row["id"], changes={f"{parent}_id": parent_id},
                     event_type="note.created", payload=dict(row))
    return dict(row)

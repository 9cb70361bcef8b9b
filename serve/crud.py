"""Steps every CRUD router shares."""
from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

import asyncpg
from fastapi import Request, Response

from core.errors import NotFound
from serve.auth import Principal, runtime_of
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


def insert_sql(table: str, names: Sequence[str], returning: str) -> str:
    """`INSERT INTO table (names) VALUES ($1..$n) RETURNING returning`."""
    params = ", ".join(f"${i}" for i in range(1, len(names) + 1))
    return f"INSERT INTO {table} ({', '.join(names)}) VALUES ({params}) RETURNING {returning}"

"""Steps every CRUD router shares, over `storage.rows` (where the statements
and the `Conditions` builder live)."""
from __future__ import annotations

from uuid import UUID

import asyncpg
from fastapi import Request, Response

from serve.auth import Principal, runtime_of
from serve.pagination import PageParams
from storage import rows
from storage.rows import Conditions as Conditions
from storage.rows import escape_like as escape_like
from storage.rows import insert_sql as insert_sql


async def delete_one(request: Request, principal: Principal, table: str, resource: str,
                     row_id: UUID) -> Response:
    """Delete one tenant row, with its audit row and `<resource>.deleted` event."""
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        await rows.delete_one(conn, principal.actor, table, resource, row_id)
    return Response(status_code=204)


async def get_one(request: Request, principal: Principal, table: str, columns: str,
                  resource: str, row_id: UUID) -> asyncpg.Record:
    """One tenant row by id, or `NotFound` (also for another org's id)."""
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        return await rows.get_one(conn, table, columns, resource, row_id)


async def list_page(request: Request, principal: Principal, table: str, columns: str,
                    page: PageParams) -> dict[str, object]:
    """One page of all of a tenant's rows of `table`, newest first."""
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        found = await rows.list_page(conn, table, columns, page)
    return found.as_dict()

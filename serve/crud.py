"""Steps every CRUD router shares."""
from __future__ import annotations

from uuid import UUID

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

"""Channel cursors: where a polling channel has read up to, one row per
integration and cursor name (`telegram:offset`, say), written only after
what was read before it is committed."""
from __future__ import annotations

import asyncpg


async def get(conn: asyncpg.Connection, integration_id: str, name: str) -> int | None:
    """The stored position, or None when nothing was stored yet."""
    value = await conn.fetchval(
        "SELECT position FROM channel_cursors WHERE integration_id = $1::uuid AND name = $2",
        integration_id, name)
    return None if value is None else int(value)


async def put(conn: asyncpg.Connection, org_id: str, integration_id: str, name: str,
              position: int) -> None:
    """Store `position` (inserted, or moved on the existing row)."""
    await conn.execute(
        "INSERT INTO channel_cursors (organization_id, integration_id, name, position)"
        " VALUES ($1::uuid, $2::uuid, $3, $4)"
        " ON CONFLICT (integration_id, name)"
        " DO UPDATE SET position = EXCLUDED.position, updated_at = now()",
        org_id, integration_id, name, position)

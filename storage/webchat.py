"""What a web chat visitor may read: their own chat's transcript, never an
agent's draft (pending or rejected) nor any message's metadata; and which
origins some web chat allows (a CORS preflight carries no token to name its
integration by)."""
from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg

from storage import messages

# A draft approved goes on as `pending` and then `sent`: shown from then on.
VISIBLE = "chat_id = $1 AND NOT (coalesce(ai_draft, false) AND status IN ('draft', 'rejected'))"
FIELDS = ("id, content, is_incoming, sender_type, status, created_at,"
          " (SELECT coalesce(jsonb_agg(jsonb_build_object('id', a.id, 'kind', a.kind,"
          " 'name', a.file_name, 'mime_type', a.file_type, 'size', a.file_size)"
          " ORDER BY a.created_at, a.id), '[]'::jsonb) FROM message_attachments a"
          " WHERE a.message_id = messages.id) AS attachments")


async def transcript(conn: asyncpg.Connection, chat_id: UUID | str, *, limit: int,
                     before: str | None = None) -> dict[str, Any]:
    """The visitor's chat newest first, `limit` at most, older than `before`
    (a cursor of `storage.messages`); a chat not started yet is empty."""
    rows, next_cursor = await messages.page_of(conn, chat_id, FIELDS, where=VISIBLE,
                                               limit=limit, before=before)
    return {"limit": limit, "next_cursor": next_cursor, "data": [dict(r) for r in rows]}


ANY_ORIGIN = ("SELECT EXISTS (SELECT 1 FROM integrations WHERE type = 'webchat' AND is_active"
              " AND config->'allowed_origins' ? $1)")


async def origin_known(conn: asyncpg.Connection, origin: str) -> bool:
    """Whether any active web chat, in any org, allows `origin` (`conn` is the owner's)."""
    return bool(await conn.fetchval(ANY_ORIGIN, origin))

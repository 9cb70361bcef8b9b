"""Notes on a contact or a deal. A note's author is the signed-in user of the
transaction (`bidi_user()`): none for an API key, an agent or a job, whose
audit rows still name who acted."""
from __future__ import annotations

from datetime import datetime
from typing import Literal, TypedDict, cast
from uuid import UUID

import asyncpg

from core.errors import NotFound
from storage.audit import Actor, record
from storage.rows import one

Parent = Literal["contact", "deal"]
COLUMNS = "id, body, author_id, contact_id, deal_id, created_at"
_TABLES: dict[str, str] = {"contact": "contacts", "deal": "deals"}


class Note(TypedDict):
    id: UUID
    body: str
    author_id: UUID | None
    contact_id: UUID | None
    deal_id: UUID | None
    created_at: datetime | None


def _table(parent: Parent) -> str:
    try:
        return _TABLES[parent]
    except KeyError:
        raise ValueError(f"notes belong to a contact or a deal, not {parent!r}") from None


async def of(conn: asyncpg.Connection, parent: Parent, parent_id: UUID) -> list[Note]:
    """The notes of a contact or a deal, oldest first."""
    if not await conn.fetchval(f"SELECT 1 FROM {_table(parent)} WHERE id = $1", parent_id):
        raise NotFound(f"{parent} not found")
    rows = await conn.fetch(f"SELECT {COLUMNS} FROM notes WHERE {parent}_id = $1"
                            " ORDER BY created_at, id", parent_id)
    return [cast(Note, dict(r)) for r in rows]


async def add(conn: asyncpg.Connection, actor: Actor, parent: Parent, parent_id: UUID,
              body: str) -> Note:
    """A note on the contact or deal, with its audit row and `note.created`."""
    # FOR KEY SHARE: the parent cannot be deleted under the new note
    if not await conn.fetchval(f"SELECT 1 FROM {_table(parent)} WHERE id = $1 FOR KEY SHARE",
                               parent_id):
        raise NotFound(f"{parent} not found")
    row = one(await conn.fetchrow(
        f"INSERT INTO notes (organization_id, {parent}_id, author_id, body)"
        f" VALUES ($1, $2, bidi_user(), $3) RETURNING {COLUMNS}", UUID(actor.org_id),
        parent_id, body), "INSERT INTO notes")
    note = cast(Note, dict(row))
    await record(conn, actor, action="note.create", resource_type="note", resource_id=row["id"],
                 changes={f"{parent}_id": parent_id}, event_type="note.created",
                 payload=dict(note))
    return note

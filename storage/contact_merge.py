"""Merging two contacts: one person reached on two channels (a Telegram
sender and the CRM contact made from a form, say) becomes one contact.

What pointed at the merged contact points at the one kept: its chats, the
messages it sent, its deals, notes and memories. The kept contact takes
what it lacked (email, phone, Telegram identity, company, role, last name)
and the union of tags; its own values win. The merged id becomes an alias
of the kept one, so a channel that names the old id (a sender's derived
id) finds the kept contact from then on. One audit row and
`contact.merged`, in the caller's transaction."""
from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg

from core.errors import Invalid, NotFound
from storage.audit import Actor, record
from storage.contacts import COLUMNS, Contact, as_contact
from storage.rows import one

FILLED = ("last_name", "role", "email", "phone", "telegram_username", "telegram_chat_id",
          "linkedin_url", "whatsapp_phone", "company_id", "source")

MOVE = (
    "UPDATE chats SET contact_id = $2 WHERE contact_id = $1",
    "UPDATE messages SET sender_id = $2 WHERE sender_id = $1 AND sender_type = 'contact'",
    "UPDATE deals SET contact_id = $2 WHERE contact_id = $1",
    "UPDATE notes SET contact_id = $2 WHERE contact_id = $1",
    "UPDATE agent_memories SET contact_id = $2 WHERE contact_id = $1",
    "UPDATE contact_aliases SET contact_id = $2 WHERE contact_id = $1",
)


async def merge(conn: asyncpg.Connection, actor: Actor, merged_id: UUID,
                kept_id: UUID) -> tuple[Contact, list[str]]:
    """Merge `merged_id` into `kept_id`; the kept contact and the ids of the
    chats that moved (their actors must drop what they cached)."""
    if merged_id == kept_id:
        raise Invalid("a contact cannot be merged into itself", field="into")
    found = await conn.fetch(f"SELECT {COLUMNS} FROM contacts WHERE id = ANY($1)"
                             " FOR UPDATE", [merged_id, kept_id])
    by_id = {row["id"]: row for row in found}
    if merged_id not in by_id:
        raise NotFound("contact not found")
    if kept_id not in by_id:
        raise NotFound("the contact to merge into was not found", details={"field": "into"})
    merged, kept = by_id[merged_id], by_id[kept_id]
    chats = [str(r["id"]) for r in await conn.fetch(  # its own, and groups it wrote in
        "SELECT id FROM chats WHERE contact_id = $1 UNION SELECT chat_id FROM messages"
        " WHERE sender_id = $1 AND sender_type = 'contact'", merged_id)]
    # Unique columns (email) must leave the merged contact before the kept one takes them.
    await conn.execute("UPDATE contacts SET email = NULL WHERE id = $1", merged_id)
    for statement in MOVE:
        await conn.execute(statement, merged_id, kept_id)
    taken = {k: merged[k] for k in FILLED if kept[k] is None and merged[k] is not None}
    tags = sorted(set(kept["tags"] or ()) | set(merged["tags"] or ()))
    metadata = {**(merged["metadata"] or {}), **(kept["metadata"] or {})}
    sets = [f"{name} = ${n}" for n, name in enumerate(taken, start=4)]
    row = one(await conn.fetchrow(  # `kept` is locked FOR UPDATE
        f"UPDATE contacts SET tags = $2, metadata = $3, updated_at = now()"
        f"{''.join(', ' + s for s in sets)} WHERE id = $1 RETURNING {COLUMNS}",
        kept_id, tags, metadata, *taken.values()), "UPDATE contacts")
    await conn.execute("DELETE FROM contacts WHERE id = $1", merged_id)
    await conn.execute(
        "INSERT INTO contact_aliases (organization_id, alias_id, contact_id)"
        " VALUES (bidi_org(), $1, $2) ON CONFLICT (organization_id, alias_id)"
        " DO UPDATE SET contact_id = excluded.contact_id", merged_id, kept_id)
    payload: dict[str, Any] = {"id": kept_id, "merged_id": merged_id,
                               "taken": sorted(taken), "chats": chats}
    await record(conn, actor, action="contact.merge", resource_type="contact",
                 resource_id=kept_id, changes={"merged_id": str(merged_id), "taken": taken},
                 event_type="contact.merged", payload=payload)
    return as_contact(row), chats

"""Email threading: which conversation a message belongs to, and what a
reply in a conversation must say to stay in it.

A message joins the conversation of a message it names (its own Message-ID
seen before, then In-Reply-To, then References, newest first), or the one a
`reply+<token>@` address names, but only a conversation of the same contact:
an unrelated sender who quotes a Message-ID starts a conversation of their
own. The lookups are by the Message-IDs (`external_id`) of the email
messages of one integration (a partial index holds only email messages), in
one query per batch of mail; the caller (the mailbox poller) applies the
scoping and the order, since the messages of one batch can answer each other.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

# `metadata ? 'email' OR metadata->'data' ? 'email'` is the partial index's
# predicate (migration 016): repeated so that the planner uses it.
KNOWN = """
SELECT m.external_id, m.is_incoming, c.id AS chat_id, c.channel_thread_id AS thread_id,
       c.contact_id, lower(ct.email) AS contact_email,
       (SELECT coalesce(array_agg(a.alias_id::text), '{}') FROM contact_aliases a
         WHERE a.contact_id = c.contact_id) AS aliases
FROM messages m JOIN chats c ON c.id = m.chat_id LEFT JOIN contacts ct ON ct.id = c.contact_id
WHERE m.external_id = ANY($1::text[]) AND (m.metadata ? 'email' OR m.metadata->'data' ? 'email')
  AND c.integration_id = $2::uuid
"""

CHAT = """
SELECT c.id AS chat_id, c.channel_thread_id AS thread_id, c.contact_id,
       lower(ct.email) AS contact_email,
       (SELECT coalesce(array_agg(a.alias_id::text), '{}') FROM contact_aliases a
         WHERE a.contact_id = c.contact_id) AS aliases
FROM chats c LEFT JOIN contacts ct ON ct.id = c.contact_id
WHERE c.id = ANY($1::uuid[]) AND c.integration_id = $2::uuid
"""

# The conversation's last email messages, newest first: whom to answer, the
# subject, the Message-IDs a reply refers to.
RECENT = """
SELECT m.id, m.is_incoming, m.external_id,
       coalesce(m.metadata->'data'->'email', m.metadata->'email') AS email
FROM messages m
WHERE m.chat_id = $1::uuid AND m.external_id IS NOT NULL
  AND (m.metadata ? 'email' OR m.metadata->'data' ? 'email')
ORDER BY m.created_at DESC, m.id DESC LIMIT 50
"""


@dataclass(frozen=True)
class Thread:
    """A conversation of the mailbox and whose it is."""

    chat_id: str
    thread_id: str
    contact_id: str | None
    contact_email: str | None
    aliases: tuple[str, ...]

    def of(self, address: str | None, contact_ids: Sequence[str]) -> bool:
        """Whether the sender (their address, the contact ids it maps to) is this
        conversation's contact."""
        if self.contact_id is not None and self.contact_id in contact_ids:
            return True
        if address and self.contact_email == address.lower():
            return True
        return any(alias in contact_ids for alias in self.aliases)


@dataclass(frozen=True)
class Known:
    """A stored email message found by its Message-ID."""

    external_id: str
    is_incoming: bool
    thread: Thread


def _thread(row: asyncpg.Record) -> Thread:
    return Thread(chat_id=str(row["chat_id"]), thread_id=str(row["thread_id"]),
                  contact_id=str(row["contact_id"]) if row["contact_id"] else None,
                  contact_email=row["contact_email"], aliases=tuple(row["aliases"] or ()))


async def known(conn: asyncpg.Connection, integration_id: str,
                message_ids: Sequence[str]) -> dict[str, list[Known]]:
    """The stored messages of the integration with these Message-IDs (as
    stored: channels.email.key), by id; one id may be in several chats."""
    found: dict[str, list[Known]] = {}
    if not message_ids:
        return found
    for row in await conn.fetch(KNOWN, list(dict.fromkeys(message_ids)), integration_id):
        found.setdefault(row["external_id"], []).append(
            Known(row["external_id"], bool(row["is_incoming"]), _thread(row)))
    return found


async def chats(conn: asyncpg.Connection, integration_id: str,
                chat_ids: Sequence[str]) -> dict[str, Thread]:
    """The integration's conversations among `chat_ids` (reply tokens name them)."""
    if not chat_ids:
        return {}
    rows = await conn.fetch(CHAT, list(dict.fromkeys(chat_ids)), integration_id)
    return {str(r["chat_id"]): _thread(r) for r in rows}


async def reply_context(conn: asyncpg.Connection, chat_id: str,
                        reply_to: str | None = None) -> dict[str, Any]:
    """What a reply in the conversation says: `to` (the contact's Reply-To,
    else From, of their last message), `subject` and `in_reply_to` /
    `references` (its own: a reply adds its id) of the message answered
    (`reply_to`, a Message-ID of the chat, else the last one)."""
    rows = await conn.fetch(RECENT, chat_id)
    parent = next((r for r in rows if reply_to is not None and r["external_id"] == reply_to),
                  rows[0] if rows else None)
    theirs = next((r for r in rows if r["is_incoming"]), None)
    to: list[str] = []
    if theirs is not None:
        said = theirs["email"] or {}
        to = list(said.get("reply_to") or ()) or ([said["from"]] if said.get("from") else [])
    elif parent is not None:  # only ours so far: to whom we wrote
        to = list((parent["email"] or {}).get("to") or ())
    if parent is None:
        return {"to": to, "subject": "", "in_reply_to": None, "references": []}
    said = parent["email"] or {}
    parent_id = said.get("message_id") or parent["external_id"]
    references = [str(r) for r in said.get("references") or ()]
    return {"to": to, "subject": said.get("subject") or "", "in_reply_to": parent_id,
            "references": references}

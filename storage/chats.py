"""Chats: the ids that follow from where a conversation happens, the row a
chat actor activates from (batched), the writes that create a chat and
mark it read, and the lists the API reads (its senders' contacts:
storage.senders).

Writes here are `storage.committer.Write`s: the chat actor, the only writer
of a chat, hands them to its host's group committer. Each one appends its
event in the same statement, so a row and its event commit together."""
from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from datetime import datetime
from functools import lru_cache
from hashlib import sha1
from typing import Any
from uuid import UUID

import asyncpg

from core.errors import Invalid, NotFound
from core.messages import InboundMessage, MessageEdit, Reaction, StatusUpdate, ThreadState
from storage import contacts
from storage.audit import Actor, record
from storage.committer import Write
from storage.db import Database
from storage.loader import BatchLoader
from storage.rows import Conditions

Key = tuple[str, str]  # (org_id, chat_id)
IDS = uuid.UUID("6f1d2c9e-7d0b-4d43-9a51-2f9a1c3b5e10")  # namespace for derived ids

# A chat's hot state in one row: unread count, its last $2 messages, the
# external ids of its last $3 inbound ones, and its outbound still pending
# with the seconds until each is due.
ACTIVATION = """
SELECT c.id, c.contact_id, c.channel, c.channel_thread_id, c.integration_id,
       c.last_message_at, c.last_inbound_at, c.metadata, c.unreachable_reason,
       (SELECT jsonb_build_object('sender', ct.metadata->>'channel_sender_id',
                                  'name', ct.metadata->>'channel_name',
                                  'username', ct.telegram_username)
          FROM contacts ct WHERE ct.id = c.contact_id) AS contact_profile,
       (SELECT count(*) FROM messages m
         WHERE m.chat_id = c.id AND m.is_incoming AND NOT m.is_read) AS unread,
       (SELECT coalesce(jsonb_agg(r ORDER BY r.created_at, r.id), '[]'::jsonb) FROM (
          SELECT m.id, m.sender_type, m.content, m.is_incoming, m.status, m.created_at
          FROM messages m WHERE m.chat_id = c.id
          ORDER BY m.created_at DESC, m.id DESC LIMIT $2) r) AS recent,
       (SELECT coalesce(array_agg(x.external_id), '{}') FROM (
          SELECT m.external_id FROM messages m
          WHERE m.chat_id = c.id AND m.is_incoming AND m.external_id IS NOT NULL
          ORDER BY m.created_at DESC, m.id DESC LIMIT $3) x) AS seen,
       (SELECT coalesce(jsonb_agg(p ORDER BY p.created_at, p.id), '[]'::jsonb) FROM (
          SELECT m.id, m.content, m.created_at, m.delivery_attempts AS attempts,
                 m.metadata->'reply_to'->>'external_id' AS reply_to,
                 m.metadata->'template' AS template,
                 (m.metadata->>'sent_parts')::int AS sent_parts,
                 coalesce(extract(epoch FROM m.next_attempt_at - localtimestamp), 0)::float8 AS wait
          FROM messages m
          WHERE m.chat_id = c.id AND NOT m.is_incoming AND m.status = 'pending') p) AS pending
FROM chats c WHERE c.id = ANY($1::uuid[])
"""

INSERT_CHAT = """
WITH c AS (
  INSERT INTO chats (id, organization_id, contact_id, channel, channel_thread_id,
                     integration_id, title, is_unread, created_at, updated_at)
  VALUES ($1, $2, $3, $4, $5, $6, $7, false, $8, $8) ON CONFLICT DO NOTHING RETURNING id)
INSERT INTO events (organization_id, event_type, entity_type, entity_id, chat_id, payload)
SELECT $2, 'chat.created', 'chat', c.id, c.id, $9 FROM c
"""

MARK_READ = """
WITH r AS (
  UPDATE messages SET is_read = true
  WHERE chat_id = $1 AND is_incoming AND NOT is_read RETURNING 1),
c AS (
  UPDATE chats SET is_unread = false, unread_count = 0, updated_at = $3 WHERE id = $1)
INSERT INTO events (organization_id, event_type, entity_type, entity_id, chat_id, user_id,
                    payload)
VALUES ($2, 'chat.read', 'chat', $1, $1, $4, $5)
"""

COLUMNS = """
c.id, c.contact_id, c.channel, c.channel_thread_id, c.integration_id, c.title, c.is_unread,
c.unread_count, c.last_message_at, c.last_inbound_at, c.created_at, c.updated_at,
c.unreachable_reason, c.unreachable_at, c.assigned_agent_id, c.assigned_user_id,
nullif(trim(coalesce(ct.first_name, '') || ' ' || coalesce(ct.last_name, '')), '')
  AS contact_name,
(SELECT to_jsonb(l) FROM (
   SELECT m.id, m.content, m.is_incoming, m.sender_type, m.status, m.created_at
   FROM messages m WHERE m.chat_id = c.id ORDER BY m.created_at DESC, m.id DESC LIMIT 1) l)
  AS last_message
"""
JOINED = " FROM chats c LEFT JOIN contacts ct ON ct.id = c.contact_id"


# -- ids ------------------------------------------------------------------

_IDS_BYTES = IDS.bytes


def derived_id(*parts: str) -> str:
    """`str(uuid.uuid5(IDS, "\x1f".join(parts)))`, without building a UUID
    object (it validates what a hash cannot get wrong): an inbound message
    derives three ids, and uuid5 was 12% of a host's time at full ingest."""
    digest = bytearray(sha1(_IDS_BYTES + "\x1f".join(parts).encode(), usedforsecurity=False)
                       .digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # the RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@lru_cache(maxsize=65_536)
def _place_id(kind: str, org_id: str, channel: str, integration_id: str, where: str) -> str:
    return derived_id(kind, org_id, channel, integration_id, where)


def chat_id_for(message: InboundMessage | MessageEdit | ThreadState | Reaction
                | StatusUpdate) -> str:
    """A conversation's chat id follows from where it happens: same thread, same chat."""
    # Cached: every message of a chat names the same one, several times over.
    return _place_id("chat", message.organization_id, message.channel,
                     message.integration_id, message.thread_id or "")


def contact_id_for(message: InboundMessage, sender_id: str | None = None) -> str:
    """The contact of `message`'s sender (or of another id of theirs on its channel)."""
    return _place_id("contact", message.organization_id, message.channel,
                     message.integration_id, sender_id or message.sender.id)


def alias_ids(message: InboundMessage) -> list[str]:
    """The contact ids the sender's other ids on this channel would have."""
    return [contact_id_for(message, alias) for alias in message.sender.aliases]


# -- activation -----------------------------------------------------------

def loader(db: Database, *, recent: int, seen: int) -> BatchLoader[Key, dict[str, Any]]:
    """Chat rows by (org, chat) key, one query per org for the keys asked at
    once; `recent` messages and `seen` inbound external ids each."""

    async def fetch(keys: Sequence[Key]) -> dict[Key, dict[str, Any]]:
        by_org: dict[str, list[str]] = {}
        for org_id, chat_id in keys:
            by_org.setdefault(org_id, []).append(chat_id)
        found: dict[Key, dict[str, Any]] = {}
        for org_id, chat_ids in by_org.items():
            async with db.tenant_tx(org_id) as conn:
                for row in await conn.fetch(ACTIVATION, chat_ids, recent, seen):
                    found[(org_id, str(row["id"]))] = dict(row)
        return found

    return BatchLoader(fetch)


# -- writes ---------------------------------------------------------------

def chat_write(org_id: str, chat_id: str, contact_id: str, message: InboundMessage,
               at: datetime) -> Write:
    """The chat `message` opens, titled after its group or its sender."""
    sender = message.sender
    title = message.thread_title or sender.name or sender.username or message.thread_id
    return Write(INSERT_CHAT, (
        chat_id, org_id, contact_id, message.channel, message.thread_id,
        message.integration_id, title[:255], at,
        {"id": chat_id, "contact_id": contact_id, "channel": message.channel,
         "thread_id": message.thread_id, "title": title}))


SET_REACHABLE = """
WITH c AS (
  UPDATE chats SET unreachable_reason = $3, unreachable_at = CASE WHEN $3::text IS NULL
                   THEN NULL ELSE $4::timestamp END, updated_at = $4
  WHERE id = $1 AND unreachable_reason IS DISTINCT FROM $3 RETURNING id)
INSERT INTO events (organization_id, event_type, entity_type, entity_id, chat_id, payload)
SELECT $2, 'chat.updated', 'chat', c.id, c.id, $5 FROM c
"""


def reachability_write(org_id: str, chat_id: str, reason: str | None, at: datetime) -> Write:
    """The chat marked unreachable for `reason` (None: reachable again), with
    `chat.updated` when that changes anything."""
    return Write(SET_REACHABLE, (
        chat_id, org_id, reason, at,
        {"id": chat_id, "unreachable_reason": reason,
         "unreachable_at": at.isoformat() if reason else None}))


# The chat's agent (kept in its metadata, where activation reads it), with
# `chat.updated`; an agent of another org is not found (row-level security).
ASSIGN = """
WITH c AS (
  UPDATE chats SET metadata = coalesce(metadata, '{}'::jsonb)
                              || jsonb_build_object('assigned_agent_id', $3::text),
                   updated_at = now()
  WHERE id = $1 AND ($3::text IS NULL OR EXISTS (SELECT 1 FROM ai_agents WHERE id = $3::uuid))
  RETURNING id)
INSERT INTO events (organization_id, event_type, entity_type, entity_id, chat_id, user_id,
                    payload)
SELECT $2, 'chat.updated', 'chat', c.id, c.id, $4,
       jsonb_build_object('id', c.id, 'assigned_agent_id', $3::text) FROM c
RETURNING entity_id
"""


def assign_write(org_id: str, chat_id: str, agent_id: str | None,
                 user_id: str | None) -> Write:
    """`agent_id` the chat's agent (None: none); `.inserted` is False when
    no such agent is the org's."""
    return Write.reporting(ASSIGN, (chat_id, org_id, agent_id, user_id))


def read_write(org_id: str, chat_id: str, user_id: str | None, at: datetime) -> Write:
    """Every inbound message read, unread to 0, and `chat.read`."""
    return Write(MARK_READ, (
        chat_id, org_id, at, user_id,
        {"chat_id": chat_id, "read_by": user_id, "read_at": at.isoformat()}))


# -- reads ----------------------------------------------------------------

def _prefix(column: str, text: str, cond: Conditions) -> str:
    """`column` starts with `text`: a range of leakproof comparisons, so
    indexed next to the RLS policy (migrations 006, 020)."""
    bounds = f"{column} ~>=~ {cond.param(text)}"
    high = contacts.prefix_end(text)
    if high is not None:
        bounds += f" AND {column} ~<~ {cond.param(high)}"
    return bounds


def _search(words: list[str], cond: Conditions) -> None:
    """The chats whose title starts with the words, or whose contact has a
    term starting with each word. Both sides are driven by an index: the
    title's prefix range; the first word's contacts (their terms) and then
    their chats, each checked for the other words by its contact's own terms
    (as contact search narrows its first word's hits)."""
    if not words:
        return
    others = "".join(
        f" AND EXISTS (SELECT 1 FROM contact_terms t WHERE t.contact_id = ch.contact_id"
        f" AND {_prefix('t.term', word, cond)})" for word in words[1:])
    cond.add(f"c.id IN (SELECT id FROM chats WHERE {_prefix('title_key', ' '.join(words), cond)}"
             f" UNION SELECT ch.id FROM chats ch WHERE ch.contact_id IN (SELECT contact_id"
             f" FROM contact_terms WHERE {_prefix('term', words[0], cond)}){others})")


async def list_page(conn: asyncpg.Connection, *, limit: int, offset: int,
                    unread: bool | None = None, channel: str | None = None,
                    contact_id: UUID | None = None, q: str | None = None,
                    assigned_agent_id: UUID | None = None,
                    assigned_user_id: UUID | None = None) -> tuple[int, list[dict[str, Any]]]:
    """The total and one page of chats, most recent conversation first, with
    every filter given. `q`: words, each matching the start of a term of the
    chat's contact (a word of the name, the email whole or a part, the
    Telegram username, digits of the phone); or the start of the title."""
    cond = Conditions()
    if unread is not None:
        cond.add("c.unread_count > 0" if unread else "c.unread_count = 0")
    cond.equal(**{"c.channel": channel or None, "c.contact_id": contact_id,
                  "c.assigned_agent_id": str(assigned_agent_id) if assigned_agent_id else None,
                  "c.assigned_user_id": assigned_user_id})
    _search(contacts.search_words(q), cond)
    where, args, n = cond.where(), cond.args, len(cond.args)
    total = await conn.fetchval(f"SELECT count(*) FROM chats c{where}", *args)
    rows = await conn.fetch(
        f"SELECT {COLUMNS}{JOINED}{where} ORDER BY c.last_message_at DESC NULLS LAST, c.id"
        f" LIMIT ${n + 1} OFFSET ${n + 2}", *args, limit, offset)
    return int(total), [dict(r) for r in rows]


async def get(conn: asyncpg.Connection, chat_id: UUID | str) -> dict[str, Any]:
    """One chat, or `NotFound` (also for another org's)."""
    row = await conn.fetchrow(f"SELECT {COLUMNS}{JOINED} WHERE c.id = $1", chat_id)
    if row is None:
        raise NotFound("chat not found")
    return dict(row)


async def exists(conn: asyncpg.Connection, chat_id: UUID | str) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM chats WHERE id = $1", chat_id))


async def owned(conn: asyncpg.Connection, chat_ids: Collection[str]) -> set[str]:
    """Which of `chat_ids` are chats of the transaction's org (RLS decides)."""
    return {str(r["id"]) for r in await conn.fetch(
        "SELECT id FROM chats WHERE id = ANY($1::uuid[])", list(chat_ids))}


async def mark_handoff(conn: asyncpg.Connection, actor: Actor, chat_id: UUID | str,
                       reason: str, at: datetime) -> dict[str, Any]:
    """Mark the chat for a human (`metadata.handoff`), with its audit row and
    `ai.handoff`. Only that key is written: the chat actor's own metadata
    stays as it is."""
    handoff = {"reason": reason, "at": at.isoformat(), "agent_id": actor.agent_id}
    found = await conn.fetchval(
        "UPDATE chats SET metadata = jsonb_set(coalesce(metadata, '{}'::jsonb), '{handoff}', $2),"
        " updated_at = now() WHERE id = $1 RETURNING id", UUID(str(chat_id)), handoff)
    if found is None:
        raise NotFound("chat not found")
    await record(conn, actor, action="chat.handoff", resource_type="chat", resource_id=found,
                 changes={"handoff": handoff}, event_type="ai.handoff",
                 payload={"chat_id": found, **handoff})
    return handoff


# The chat's person, the audit row and `chat.assigned` (on the chat's topic
# and, through `notify_user_ids`, the assignee's notifications) in one
# statement; nothing when the chat is not the org's (row-level security).
ASSIGN_USER = """
WITH c AS (
  UPDATE chats c SET assigned_user_id = $3, updated_at = now()
  FROM (SELECT id, assigned_user_id FROM chats WHERE id = $1 FOR UPDATE) old
  WHERE c.id = old.id RETURNING c.id, old.assigned_user_id AS before),
a AS (
  INSERT INTO audit_logs (organization_id, user_id, action, resource_type, resource_id,
                          changes, ip_address, user_agent, agent_id)
  SELECT $2, $4, 'chat.assign', 'chat', c.id,
         jsonb_build_object('assigned_user_id', jsonb_build_array(c.before, $3::uuid)),
         $5::inet, $6, $7 FROM c)
INSERT INTO events (organization_id, event_type, entity_type, entity_id, chat_id, user_id,
                    agent_id, payload)
SELECT $2, 'chat.assigned', 'chat', c.id, c.id, $4, $7,
       jsonb_build_object('chat_id', c.id, 'assigned_user_id', $3::uuid,
                          'previous_user_id', c.before, 'assigned_by', $4::uuid,
                          'notify_user_ids', CASE WHEN $3::uuid IS NULL THEN '[]'::jsonb
                                             ELSE jsonb_build_array($3::uuid) END) FROM c
RETURNING entity_id
"""


async def is_member(conn: asyncpg.Connection, user_id: UUID | str) -> bool:
    """Whether `user_id` is a member of the transaction's org (RLS decides)."""
    return bool(await conn.fetchval(
        "SELECT 1 FROM organization_members WHERE user_id = $1::uuid", str(user_id)))


async def check_user(conn: asyncpg.Connection, user_id: UUID | str | None) -> None:
    """`Invalid` naming the field unless `user_id` is None or a member of the org."""
    if user_id is not None and not await is_member(conn, user_id):
        raise Invalid("no such member in this organization", field="assigned_user_id")


async def unassign_user(conn: asyncpg.Connection, user_id: UUID | str) -> int:
    """A member leaving the org leaves their chats to nobody; how many."""
    done = await conn.execute("UPDATE chats SET assigned_user_id = NULL, updated_at = now()"
                              " WHERE assigned_user_id = $1", UUID(str(user_id)))
    return int(done.split()[-1])


async def assign_user(conn: asyncpg.Connection, actor: Actor, chat_id: UUID | str,
                      user_id: UUID | str | None) -> None:
    """Make `user_id` (a member of the org; None: nobody) the chat's person,
    with its audit row and `chat.assigned`; `NotFound` for another org's chat."""
    await check_user(conn, user_id)
    found = await conn.fetchval(
        ASSIGN_USER, UUID(str(chat_id)), UUID(actor.org_id),
        UUID(str(user_id)) if user_id is not None else None,
        UUID(actor.user_id) if actor.user_id else None, actor.ip, actor.user_agent,
        UUID(actor.agent_id) if actor.agent_id else None)
    if found is None:
        raise NotFound("chat not found")

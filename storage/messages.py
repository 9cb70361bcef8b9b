"""Messages: their derived ids, the writes a chat actor hands to the group
committer (an inbound message, an outbound one, an edit, a draft's
decision, a file stored), and the reads behind them and behind the history
API. What happens to a sent message afterwards (statuses, reactions,
retries) is storage.statuses.

A message id follows from where the message comes from: the same provider
message in the same chat is the same row, so a redelivery conflicts
(`ON CONFLICT DO NOTHING`) instead of storing a copy. The inbound write
reports whether it inserted, so its turn can tell a redelivery from a new
message however long ago the first copy came."""
from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
import msgspec

from core.errors import Invalid, NotFound
from core.messages import Attachment, InboundMessage, MessageEdit
from storage import chats
from storage.committer import Write

_json = msgspec.json.Encoder().encode

# Returns the message's id ($1) only when it was inserted; the chat's unread
# count and `message.received` follow the insert, never a conflict.
INSERT_INBOUND = """
WITH m AS (
  INSERT INTO messages (id, chat_id, organization_id, sender_type, sender_id, content,
                        is_incoming, external_id, status, metadata, created_at)
  VALUES ($1, $2, $3, 'contact', $9, $4, true, $5, 'delivered', $6, $7)
  ON CONFLICT DO NOTHING RETURNING id),
c AS (
  UPDATE chats SET last_message_at = greatest(last_message_at, $7),
                   last_inbound_at = greatest(last_inbound_at, $7), is_unread = true,
                   unread_count = unread_count + 1, updated_at = $7
  WHERE id = $2 AND EXISTS (SELECT 1 FROM m)),
e AS (
  INSERT INTO events (organization_id, event_type, entity_type, entity_id, chat_id, payload)
  SELECT $3, 'message.received', 'message', m.id, $2, $8 FROM m),
a AS (
  INSERT INTO message_attachments (message_id, organization_id, file_url, file_name,
                                   file_type, file_size, kind, provider_file_id, stored_at,
                                   error)
  SELECT m.id, $3, x->>'url', x->>'name', x->>'mime_type', (x->>'size')::int,
         x->>'kind', x->>'provider_id',
         CASE WHEN (x->>'stored')::boolean THEN $7::timestamp END, x->>'error'
  FROM m, jsonb_array_elements($10::text::jsonb) x)
SELECT m.id FROM m
"""

# INSERT_INBOUND for many messages in one statement (the group committer's
# bulk form: each $n an array of every message's $n-th argument). One
# statement instead of one per message: Postgres plans and starts its four
# parts once per flush (100 messages: 14.6 -> 9.0 ms with the COMMIT, one
# backend, nothing else running). A chat with several of the messages has
# its unread count raised by all of them at once; the events follow the
# messages' order.
BULK_INBOUND = """
WITH i AS (
  SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[],
                       $6::jsonb[], $7::timestamp[], $8::jsonb[], $9::uuid[], $10::text[])
    WITH ORDINALITY AS i(id, chat_id, organization_id, content, external_id, metadata,
                         created_at, payload, sender_id, files, n)),
m AS (
  INSERT INTO messages (id, chat_id, organization_id, sender_type, sender_id, content,
                        is_incoming, external_id, status, metadata, created_at)
  SELECT id, chat_id, organization_id, 'contact', sender_id, content, true, external_id,
         'delivered', metadata, created_at FROM i ORDER BY n
  ON CONFLICT DO NOTHING RETURNING id),
-- one row per message written (the first of any written twice in the batch)
w AS (SELECT DISTINCT ON (id) i.* FROM i JOIN m USING (id) ORDER BY id, n),
s AS (SELECT chat_id, max(created_at) AS at, count(*) AS k FROM w GROUP BY chat_id),
-- The chats by their primary key (`= ANY` of the array), whatever the
-- planner thinks of the table: a join let it scan every chat of the org
-- while the table had no statistics (10.5 vs 3.3 ms a flush of 32 on 2,000).
c AS (
  UPDATE chats SET last_message_at = greatest(last_message_at, s.at),
                   last_inbound_at = greatest(last_inbound_at, s.at), is_unread = true,
                   unread_count = unread_count + s.k, updated_at = s.at
  FROM s WHERE chats.id = s.chat_id AND chats.id = ANY (ARRAY(SELECT chat_id FROM s))),
e AS (
  INSERT INTO events (organization_id, event_type, entity_type, entity_id, chat_id, payload)
  SELECT organization_id, 'message.received', 'message', id, chat_id, payload
  FROM w ORDER BY n),
a AS (
  INSERT INTO message_attachments (message_id, organization_id, file_url, file_name,
                                   file_type, file_size, kind, provider_file_id, stored_at,
                                   error)
  SELECT w.id, w.organization_id, x->>'url', x->>'name', x->>'mime_type', (x->>'size')::int,
         x->>'kind', x->>'provider_id',
         CASE WHEN (x->>'stored')::boolean THEN w.created_at END, x->>'error'
  FROM w, jsonb_array_elements(w.files::jsonb) x)
SELECT id FROM w ORDER BY n
"""

# A file fetched into the data dir (or why it never will be).
FILE_STORED = """
UPDATE message_attachments SET file_url = coalesce($3, file_url),
       file_size = coalesce($4, file_size), file_type = coalesce(file_type, $5),
       stored_at = CASE WHEN $3::text IS NULL THEN NULL ELSE now() END, error = $6
WHERE message_id = $1 AND provider_file_id = $2
"""

INSERT_OUTBOUND = """
WITH m AS (
  INSERT INTO messages (id, chat_id, organization_id, sender_type, sender_id, content,
                        is_incoming, is_read, status, ai_agent_id, metadata, created_at,
                        ai_draft)
  VALUES ($1, $2, $3, $4, $5, $6, false, true, $12::text, $7, $8, $9, $12::text = 'draft')
  ON CONFLICT DO NOTHING RETURNING id),
c AS (
  UPDATE chats SET last_message_at = $9, updated_at = $9
  WHERE id = $2 AND EXISTS (SELECT 1 FROM m))
INSERT INTO events (organization_id, event_type, entity_type, entity_id, chat_id, user_id,
                    payload)
SELECT $3, 'message.created', 'message', m.id, $2, $10, $11 FROM m
"""

# A new revision of a stored message; returns $1 only when it was new (a
# redelivered edit is the same revision). The message keeps its content.
INSERT_REVISION = """
WITH r AS (
  INSERT INTO message_revisions (organization_id, message_id, content, metadata, edited_at)
  VALUES ($2, $1, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING message_id),
u AS (
  UPDATE messages SET edited_at = greatest(coalesce(edited_at, $6), $6)
  WHERE id = $1 AND EXISTS (SELECT 1 FROM r)),
e AS (
  INSERT INTO events (organization_id, event_type, entity_type, entity_id, chat_id, payload)
  SELECT $2, 'message.edited', 'message', r.message_id, $3, $7 FROM r)
SELECT r.message_id FROM r
"""

# Outbound messages of this chat still pending, and in how many seconds
# each is due (the sweeper's or an activation's resend).
SELECT_PENDING = """
SELECT id, content, delivery_attempts AS attempts, metadata->'reply_to'->>'external_id' AS reply_to,
       metadata->'template' AS template,
       (metadata->>'sent_parts')::int AS sent_parts,
       coalesce(extract(epoch FROM next_attempt_at - localtimestamp), 0)::float8 AS wait
FROM messages WHERE id = ANY($1::uuid[]) AND chat_id = $2 AND NOT is_incoming
  AND status = 'pending' ORDER BY created_at, id
"""

SELECT_MESSAGE = """
SELECT id, chat_id, sender_type, sender_id, content, is_incoming, is_read, status,
       external_id, created_at FROM messages WHERE id = $1 AND chat_id = $2
"""

COLUMNS = ("id, chat_id, sender_type, sender_id, content, is_incoming, is_read,"
           " ai_draft, ai_agent_id, status, external_id, metadata, created_at, edited_at,"
           # The edits, oldest first (only edited messages pay for the subquery).
           " CASE WHEN edited_at IS NULL THEN '[]'::jsonb ELSE (SELECT jsonb_agg("
           "jsonb_build_object('content', r.content, 'edited_at', r.edited_at)"
           " ORDER BY r.edited_at, r.created_at)"
           " FROM message_revisions r WHERE r.message_id = messages.id) END AS revisions,"
           " (SELECT coalesce(jsonb_agg(jsonb_build_object('id', a.id, 'kind', a.kind,"
           " 'name', a.file_name, 'mime_type', a.file_type, 'size', a.file_size,"
           " 'stored', a.stored_at IS NOT NULL, 'error', a.error) ORDER BY a.created_at, a.id),"
           " '[]'::jsonb) FROM message_attachments a WHERE a.message_id = messages.id)"
           " AS attachments")


def inbound_id(chat_id: str, external_id: str) -> str:
    return chats.derived_id("message", chat_id, external_id)


def outbound_id(chat_id: str, idempotency_key: str) -> str:
    return chats.derived_id("outbound", chat_id, idempotency_key)


def view(row: dict[str, Any]) -> dict[str, Any]:
    """A message row with its ids as strings, as the chat actor answers it."""
    return {k: (str(v) if isinstance(v, UUID) else v) for k, v in row.items()}


# -- writes ---------------------------------------------------------------

def inbound_write(org_id: str, chat_id: str, contact_id: str | None, message: InboundMessage,
                  message_id: str, at: datetime) -> Write:
    """Store `message` as received at `at`; after COMMIT, `.inserted` is
    False when its row was there already (a redelivery)."""
    sender = msgspec.to_builtins(message.sender)
    metadata = {"sender": sender, "thread_id": message.thread_id,
                "integration_id": message.integration_id}
    if message.attachments:
        metadata["attachments"] = msgspec.to_builtins(message.attachments)
    if message.sent_at is not None:
        metadata["sent_at"] = message.sent_at.isoformat()
    if message.data:
        metadata["data"] = message.data
    if message.body is not None:
        metadata["body"] = message.body
    if message.reply_to_external_id is not None:  # the message it answers, by our id
        metadata["reply_to"] = {"external_id": message.reply_to_external_id,
                                "message_id": inbound_id(chat_id, message.reply_to_external_id)}
    payload = {"id": message_id, "chat_id": chat_id, "contact_id": contact_id,
               "channel": message.channel, "sender_type": "contact", "sender": sender,
               "content": message.text, "is_incoming": True, "status": "delivered",
               "external_id": message.external_id, "created_at": at.isoformat()}
    for key in ("reply_to", "data"):
        if key in metadata:
            payload[key] = metadata[key]
    files = (_json([_attachment(a) for a in message.attachments]).decode()
             if message.attachments else "[]")
    return Write.reporting(INSERT_INBOUND, (
        message_id, chat_id, org_id, message.text, message.external_id, metadata, at,
        payload, contact_id, files), bulk=BULK_INBOUND)


def _attachment(attachment: Attachment) -> dict[str, Any]:
    found = msgspec.to_builtins(attachment)
    if isinstance(found.get("size"), int) and not 0 <= found["size"] < 2**31:
        found["size"] = None  # the column is an INTEGER; a bogus size is no size
    return dict(found)


def file_write(message_id: str, provider_file_id: str, *, path: str | None = None,
               size: int | None = None, mime_type: str | None = None,
               error: str | None = None) -> Write:
    """An attachment's file stored at `path` (relative to the data dir), or `error`."""
    return Write(FILE_STORED, (message_id, provider_file_id, path, size, mime_type,
                               error[:500] if error else None))


def revision_write(org_id: str, chat_id: str, message_id: str, edit: MessageEdit,
                   at: datetime) -> Write:
    """`edit` kept beside the message it changes; after COMMIT `.inserted`
    is False for a redelivered edit."""
    edited_at = edit.edited_at or at
    metadata: dict[str, Any] = {"sender": msgspec.to_builtins(edit.sender)}
    if edit.attachments:
        metadata["attachments"] = msgspec.to_builtins(edit.attachments)
    payload = {"id": message_id, "chat_id": chat_id, "channel": edit.channel,
               "content": edit.text, "edited_at": edited_at.isoformat(),
               "external_id": edit.external_id}
    return Write.reporting(INSERT_REVISION, (
        message_id, org_id, chat_id, edit.text, metadata, edited_at, payload))


def outbound_write(org_id: str, chat_id: str, message_id: str, text: str, at: datetime, *,
                   user_id: str | None, agent_id: str | None,
                   reply_to: dict[str, str] | None = None,
                   template: dict[str, Any] | None = None,
                   campaign_id: str | None = None,
                   draft: dict[str, Any] | None = None) -> tuple[dict[str, Any], Write]:
    """A reply stored `pending` (and `message.created`): its view and its write.
    `reply_to`: the message it answers (`reply_target`); `template`: the
    provider template it is sent as; `campaign_id`: the campaign sending it;
    `draft`: an agent's draft (what run made it), stored `draft` with
    `ai_draft` until someone approves it (`draft_decision_write`)."""
    sender_type = "agent" if agent_id else "campaign" if campaign_id else "user"
    metadata: dict[str, Any] = {"reply_to": reply_to} if reply_to else {}
    if template is not None:
        metadata["template"] = template
    if campaign_id is not None:
        metadata["campaign_id"] = campaign_id
    if draft is not None:
        metadata["draft"] = {**draft, "outcome": "pending"}
    status = "draft" if draft is not None else "pending"
    shown = {"id": message_id, "chat_id": chat_id, "sender_type": sender_type,
             "sender_id": user_id, "content": text, "is_incoming": False,
             "is_read": True, "status": status, "external_id": None,
             "ai_draft": draft is not None, "ai_agent_id": agent_id,
             "metadata": metadata, "created_at": at.isoformat()}
    return shown, Write(INSERT_OUTBOUND, (
        message_id, chat_id, org_id, sender_type, user_id, text, agent_id, metadata, at,
        user_id, shown, status))


# A pending draft approved (to `pending`, sent like any reply, its content
# replaced when edited) or rejected; the outcome is kept for analytics.
DRAFT_DECISION = """
WITH d AS (
  UPDATE messages SET status = CASE WHEN $3 THEN 'pending' ELSE 'rejected' END,
         content = coalesce($4, content),
         metadata = jsonb_set(metadata, '{draft}', (metadata->'draft') || $5::jsonb)
  WHERE id = $1 AND chat_id = $2 AND ai_draft AND status = 'draft'
  RETURNING id, content)
INSERT INTO events (organization_id, event_type, entity_type, entity_id, chat_id, user_id,
                    payload)
SELECT $6, CASE WHEN $3 THEN 'message.draft.approved' ELSE 'message.draft.rejected' END,
       'message', d.id, $2, $7, $8::jsonb || jsonb_build_object('content', d.content) FROM d
RETURNING entity_id
"""


def draft_decision_write(org_id: str, chat_id: str, message_id: str, *, approve: bool,
                         content: str | None, original: str, user_id: str | None,
                         at: datetime) -> Write:
    """Approve (optionally edited) or reject a draft; after COMMIT `.inserted`
    says whether it was a pending draft of this chat."""
    outcome = "rejected" if not approve else "edited" if content not in (None, original) \
        else "approved"
    decided = {"outcome": outcome, "by": user_id, "at": at.isoformat()}
    if outcome == "edited":
        decided["original"] = original
    payload = {"id": message_id, "chat_id": chat_id, "outcome": outcome, "by": user_id}
    return Write.reporting(DRAFT_DECISION, (message_id, chat_id, approve,
                                            content if outcome == "edited" else None,
                                            decided, org_id, user_id, payload))


# -- reads ----------------------------------------------------------------

async def stored(conn: asyncpg.Connection, message_id: str) -> bool:
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM messages WHERE id = $1)",
                                    message_id))


async def find(conn: asyncpg.Connection, message_id: str,
               chat_id: str) -> dict[str, Any] | None:
    row = await conn.fetchrow(SELECT_MESSAGE, message_id, chat_id)
    return None if row is None else view(dict(row))


async def pending(conn: asyncpg.Connection, message_ids: list[str],
                  chat_id: str) -> list[dict[str, Any]]:
    """Those of `message_ids` still pending in this chat, with `wait`: the
    seconds until each is due (0 or less: now)."""
    return [dict(r) for r in await conn.fetch(SELECT_PENDING, message_ids, chat_id)]


def cursor(created_at: datetime, message_id: UUID) -> str:
    raw = f"{created_at.isoformat()}|{message_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def uncursor(value: str) -> tuple[datetime, UUID]:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
        stamp, _, ident = raw.partition("|")
        return datetime.fromisoformat(stamp), UUID(ident)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise Invalid("before is not a cursor from this API", field="before") from None


async def history(conn: asyncpg.Connection, chat_id: UUID | str, *, limit: int,
                  before: str | None = None) -> dict[str, Any]:
    """A chat's messages newest first, `limit` at most, older than the
    `before` cursor; `next_cursor` pages on (None: no older ones)."""
    if not await chats.exists(conn, chat_id):
        raise NotFound("chat not found")
    rows, next_cursor = await page_of(conn, chat_id, COLUMNS, limit=limit, before=before)
    data = [{**dict(r), "metadata": r["metadata"] or {}} for r in rows]
    return {"limit": limit, "next_cursor": next_cursor, "data": data}


async def page_of(conn: asyncpg.Connection, chat_id: UUID | str, columns: str, *,
                  where: str = "chat_id = $1", limit: int,
                  before: str | None = None) -> tuple[list[asyncpg.Record], str | None]:
    """One page of a chat's messages (`where`, naming the chat as $1),
    newest first, older than the `before` cursor, and the cursor of the next."""
    if before:
        stamp, ident = uncursor(before)
        rows = await conn.fetch(
            f"SELECT {columns} FROM messages WHERE {where}"
            " AND (created_at, id) < ($2, $3) ORDER BY created_at DESC, id DESC LIMIT $4",
            UUID(str(chat_id)), stamp, ident, limit + 1)
    else:
        rows = await conn.fetch(
            f"SELECT {columns} FROM messages WHERE {where}"
            " ORDER BY created_at DESC, id DESC LIMIT $2", UUID(str(chat_id)), limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, cursor(rows[-1]["created_at"], rows[-1]["id"]) if more else None


async def attachment(conn: asyncpg.Connection, attachment_id: UUID) -> dict[str, Any]:
    """One attachment of the org (RLS), or `NotFound`."""
    row = await conn.fetchrow(
        "SELECT id, message_id, file_url, file_name, file_type, file_size, kind, stored_at,"
        " error FROM message_attachments WHERE id = $1", attachment_id)
    if row is None:
        raise NotFound("attachment not found")
    return dict(row)


async def reply_target(conn: asyncpg.Connection, message_id: str,
                       chat_id: str) -> dict[str, str]:
    """What a reply to `message_id` names: our id and the provider's (an
    inbound message's own, or the id the provider gave our message when it
    was sent); `Invalid` unless it is a message of this chat the provider knows."""
    try:
        UUID(message_id)
    except ValueError:
        raise Invalid("reply_to is not a message id", field="reply_to") from None
    external = await conn.fetchval(
        "SELECT coalesce(external_id, metadata->>'provider_message_id') FROM messages"
        " WHERE id = $1 AND chat_id = $2", message_id, chat_id)
    if external is None:
        raise Invalid("reply_to is not a message of this chat that was delivered",
                      field="reply_to")
    return {"message_id": message_id, "external_id": str(external)}


# Files a message came with that are neither fetched nor refused, `$1`
# seconds after they were stored (the chat fetches at once; these are the
# ones a dying host left), across orgs: the owner's connection.
UNFETCHED = """
SELECT a.organization_id, m.chat_id, a.message_id FROM message_attachments a
JOIN messages m ON m.id = a.message_id
WHERE a.provider_file_id IS NOT NULL AND a.stored_at IS NULL AND a.error IS NULL
  AND a.created_at <= localtimestamp - make_interval(secs => $1)
ORDER BY a.created_at LIMIT $2
"""


async def unfetched(conn: asyncpg.Connection, grace: float,
                    limit: int) -> dict[tuple[str, str], list[str]]:
    """(org, chat) -> ids of messages with files left unfetched."""
    found: dict[tuple[str, str], list[str]] = {}
    for row in await conn.fetch(UNFETCHED, grace, limit):
        ids = found.setdefault((str(row["organization_id"]), str(row["chat_id"])), [])
        if str(row["message_id"]) not in ids:
            ids.append(str(row["message_id"]))
    return found


async def files_to_fetch(conn: asyncpg.Connection,
                         message_ids: list[str]) -> dict[str, list[Attachment]]:
    """These messages' attachments not fetched yet, as the channel named them."""
    rows = await conn.fetch(
        "SELECT message_id, file_url, file_name, file_type, file_size, kind, provider_file_id"
        " FROM message_attachments WHERE message_id = ANY($1::uuid[])"
        " AND provider_file_id IS NOT NULL AND stored_at IS NULL AND error IS NULL"
        " ORDER BY created_at, id", message_ids)
    found: dict[str, list[Attachment]] = {}
    for r in rows:
        found.setdefault(str(r["message_id"]), []).append(Attachment(
            url=r["file_url"], name=r["file_name"], mime_type=r["file_type"],
            size=r["file_size"], kind=r["kind"], provider_id=r["provider_file_id"]))
    return found


async def chat_of(conn: asyncpg.Connection, message_id: UUID | str) -> str:
    """The chat of a message of this org (`NotFound` otherwise)."""
    found = await conn.fetchval("SELECT chat_id FROM messages WHERE id = $1::uuid",
                                str(message_id))
    if found is None:
        raise NotFound("message not found")
    return str(found)

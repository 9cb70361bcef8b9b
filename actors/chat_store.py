"""The chat's rows: the statements a ChatActor turn hands to the group
committer, the batched activation query, and the ids derived from where a
message comes from (same thread, same chat; same provider message, same row)."""
from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from actors.runtime.actor import VirtualActor
from core.messages import InboundMessage
from storage.loader import BatchLoader

RECENT = 20
SEEN = 500  # external ids remembered for in-memory dedup
Key = tuple[str, str]  # (org_id, chat_id)
IDS = uuid.UUID("6f1d2c9e-7d0b-4d43-9a51-2f9a1c3b5e10")  # namespace for derived ids

CHAT_SQL = f"""
SELECT c.id, c.contact_id, c.channel, c.channel_thread_id, c.integration_id,
       c.last_message_at, c.last_inbound_at, c.metadata,
       (SELECT count(*) FROM messages m
         WHERE m.chat_id = c.id AND m.is_incoming AND NOT m.is_read) AS unread,
       (SELECT coalesce(jsonb_agg(r ORDER BY r.created_at, r.id), '[]'::jsonb) FROM (
          SELECT m.id, m.sender_type, m.content, m.is_incoming, m.status, m.created_at
          FROM messages m WHERE m.chat_id = c.id
          ORDER BY m.created_at DESC, m.id DESC LIMIT {RECENT}) r) AS recent,
       (SELECT coalesce(array_agg(x.external_id), '{{}}') FROM (
          SELECT m.external_id FROM messages m
          WHERE m.chat_id = c.id AND m.is_incoming AND m.external_id IS NOT NULL
          ORDER BY m.created_at DESC, m.id DESC LIMIT {SEEN}) x) AS seen,
       (SELECT coalesce(jsonb_agg(p ORDER BY p.created_at, p.id), '[]'::jsonb) FROM (
          SELECT m.id, m.content, m.created_at, m.delivery_attempts AS attempts,
                 coalesce(extract(epoch FROM m.next_attempt_at - localtimestamp), 0)::float8 AS wait
          FROM messages m
          WHERE m.chat_id = c.id AND NOT m.is_incoming AND m.status = 'pending') p) AS pending
FROM chats c WHERE c.id = ANY($1::uuid[])
"""

FIND_CONTACT = """
SELECT id FROM contacts
WHERE id = $1 OR ($2::text IS NOT NULL AND lower(email) = lower($2))
   OR ($3::text IS NOT NULL AND phone = $3)
ORDER BY (id = $1) DESC LIMIT 1
"""

INSERT_CONTACT = """
WITH c AS (
  INSERT INTO contacts (id, organization_id, first_name, email, phone, telegram_username,
                        source, metadata)
  VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING RETURNING id)
INSERT INTO events (organization_id, event_type, entity_type, entity_id, payload)
SELECT $2, 'contact.created', 'contact', c.id, $9 FROM c
"""

INSERT_CHAT = """
WITH c AS (
  INSERT INTO chats (id, organization_id, contact_id, channel, channel_thread_id,
                     integration_id, title, is_unread, created_at, updated_at)
  VALUES ($1, $2, $3, $4, $5, $6, $7, false, $8, $8) ON CONFLICT DO NOTHING RETURNING id)
INSERT INTO events (organization_id, event_type, entity_type, entity_id, chat_id, payload)
SELECT $2, 'chat.created', 'chat', c.id, c.id, $9 FROM c
"""

INSERT_INBOUND = """
WITH m AS (
  INSERT INTO messages (id, chat_id, organization_id, sender_type, content, is_incoming,
                        external_id, status, metadata, created_at)
  VALUES ($1, $2, $3, 'contact', $4, true, $5, 'delivered', $6, $7)
  ON CONFLICT DO NOTHING RETURNING id),
c AS (
  UPDATE chats SET last_message_at = $7, last_inbound_at = $7, is_unread = true,
                   unread_count = unread_count + 1, updated_at = $7
  WHERE id = $2 AND EXISTS (SELECT 1 FROM m))
INSERT INTO events (organization_id, event_type, entity_type, entity_id, chat_id, payload)
SELECT $3, 'message.received', 'message', m.id, $2, $8 FROM m
"""

INSERT_OUTBOUND = """
WITH m AS (
  INSERT INTO messages (id, chat_id, organization_id, sender_type, sender_id, content,
                        is_incoming, is_read, status, ai_agent_id, metadata, created_at)
  VALUES ($1, $2, $3, $4, $5, $6, false, true, 'pending', $7, $8, $9)
  ON CONFLICT DO NOTHING RETURNING id),
c AS (
  UPDATE chats SET last_message_at = $9, updated_at = $9
  WHERE id = $2 AND EXISTS (SELECT 1 FROM m))
INSERT INTO events (organization_id, event_type, entity_type, entity_id, chat_id, user_id,
                    payload)
SELECT $3, 'message.created', 'message', m.id, $2, $10, $11 FROM m
"""

UPDATE_STATUS = """
WITH u AS (
  UPDATE messages SET status = $3,
         metadata = coalesce(metadata, '{}'::jsonb) || $4::jsonb,
         delivery_attempts = greatest(delivery_attempts, $7), next_attempt_at = NULL
  WHERE id = $1 AND bidi_status_advances(status, $3) RETURNING id)
INSERT INTO events (organization_id, event_type, entity_type, entity_id, chat_id, payload)
SELECT $2, t.event_type, 'message', u.id, $5, $6
FROM u, (VALUES (1, 'message.status.updated'), (2, 'message.sent')) t(n, event_type)
WHERE t.n = 1 OR $3 = 'sent' ORDER BY t.n
"""

# A retryable failure: the message stays pending, due again at $4.
SCHEDULE_RETRY = """
UPDATE messages SET delivery_attempts = $3, next_attempt_at = $4,
       metadata = coalesce(metadata, '{}'::jsonb) || $5::jsonb
WHERE id = $1 AND organization_id = $2 AND status = 'pending'
"""

# Outbound messages of this chat still pending, and in how many seconds
# each is due (the sweeper's or an activation's resend).
SELECT_PENDING = """
SELECT id, content, delivery_attempts AS attempts,
       coalesce(extract(epoch FROM next_attempt_at - localtimestamp), 0)::float8 AS wait
FROM messages WHERE id = ANY($1::uuid[]) AND chat_id = $2 AND NOT is_incoming
  AND status = 'pending' ORDER BY created_at, id
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

MESSAGE_STORED = "SELECT EXISTS (SELECT 1 FROM messages WHERE id = $1)"

SELECT_MESSAGE = """
SELECT id, chat_id, sender_type, sender_id, content, is_incoming, is_read, status,
       external_id, created_at FROM messages WHERE id = $1 AND chat_id = $2
"""


def derived_id(*parts: str) -> str:
    return str(uuid.uuid5(IDS, "\x1f".join(parts)))


def chat_id_for(message: InboundMessage) -> str:
    """A conversation's chat id follows from where it happens: same thread, same chat."""
    return derived_id("chat", message.organization_id, message.channel,
                      message.integration_id, message.thread_id)


def contact_id_for(message: InboundMessage) -> str:
    return derived_id("contact", message.organization_id, message.channel,
                      message.integration_id, message.sender.id)


def message_view(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, UUID) else v) for k, v in row.items()}


def chat_loader(actor: VirtualActor) -> BatchLoader[Key, dict[str, Any]]:
    db = actor.ctx.db

    async def fetch(keys: Sequence[Key]) -> dict[Key, dict[str, Any]]:
        by_org: dict[str, list[str]] = {}
        for org_id, chat_id in keys:
            by_org.setdefault(org_id, []).append(chat_id)
        found: dict[Key, dict[str, Any]] = {}
        assert db is not None
        for org_id, chat_ids in by_org.items():
            async with db.tenant_tx(org_id) as conn:
                for row in await conn.fetch(CHAT_SQL, chat_ids):
                    found[(org_id, str(row["id"]))] = dict(row)
        return found

    return BatchLoader(fetch)

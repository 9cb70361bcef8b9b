"""A sent message's news: its delivery status moved by our send (and
`message.sent`), the provider's statuses found by its id there, a contact's
reactions, and a retry due later; the writes a chat actor hands to the group
committer. Statuses only move forward (`bidi_status_advances`)."""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from core.messages import Reaction, StatusUpdate
from storage.committer import Write

UPDATE_STATUS = """
WITH u AS (
  UPDATE messages SET status = $3,
         -- the provider's id, by which its later statuses and reactions find
         -- the message (unless another message of the chat has that id)
         external_id = CASE WHEN $8::text IS NOT NULL AND NOT EXISTS (
           SELECT 1 FROM messages o WHERE o.chat_id = $5 AND o.external_id = $8)
           THEN $8 ELSE external_id END,
         metadata = coalesce(metadata, '{}'::jsonb) || $4::jsonb,
         delivery_attempts = greatest(delivery_attempts, $7), next_attempt_at = NULL
  WHERE id = $1 AND bidi_status_advances(status, $3) RETURNING id)
INSERT INTO events (organization_id, event_type, entity_type, entity_id, chat_id, payload)
SELECT $2, t.event_type, 'message', u.id, $5, $6
FROM u, (VALUES (1, 'message.status.updated'), (2, 'message.sent')) t(n, event_type)
WHERE t.n = 1 OR $3 = 'sent' ORDER BY t.n
"""

# The provider's news of one of our messages, found by its id at the
# provider ($1) in its chat ($3); a status never moves back. Echoes $1 when
# a message moved.
PROVIDER_STATUS = """
WITH u AS (
  UPDATE messages SET status = $4, metadata = coalesce(metadata, '{}'::jsonb) || $5::jsonb
  WHERE chat_id = $3 AND external_id = $1 AND NOT is_incoming
    AND bidi_status_advances(status, $4) RETURNING id),
e AS (
  INSERT INTO events (organization_id, event_type, entity_type, entity_id, chat_id, payload)
  SELECT $2, 'message.status.updated', 'message', u.id, $3,
         $6::jsonb || jsonb_build_object('id', u.id) FROM u)
SELECT $1::text FROM u
"""

# A contact's reaction ($1: the reaction's own id) to a message of the chat
# ($3), ours or theirs, found by its provider id ($4): kept on it under the
# sender ($5), one reaction each, an empty emoji taking it back. A
# redelivered or older reaction changes nothing. Echoes $1 when it changed.
REACTION = """
WITH u AS (
  UPDATE messages SET metadata = jsonb_set(coalesce(metadata, '{}'::jsonb), '{reactions}',
           coalesce(metadata->'reactions', '{}'::jsonb) || jsonb_build_object($5::text, $6::jsonb))
  WHERE chat_id = $3 AND external_id = $4
    AND metadata->'reactions'->$5->>'reaction_id' IS DISTINCT FROM $1
    AND coalesce(metadata->'reactions'->$5->>'at' <= $7, true)
  RETURNING id),
e AS (
  INSERT INTO events (organization_id, event_type, entity_type, entity_id, chat_id, payload)
  SELECT $2, 'message.reaction.updated', 'message', u.id, $3,
         $8::jsonb || jsonb_build_object('id', u.id) FROM u)
SELECT $1::text FROM u
"""

# A retryable failure: the message stays pending, due again at $4.
SCHEDULE_RETRY = """
UPDATE messages SET delivery_attempts = $3, next_attempt_at = $4,
       metadata = coalesce(metadata, '{}'::jsonb) || $5::jsonb
WHERE id = $1 AND organization_id = $2 AND status = 'pending'
"""


def status_write(org_id: str, chat_id: str, message_id: str, status: str,
                 extra: dict[str, Any], attempt: int, external_id: str | None = None) -> Write:
    """Move the status forward (never back), merging `extra` into the
    metadata; `message.status.updated`, and `message.sent` when sent.
    `external_id`: the provider's id for it, kept as its `external_id`."""
    payload = {"id": message_id, "chat_id": chat_id, "status": status, **extra}
    return Write(UPDATE_STATUS, (message_id, org_id, status, extra, chat_id, payload, attempt,
                                 external_id))


def provider_status_write(org_id: str, chat_id: str, update: StatusUpdate) -> Write:
    """The provider's status of one of our messages (by its id there); after
    COMMIT `.inserted` says whether a message moved."""
    at = update.at.isoformat() if update.at else None
    noted: dict[str, Any] = {f"{update.status}_at": at} if at else {}
    if update.status == "failed":
        noted["error"] = f"{update.error_code or 'failed'}: {update.error_title or ''}"[:500]
        noted["provider_error"] = {"code": update.error_code, "title": update.error_title}
    payload = {"chat_id": chat_id, "status": update.status, "external_id": update.external_id,
               **noted}
    return Write.reporting(PROVIDER_STATUS, (update.external_id, org_id, chat_id, update.status,
                                             noted, payload))


def reaction_write(org_id: str, chat_id: str, reaction: Reaction, at: datetime) -> Write:
    """`reaction` kept on the message it reacts to; after COMMIT `.inserted`
    says whether anything changed (False: a redelivery, an older reaction,
    or no such message)."""
    when = (reaction.at or at).astimezone(UTC).isoformat()  # one form: compared as text
    kept = {"emoji": reaction.emoji or None, "reaction_id": reaction.reaction_id, "at": when,
            "name": reaction.sender.name}
    payload = {"chat_id": chat_id, "external_id": reaction.external_id,
               "sender_id": reaction.sender.id, "emoji": reaction.emoji or None, "at": when}
    return Write.reporting(REACTION, (reaction.reaction_id, org_id, chat_id,
                                      reaction.external_id, reaction.sender.id, kept, when,
                                      payload))


def retry_write(org_id: str, message_id: str, attempt: int, due: datetime,
                error: str, sent_parts: int = 0) -> Write:
    """Keep a pending message pending, `attempt` tries made, due again at `due`
    (and how many parts of its split text went out already: a retry skips them)."""
    noted: dict[str, Any] = {"error": error[:500]}
    if sent_parts:
        noted["sent_parts"] = sent_parts
    return Write(SCHEDULE_RETRY, (message_id, org_id, attempt, due, noted))

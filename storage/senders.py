"""A chat's senders as CRM contacts: the contact a channel's sender is
(found by the derived id, an alias, the email or the phone), the writes
that create it on first contact, record the sender's other ids as its
aliases and keep the name and username the channel shows current.

Writes here are `storage.committer.Write`s, handed by the chat actor to its
host's group committer with the chat's own; each appends its event in the
same statement."""
from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from core.messages import InboundMessage
from storage.chats import alias_ids, contact_id_for
from storage.committer import Write

# Each way of knowing the sender is its own indexed lookup (the contact by
# the derived id, an alias of it, the ids the sender had on its other
# channels, the email, the phone; the last two by the keys of migration
# 021, which RLS lets an index serve): an OR of them cannot use the indexes
# together, and Postgres then read every contact of the org for each new
# chat (an org of 2,000 contacts: 2,000 rows read per first message).
# Best first: the derived id, its alias, the other ids, then the rest.
FIND_CONTACT = """
SELECT id, telegram_username, channel_name FROM (
  SELECT c.id, c.telegram_username, c.metadata->>'channel_name' AS channel_name, 0 AS rank
  FROM contacts c WHERE c.id = $1
  UNION ALL
  SELECT c.id, c.telegram_username, c.metadata->>'channel_name', 1
  FROM contact_aliases a JOIN contacts c ON c.id = a.contact_id WHERE a.alias_id = $1
  UNION ALL
  SELECT c.id, c.telegram_username, c.metadata->>'channel_name', 2
  FROM contacts c WHERE c.id = ANY($4::uuid[])
  UNION ALL
  SELECT c.id, c.telegram_username, c.metadata->>'channel_name', 3
  FROM contact_aliases a JOIN contacts c ON c.id = a.contact_id WHERE a.alias_id = ANY($4::uuid[])
  UNION ALL
  SELECT c.id, c.telegram_username, c.metadata->>'channel_name', 3
  FROM contacts c WHERE c.email_key = lower($2::text)
  UNION ALL
  SELECT c.id, c.telegram_username, c.metadata->>'channel_name', 3
  FROM contacts c WHERE c.phone_key = $3
  UNION ALL
  SELECT c.id, c.telegram_username, c.metadata->>'channel_name', 3
  FROM contacts c WHERE c.whatsapp_key = $3
) found ORDER BY rank LIMIT 1
"""

# The sender's profile as the channel shows it now: the username, and the
# name too unless someone gave the contact another one since ($4: the name
# the channel gave before).
UPDATE_PROFILE = """
WITH c AS (
  UPDATE contacts SET telegram_username = coalesce($3, telegram_username),
         first_name = CASE WHEN $4::text IS NOT NULL AND first_name = $4 AND $5::text IS NOT NULL
                      THEN $5 ELSE first_name END,
         metadata = coalesce(metadata, '{}'::jsonb) || jsonb_build_object('channel_name', $5::text),
         updated_at = now()
  WHERE id = $1 RETURNING id, first_name, telegram_username)
INSERT INTO events (organization_id, event_type, entity_type, entity_id, payload)
SELECT $2, 'contact.updated', 'contact', c.id,
       jsonb_build_object('id', c.id, 'first_name', c.first_name,
                          'telegram_username', c.telegram_username) FROM c
"""

INSERT_CONTACT = """
WITH c AS (
  INSERT INTO contacts (id, organization_id, first_name, email, phone, telegram_username,
                        source, metadata, telegram_chat_id, whatsapp_phone)
  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $10, $12) ON CONFLICT DO NOTHING RETURNING id),
-- The sender's other ids on this channel find this contact too.
a AS (
  INSERT INTO contact_aliases (organization_id, alias_id, contact_id)
  SELECT $2, alias, $1 FROM unnest($11::uuid[]) alias WHERE EXISTS (SELECT 1 FROM c)
  ON CONFLICT DO NOTHING)
INSERT INTO events (organization_id, event_type, entity_type, entity_id, payload)
SELECT $2, 'contact.created', 'contact', c.id, $9 FROM c
"""


MIN_PHONE_DIGITS = 7  # shorter is no phone number to match a person by


def phone_digits(phone: str | None) -> str | None:
    digits = "".join(c for c in phone or "" if c.isascii() and c.isdigit())
    return digits if len(digits) >= MIN_PHONE_DIGITS else None


@dataclass(frozen=True, slots=True)
class Profile:
    """A sender's contact, and their name and username as last seen."""

    contact_id: str
    name: str | None
    username: str | None


def find_args(message: InboundMessage) -> tuple[object, ...]:
    """FIND_CONTACT's arguments for the sender of `message`."""
    sender = message.sender
    return (contact_id_for(message), sender.email, phone_digits(sender.phone),
            alias_ids(message))


async def find_contact(conn: asyncpg.Connection, message: InboundMessage) -> Profile | None:
    """The contact `message` comes from: its derived id (the sender's id on
    this channel), or one with the sender's email or phone."""
    row = await conn.fetchrow(FIND_CONTACT, *find_args(message))
    if row is None:
        return None
    # The name the channel gave (None for a contact the CRM made: its name stays).
    return Profile(str(row["id"]), row["channel_name"], row["telegram_username"])


def profile_of(message: InboundMessage, contact_id: str) -> Profile:
    sender = message.sender
    return Profile(contact_id, _name(message), sender.username)


def _name(message: InboundMessage) -> str:
    sender = message.sender
    return sender.name or sender.username or sender.id


def contact_write(org_id: str, message: InboundMessage) -> Write:
    """A new contact for the sender of `message` (id `contact_id_for`)."""
    sender = message.sender
    contact_id = contact_id_for(message)
    first_name = _name(message)
    payload = {"id": contact_id, "first_name": first_name, "email": sender.email,
               "phone": sender.phone, "source": message.channel}
    telegram_chat_id = int(sender.id) if message.channel == "telegram" and \
        sender.id.lstrip("-").isdigit() else None
    return Write(INSERT_CONTACT, (
        contact_id, org_id, first_name, sender.email, sender.phone, sender.username,
        message.channel, {"channel_sender_id": sender.id, "channel_name": first_name},
        payload, telegram_chat_id, alias_ids(message),
        sender.phone if message.channel == "whatsapp" else None))


ALIASES = """
INSERT INTO contact_aliases (organization_id, alias_id, contact_id)
SELECT $1, alias, $2 FROM unnest($3::uuid[]) alias WHERE alias <> $2
ON CONFLICT DO NOTHING
"""


def alias_write(org_id: str, contact_id: str, message: InboundMessage) -> Write | None:
    """The sender's ids on this channel made aliases of `contact_id` (a CRM
    contact matched by phone or email), so that a later message finds it
    by id alone: one that names only another id of theirs (a WhatsApp user
    hiding their phone), or after the contact's phone changed. None: nothing
    to record."""
    ids = {contact_id_for(message), *alias_ids(message)} - {contact_id}
    return Write(ALIASES, (org_id, contact_id, sorted(ids))) if ids else None


def profile_write(org_id: str, before: Profile, message: InboundMessage) -> Write | None:
    """The contact's channel profile brought up to date (None: nothing changed)."""
    now = profile_of(message, before.contact_id)
    if (now.name, now.username) == (before.name, before.username):
        return None
    username = now.username if message.channel == "telegram" else None
    return Write(UPDATE_PROFILE, (before.contact_id, org_id, username, before.name, now.name))

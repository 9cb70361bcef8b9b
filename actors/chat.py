"""ChatActor: one conversation's hot state (recent messages, unread count,
contact, assigned agent, last inbound time) and the only writer of its
messages.

Inbound: a turn resolves (or creates) the contact and the chat, then hands
one statement per message to the host's group committer; the ask resolves
after COMMIT. Message ids are derived from the chat and the channel's dedup
key, so a redelivery maps to the same id and `ON CONFLICT DO NOTHING` keeps
one row and one event, however many copies arrive at once.

Outbound: a turn persists the message as `pending` (an `Idempotency-Key`
maps to a fixed id) and queues it; a per-chat delivery task sends queued
messages in order through the chat's channel and reports back with a
`Delivered` turn, which moves the status forward (`sent` or `failed`).
Pending messages found at activation are queued again, so a host crash
delays a send but never drops it (receivers dedup on `webhook-id`).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import msgspec

from actors.messages import GetState, Ping
from actors.runtime.actor import VirtualActor, on
from channels.base import ChannelError, Integration, integration_loader, sender_for
from core.errors import Invalid, NotFound
from core.messages import InboundMessage, OutboundMessage, Receipt
from storage.committer import Write
from storage.loader import BatchLoader

log = logging.getLogger(__name__)

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
          SELECT m.id, m.content, m.created_at FROM messages m
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
         metadata = coalesce(metadata, '{}'::jsonb) || $4::jsonb
  WHERE id = $1 AND bidi_status_advances(status, $3) RETURNING id)
INSERT INTO events (organization_id, event_type, entity_type, entity_id, chat_id, payload)
SELECT $2, t.event_type, 'message', u.id, $5, $6
FROM u, (VALUES (1, 'message.status.updated'), (2, 'message.sent')) t(n, event_type)
WHERE t.n = 1 OR $3 = 'sent' ORDER BY t.n
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

SELECT_MESSAGE = """
SELECT id, chat_id, sender_type, sender_id, content, is_incoming, is_read, status,
       external_id, created_at FROM messages WHERE id = $1 AND chat_id = $2
"""


# -- messages -------------------------------------------------------------

class Inbound(msgspec.Struct, frozen=True):
    message: InboundMessage


class Send(msgspec.Struct, frozen=True):
    """Send `text` from a user (or an agent) to the chat's channel."""

    text: str
    user_id: str | None = None
    agent_id: str | None = None
    idempotency_key: str | None = None


class MarkRead(msgspec.Struct, frozen=True):
    user_id: str | None = None


class Delivered(msgspec.Struct, frozen=True):
    """The delivery task's report: a receipt, or why it failed."""

    message_id: str
    receipt: Receipt | None = None
    error: str | None = None


# -- helpers --------------------------------------------------------------

def derived_id(*parts: str) -> str:
    return str(uuid.uuid5(IDS, "\x1f".join(parts)))


def chat_id_for(message: InboundMessage) -> str:
    """A conversation's chat id follows from where it happens: same thread, same chat."""
    return derived_id("chat", message.organization_id, message.channel,
                      message.integration_id, message.thread_id)


def contact_id_for(message: InboundMessage) -> str:
    return derived_id("contact", message.organization_id, message.channel,
                      message.integration_id, message.sender.id)


def now_utc() -> datetime:
    return datetime.now(UTC)


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


class UnreadMirror:
    """Unread counts in Redis (`chat:{id}:unread_count`), written in batches:
    the latest value per chat wins, one pipeline every few milliseconds."""

    def __init__(self, redis: Any, delay: float = 0.005) -> None:
        self.redis = redis
        self.delay = delay
        self.pending: dict[str, int] = {}
        self.task: asyncio.Task[None] | None = None

    def set(self, chat_id: str, count: int) -> None:
        self.pending[chat_id] = count
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        await asyncio.sleep(self.delay)
        while self.pending:
            batch, self.pending = self.pending, {}
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for chat_id, count in batch.items():
                        pipe.set(f"chat:{chat_id}:unread_count", count)
                    await pipe.execute()
            except Exception as exc:  # Postgres holds the truth; Redis is a mirror
                log.warning("unread mirror write failed: %s", exc)


# -- the actor ------------------------------------------------------------

class ChatActor(VirtualActor):
    kind = "chat"
    __slots__ = ("exists", "contact_id", "channel", "thread_id", "integration_id", "unread",
                 "last_message_at", "last_inbound_at", "assigned_agent_id", "recent",
                 "seen", "seen_order", "outbox", "sender", "touches")

    async def on_activate(self) -> None:
        try:
            UUID(self.key), UUID(self.org_id)
        except ValueError:
            raise Invalid(f"chat key {self.key!r} is not a UUID") from None
        loader = self.ctx.loader("chat", lambda: chat_loader(self))
        row = await loader.load((self.org_id, self.key))
        self.touches = 0
        self.outbox: deque[dict[str, Any]] = deque()
        self.sender: asyncio.Task[None] | None = None
        self.seen: set[str] = set()
        self.seen_order: deque[str] = deque()
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT)
        self.exists = row is not None
        if row is None:  # not yet: the first inbound message creates it
            self.contact_id = self.channel = self.thread_id = self.integration_id = None
            self.unread, self.last_message_at, self.last_inbound_at = 0, None, None
            self.assigned_agent_id = None
            return
        self.contact_id = str(row["contact_id"]) if row["contact_id"] else None
        self.channel = row["channel"]
        self.thread_id = row["channel_thread_id"]
        self.integration_id = str(row["integration_id"]) if row["integration_id"] else None
        self.unread = int(row["unread"])
        self.last_message_at: datetime | None = row["last_message_at"]
        self.last_inbound_at: datetime | None = row["last_inbound_at"]
        self.assigned_agent_id = (row["metadata"] or {}).get("assigned_agent_id")
        self.recent.extend(row["recent"] or ())
        for external_id in reversed(row["seen"] or ()):
            self._remember(external_id)
        for pending in row["pending"] or ():
            self.outbox.append({"id": pending["id"], "content": pending["content"]})
        if self.outbox:
            self._start_sender()

    def can_passivate(self) -> bool:
        return not self.outbox

    async def on_deactivate(self) -> None:
        # Only at shutdown can sends be in flight here: they stay `pending` in
        # Postgres and are queued again by the next activation.
        if self.sender is not None and not self.sender.done():
            self.sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.sender

    def _require(self) -> None:
        if not self.exists:
            raise NotFound(f"chat {self.key} not found")

    def _remember(self, external_id: str) -> None:
        if external_id in self.seen:
            return
        self.seen.add(external_id)
        self.seen_order.append(external_id)
        if len(self.seen_order) > SEEN:
            self.seen.discard(self.seen_order.popleft())

    async def _commit(self, writes: list[Write]) -> None:
        committer = self.ctx.committer
        assert committer is not None
        await committer.commit(self.org_id, writes)

    def _mirror_unread(self) -> None:
        if self.ctx.redis is None:
            return
        mirror = self.ctx.loader("unread-mirror", lambda: UnreadMirror(self.ctx.redis))
        mirror.set(self.key, self.unread)

    # -- inbound ----------------------------------------------------------

    @on(Inbound)
    async def inbound(self, command: Inbound) -> dict[str, Any]:
        message = command.message
        if message.organization_id != self.org_id or chat_id_for(message) != self.key:
            raise Invalid("this message belongs to another chat")
        message_id = derived_id("message", self.key, message.external_id)
        answer = {"id": message_id, "chat_id": self.key, "duplicate": True}
        if message.external_id in self.seen:
            return answer
        at = message.received_at or now_utc()
        writes: list[Write] = []
        if not self.exists:
            writes.extend(await self._creation(message, at))
        sender = msgspec.to_builtins(message.sender)
        metadata = {"sender": sender, "thread_id": message.thread_id,
                    "integration_id": message.integration_id}
        if message.attachments:
            metadata["attachments"] = msgspec.to_builtins(message.attachments)
        if message.sent_at is not None:
            metadata["sent_at"] = message.sent_at.isoformat()
        view = {"id": message_id, "chat_id": self.key, "contact_id": self.contact_id,
                "channel": message.channel, "sender_type": "contact", "sender": sender,
                "content": message.text, "is_incoming": True, "status": "delivered",
                "external_id": message.external_id, "created_at": at.isoformat()}
        writes.append(Write(INSERT_INBOUND, (
            message_id, self.key, self.org_id, message.text, message.external_id, metadata, at,
            view)))
        await self._commit(writes)
        self.exists = True
        self._remember(message.external_id)
        self.unread += 1
        self.last_message_at = self.last_inbound_at = at
        self.recent.append({"id": message_id, "sender_type": "contact",
                            "content": message.text, "is_incoming": True,
                            "status": "delivered", "created_at": at})
        self._mirror_unread()
        answer["duplicate"] = False
        return answer

    async def _creation(self, message: InboundMessage, at: datetime) -> list[Write]:
        """The writes that create this chat (and its contact when new)."""
        db = self.ctx.db
        assert db is not None
        sender = message.sender
        wanted = contact_id_for(message)
        async with db.tenant_tx(self.org_id) as conn:
            found = await conn.fetchval(FIND_CONTACT, wanted, sender.email, sender.phone)
        writes: list[Write] = []
        if found is None:
            names = {"first_name": sender.name or sender.username or sender.id}
            payload = {"id": wanted, **names, "email": sender.email, "phone": sender.phone,
                       "source": message.channel}
            writes.append(Write(INSERT_CONTACT, (
                wanted, self.org_id, names["first_name"], sender.email, sender.phone,
                sender.username, message.channel, {"channel_sender_id": sender.id}, payload)))
            self.contact_id = wanted
        else:
            self.contact_id = str(found)
        self.channel, self.thread_id = message.channel, message.thread_id
        self.integration_id = message.integration_id
        title = sender.name or sender.username or message.thread_id
        writes.append(Write(INSERT_CHAT, (
            self.key, self.org_id, self.contact_id, message.channel, message.thread_id,
            message.integration_id, title[:255], at,
            {"id": self.key, "contact_id": self.contact_id, "channel": message.channel,
             "thread_id": message.thread_id, "title": title})))
        return writes

    # -- reading ----------------------------------------------------------

    @on(MarkRead)
    async def mark_read(self, command: MarkRead) -> dict[str, Any]:
        self._require()
        if self.unread == 0:
            return {"chat_id": self.key, "unread": 0, "changed": False}
        at = now_utc()
        await self._commit([Write(MARK_READ, (
            self.key, self.org_id, at, command.user_id,
            {"chat_id": self.key, "read_by": command.user_id, "read_at": at.isoformat()}))])
        self.unread = 0
        self._mirror_unread()
        return {"chat_id": self.key, "unread": 0, "changed": True}

    # -- outbound ---------------------------------------------------------

    @on(Send)
    async def send(self, command: Send) -> dict[str, Any]:
        self._require()
        if not command.text.strip():
            raise Invalid("a message needs text", field="content")
        if command.idempotency_key:
            message_id = derived_id("outbound", self.key, command.idempotency_key)
            db = self.ctx.db
            assert db is not None
            async with db.tenant_tx(self.org_id) as conn:
                row = await conn.fetchrow(SELECT_MESSAGE, message_id, self.key)
            if row is not None:
                return {**message_view(dict(row)), "duplicate": True}
        else:
            message_id = str(uuid.uuid4())
        at = now_utc()
        sender_type = "agent" if command.agent_id else "user"
        view = {"id": message_id, "chat_id": self.key, "sender_type": sender_type,
                "sender_id": command.user_id, "content": command.text, "is_incoming": False,
                "is_read": True, "status": "pending", "external_id": None,
                "created_at": at.isoformat()}
        await self._commit([Write(INSERT_OUTBOUND, (
            message_id, self.key, self.org_id, sender_type, command.user_id, command.text,
            command.agent_id, {}, at, command.user_id, view))])
        self.last_message_at = at
        self.recent.append({"id": message_id, "sender_type": sender_type,
                            "content": command.text, "is_incoming": False,
                            "status": "pending", "created_at": at})
        self.outbox.append({"id": message_id, "content": command.text})
        self._start_sender()
        return {**view, "created_at": at, "duplicate": False}

    def _start_sender(self) -> None:
        if self.sender is None or self.sender.done():
            self.sender = asyncio.create_task(self._deliver_all())

    async def _deliver_all(self) -> None:
        """Send queued messages one at a time, in order, reporting each back."""
        system = self.ctx.system
        while self.outbox:
            item = self.outbox[0]
            report = await self._deliver(item)
            self.outbox.popleft()
            if system is None:
                continue
            try:
                await system.ask(self.kind, self.org_id, self.key, report)
            except Exception as exc:  # stays pending; re-queued at next activation
                log.warning("chat %s: recording delivery of %s failed: %s",
                            self.key, item["id"], exc)

    async def _deliver(self, item: dict[str, Any]) -> Delivered:
        message_id = str(item["id"])
        try:
            integration = await self._integration()
            channel = sender_for(self.ctx, integration.type)
            receipt = await channel.send(integration, OutboundMessage(
                organization_id=self.org_id, integration_id=integration.id,
                channel=integration.type, thread_id=self.thread_id or "",
                message_id=message_id, chat_id=self.key, text=item["content"]))
        except ChannelError as exc:
            return Delivered(message_id, error=str(exc))
        return Delivered(message_id, receipt=receipt)

    async def _integration(self) -> Integration:
        if self.integration_id is None:
            raise ChannelError(f"chat {self.key} has no channel integration to send through")
        loader = self.ctx.loader("integration", lambda: integration_loader(self.ctx))
        found = await loader.load((self.org_id, self.integration_id))
        if found is None or not found.is_active:
            raise ChannelError(f"integration {self.integration_id} is missing or inactive")
        return found  # type: ignore[no-any-return]

    @on(Delivered)
    async def delivered(self, report: Delivered) -> str:
        status = "sent" if report.receipt is not None else "failed"
        extra: dict[str, Any] = {}
        if report.receipt is not None:
            extra["provider_message_id"] = report.receipt.external_id
        if report.error:
            extra["error"] = report.error[:500]
        payload = {"id": report.message_id, "chat_id": self.key, "status": status, **extra}
        await self._commit([Write(UPDATE_STATUS, (
            report.message_id, self.org_id, status, extra, self.key, payload))])
        for entry in self.recent:
            if str(entry["id"]) == report.message_id:
                entry["status"] = status
        return status

    # -- state ------------------------------------------------------------

    @on(GetState)
    def state(self, _: GetState) -> dict[str, Any]:
        self._require()
        return {
            "chat_id": self.key,
            "organization_id": self.org_id,
            "contact_id": self.contact_id,
            "channel": self.channel,
            "thread_id": self.thread_id,
            "integration_id": self.integration_id,
            "unread": self.unread,
            "last_message_at": self.last_message_at,
            "last_inbound_at": self.last_inbound_at,
            "assigned_agent_id": self.assigned_agent_id,
            "recent": list(self.recent),
            "touches": self.touches,
        }

    @on(Ping)
    def ping(self, message: Ping) -> int:
        self._require()
        self.touches += 1
        return self.touches

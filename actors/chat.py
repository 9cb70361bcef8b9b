"""ChatActor: one conversation's hot state (recent messages, unread count,
contact, assigned agent, last inbound time) and the only writer of its
messages.

Inbound: a turn resolves (or creates) the contact and the chat, then hands
one statement per message to the host's group committer; the ask resolves
after COMMIT. Message ids are derived from the chat and the channel's dedup
key, so a redelivery maps to the same id and `ON CONFLICT DO NOTHING` keeps
one row and one event, however many copies arrive at once. The actor
remembers the last `SEEN` external ids to answer most redeliveries without
a write; an older one is told by the write itself, which reports that it
inserted nothing: a duplicate, counted once.

The statements and ids are `storage.chats` and `storage.messages`; this
module decides when to run them and keeps the hot state in step.

Outbound: a turn persists the message as `pending` (an `Idempotency-Key`
maps to a fixed id) and queues it; a per-chat delivery task sends queued
messages in order through the chat's channel and reports back with a
`Delivered` turn, which moves the status forward (`sent` or `failed`). A
retryable failure keeps the message `pending`, stores the attempt count and
when the next attempt is due (`outbound_retry_schedule`, jittered, or the
receiver's Retry-After), and queues it again then. Pending messages found at
activation are queued again when due, and the outbox sweeper (actors.outbox)
nudges chats whose host died with a `Resend`, so a host crash delays a send
but never drops it (the message id is the `webhook-id`: receivers dedup).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import msgspec

from actors.files import fetch_files
from actors.messages import GetState, Ping
from actors.runtime.actor import VirtualActor, on
from actors.unread import UnreadMirror
from channels.base import (
    CREDENTIALS_REFUSED,
    ChannelError,
    integration_loader,
    retry_delay,
    sender_for,
)
from core.errors import Invalid, NotFound, Unreachable
from core.messages import (
    Attachment,
    InboundMessage,
    MessageEdit,
    OutboundMessage,
    Receipt,
    ThreadState,
)
from core.settings import RETRY_SCHEDULE
from storage import chats, integrations, messages
from storage.audit import Actor
from storage.committer import FOREIGN_KEY_VIOLATION, CommitError, Write
from storage.integrations import Integration

log = logging.getLogger(__name__)

RECENT = 20  # messages kept hot
SEEN = 500  # external ids remembered for in-memory dedup
TYPING_EVERY = 4.0  # seconds; Telegram shows a chat action for about 5


# -- messages -------------------------------------------------------------

class Inbound(msgspec.Struct, frozen=True):
    message: InboundMessage


class Edit(msgspec.Struct, frozen=True):
    edit: MessageEdit


class SetReachable(msgspec.Struct, frozen=True):
    state: ThreadState


class FetchFiles(msgspec.Struct, frozen=True):
    """Fetch the files of these messages not fetched yet (the sweeper's nudge)."""

    message_ids: tuple[str, ...]


class Reload(msgspec.Struct, frozen=True):
    """Drop the cached state for Postgres's (its contacts were merged, say)."""


class Send(msgspec.Struct, frozen=True):
    """Send `text` from a user (or an agent) to the chat's channel."""

    text: str
    user_id: str | None = None
    agent_id: str | None = None
    idempotency_key: str | None = None
    reply_to: str | None = None  # a message of this chat it answers


class MarkRead(msgspec.Struct, frozen=True):
    user_id: str | None = None


class Delivered(msgspec.Struct, frozen=True):
    """The delivery task's report on attempt number `attempt`: a receipt, or
    why it failed and whether trying again may work."""

    message_id: str
    receipt: Receipt | None = None
    error: str | None = None
    retryable: bool = False
    retry_after: float | None = None
    attempt: int = 1
    unreachable: bool = False  # the recipient is gone (ChannelError.unreachable)
    reason: str | None = None  # ChannelError.reason
    sent_parts: int = 0  # ChannelError.sent_parts: what a retry skips


class Typing(msgspec.Struct, frozen=True):
    """Someone on our side is typing: show the contact, where the channel can."""

    user_id: str | None = None


class Resend(msgspec.Struct, frozen=True):
    """Deliver these pending messages when due, unless already on their way."""

    message_ids: tuple[str, ...]


# -- the actor ------------------------------------------------------------

def now_utc() -> datetime:
    return datetime.now(UTC)


class ChatActor(VirtualActor):
    kind = "chat"
    __slots__ = ("exists", "contact_id", "channel", "thread_id", "integration_id", "unread",
                 "last_message_at", "last_inbound_at", "assigned_agent_id", "recent",
                 "seen", "seen_order", "outbox", "sender", "touches", "sending", "timers",
                 "unreachable", "members", "fetching", "typed_at", "typing_task", "paused")

    async def on_activate(self) -> None:
        try:
            UUID(self.key), UUID(self.org_id)
        except ValueError:
            raise Invalid(f"chat key {self.key!r} is not a UUID") from None
        row = await self._load()
        self.touches = 0
        self.outbox: deque[dict[str, Any]] = deque()
        self.sending: dict[str, dict[str, Any]] = {}  # queued or in flight, until reported
        self.timers: dict[str, asyncio.TimerHandle] = {}  # retries not yet due
        self.sender: asyncio.Task[None] | None = None
        self.fetching: set[asyncio.Task[Any]] = set()  # files of stored messages
        # A message waiting for its retry holds the ones queued behind it: order.
        self.paused: str | None = None
        self.typed_at = float("-inf")
        self.typing_task: asyncio.Task[None] | None = None
        self._adopt(row)
        if row is None:
            return
        for pending in row["pending"] or ():
            self._resume(pending)

    async def _load(self) -> dict[str, Any] | None:
        loader = self.ctx.loader(
            "chat", lambda: chats.loader(self.ctx.db, recent=RECENT, seen=SEEN))
        return await loader.load((self.org_id, self.key))  # type: ignore[no-any-return]

    def _adopt(self, row: dict[str, Any] | None) -> None:
        """Take the chat's cached state from its row (None: not created yet)."""
        self.seen: set[str] = set()
        self.seen_order: deque[str] = deque()
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT)
        self.exists = row is not None
        self.unreachable: str | None = None
        # Senders seen since activation (a group has many): their contact and profile.
        self.members: dict[str, chats.Profile] = {}
        if row is None:  # not yet: the first inbound message creates it
            self.contact_id = self.channel = self.thread_id = self.integration_id = None
            self.unread = 0
            self.last_message_at: datetime | None = None
            self.last_inbound_at: datetime | None = None
            self.assigned_agent_id = None
            return
        self.unreachable = row["unreachable_reason"]
        self.contact_id = str(row["contact_id"]) if row["contact_id"] else None
        self.channel = row["channel"]
        self.thread_id = row["channel_thread_id"]
        self.integration_id = str(row["integration_id"]) if row["integration_id"] else None
        self.unread = int(row["unread"])
        self.last_message_at = row["last_message_at"]
        self.last_inbound_at = row["last_inbound_at"]
        self.assigned_agent_id = (row["metadata"] or {}).get("assigned_agent_id")
        self.recent.extend(row["recent"] or ())
        for external_id in reversed(row["seen"] or ()):
            self._remember(external_id)


    async def _reload(self) -> None:
        """Drop the cached state for Postgres's: the chat (or its contact) was
        deleted under this resident actor, e.g. by a contact's deletion."""
        log.info("chat %s: cached state is stale; reloading it", self.key)
        self._adopt(await self._load())

    def can_passivate(self) -> bool:
        # Retries waiting for their time do not keep a chat resident: they
        # are in Postgres, and the outbox sweeper wakes the chat when due.
        return not self.outbox and not self.sending and not self.fetching

    async def on_deactivate(self) -> None:
        # Only at shutdown can sends be in flight here: they stay `pending` in
        # Postgres and are queued again by the next activation.
        for timer in self.timers.values():
            timer.cancel()
        self.timers.clear()
        for task in list(self.fetching):  # what is not fetched stays a reference
            task.cancel()
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
        await self.ctx.committer.commit(self.org_id, writes)

    def _mirror_unread(self) -> None:
        mirror = self.ctx.loader("unread-mirror", lambda: UnreadMirror(self.ctx.redis))
        mirror.set(self.key, self.unread)

    # -- inbound ----------------------------------------------------------

    @on(Inbound)
    async def inbound(self, command: Inbound) -> dict[str, Any]:
        message = command.message
        if message.organization_id != self.org_id or chats.chat_id_for(message) != self.key:
            raise Invalid("this message belongs to another chat")
        message_id = messages.inbound_id(self.key, message.external_id)
        answer = {"id": message_id, "chat_id": self.key, "duplicate": True}
        if message.external_id in self.seen:
            if await self._stored(message_id):
                return answer
            await self._reload()  # deleted since it was seen
            if message.external_id in self.seen:
                return answer
        at = message.received_at or now_utc()
        try:
            stored = await self._store_inbound(message, message_id, at)
        except CommitError as exc:
            if exc.sqlstate != FOREIGN_KEY_VIOLATION:
                raise
            # The chat or its contact is gone (deleted since this actor cached
            # them): resolve both again, recreating them, and write once more.
            await self._reload()
            stored = await self._store_inbound(message, message_id, at)
        self.exists = True
        self._remember(message.external_id)
        if not stored:  # stored before, longer ago than `seen` remembers
            return answer
        self.unread += 1
        self.last_message_at = self.last_inbound_at = at
        self.recent.append({"id": message_id, "sender_type": "contact",
                            "content": message.text, "is_incoming": True,
                            "status": "delivered", "created_at": at})
        self._mirror_unread()
        if any(a.provider_id for a in message.attachments):
            self._fetch(message_id, message.attachments)
        answer["duplicate"] = False
        return answer

    @on(FetchFiles)
    async def fetch_files(self, command: FetchFiles) -> int:
        """Fetch what these messages' files still lack; how many messages."""
        if not self.exists:
            return 0
        started = 0
        for message_id in command.message_ids:
            if any(t.get_name() == f"files {message_id}" for t in self.fetching):
                continue  # on its way already
            async with self.ctx.db.tenant_tx(self.org_id) as conn:
                wanted = await messages.files_to_fetch(conn, message_id)
            if wanted:
                self._fetch(message_id, tuple(wanted))
                started += 1
        return started

    def _fetch(self, message_id: str, attachments: tuple[Attachment, ...]) -> None:
        """Fetch the files of a stored message, in the background."""
        async def run() -> None:
            try:
                integration = await self._integration()
                source = sender_for(self.ctx, integration.type)
                if not hasattr(source, "download"):
                    return
                settings = self.ctx.settings
                await fetch_files(source, integration, settings.data_dir,  # type: ignore[arg-type]
                                  settings.max_attachment_bytes, message_id,
                                  attachments, self._commit)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the message is stored; its files stay references
                log.warning("chat %s: fetching the files of %s failed: %s",
                            self.key, message_id, exc)

        task = asyncio.create_task(run(), name=f"files {message_id}")
        self.fetching.add(task)
        task.add_done_callback(self.fetching.discard)

    @on(Edit)
    async def edit(self, command: Edit) -> dict[str, Any]:
        """A new revision of a message; an edit of a message never received
        (sent before the integration existed, say) is stored as the message."""
        edit = command.edit
        if edit.organization_id != self.org_id or chats.chat_id_for(edit) != self.key:
            raise Invalid("this edit belongs to another chat")
        message_id = messages.inbound_id(self.key, edit.external_id)
        known = self.exists and (edit.external_id in self.seen or await self._stored(message_id))
        if not known:
            stored: dict[str, Any] = await self.inbound(Inbound(InboundMessage(
                organization_id=edit.organization_id, integration_id=edit.integration_id,
                channel=edit.channel, thread_id=edit.thread_id, external_id=edit.external_id,
                sender=edit.sender, text=edit.text, sent_at=edit.edited_at,
                attachments=edit.attachments)))
            return stored
        write = messages.revision_write(self.org_id, self.key, message_id, edit, now_utc())
        await self._commit([write])
        for item in self.recent:  # what an agent reads next is the text as it stands
            if item["id"] == message_id:
                item["content"] = edit.text
        return {"id": message_id, "chat_id": self.key, "duplicate": not write.inserted}

    @on(SetReachable)
    async def set_reachable(self, command: SetReachable) -> dict[str, Any]:
        state = command.state
        if state.organization_id != self.org_id or chats.chat_id_for(state) != self.key:
            raise Invalid("this state belongs to another chat")
        reason = None if state.reachable else (state.reason or "unreachable")
        if self.exists and reason != self.unreachable:
            await self._commit([chats.reachability_write(self.org_id, self.key, reason,
                                                         now_utc())])
            self.unreachable = reason
        return {"chat_id": self.key, "known": self.exists, "unreachable_reason": reason}

    @on(Reload)
    async def reload(self, _: Reload) -> bool:
        await self._reload()
        return self.exists

    async def _stored(self, message_id: str) -> bool:
        """Whether a message seen before is still stored (a redelivery after
        its chat was deleted must be stored again, not called a duplicate)."""
        async with self.ctx.db.tenant_tx(self.org_id) as conn:
            return await messages.stored(conn, message_id)

    async def _store_inbound(self, message: InboundMessage, message_id: str,
                             at: datetime) -> bool:
        """Commit `message` (creating the chat first if needed); whether it
        was new (False: its row was there already)."""
        writes: list[Write] = []
        if not self.exists:
            writes.extend(await self._creation(message, at))
        sender = await self._sender(message, writes)
        received = messages.inbound_write(self.org_id, self.key, sender.contact_id, message,
                                          message_id, at)
        await self._commit([*writes, received])
        self.members[message.sender.id] = chats.profile_of(message, sender.contact_id)
        return received.inserted

    async def _sender(self, message: InboundMessage, writes: list[Write]) -> chats.Profile:
        """The contact of `message`'s sender (each member of a group is one),
        creating it or bringing its profile up to date through `writes`."""
        known = self.members.get(message.sender.id)
        if known is None:
            async with self.ctx.db.tenant_tx(self.org_id) as conn:
                known = await chats.find_contact(conn, message)
            if known is None:
                writes.append(chats.contact_write(self.org_id, message))
                return chats.profile_of(message, chats.contact_id_for(message))
        update = chats.profile_write(self.org_id, known, message)
        if update is not None:
            writes.append(update)
        return known

    async def _creation(self, message: InboundMessage, at: datetime) -> list[Write]:
        """The writes that create this chat (and its contact when new)."""
        async with self.ctx.db.tenant_tx(self.org_id) as conn:
            found = await chats.find_contact(conn, message)
        writes: list[Write] = []
        if found is None:
            writes.append(chats.contact_write(self.org_id, message))
            self.contact_id = chats.contact_id_for(message)
            found = chats.profile_of(message, self.contact_id)
        else:
            self.contact_id = found.contact_id
        self.members[message.sender.id] = found  # the sender's contact is resolved
        self.channel, self.thread_id = message.channel, message.thread_id
        self.integration_id = message.integration_id
        writes.append(chats.chat_write(self.org_id, self.key, self.contact_id, message, at))
        return writes

    # -- reading ----------------------------------------------------------

    @on(MarkRead)
    async def mark_read(self, command: MarkRead) -> dict[str, Any]:
        self._require()
        if self.unread == 0:
            return {"chat_id": self.key, "unread": 0, "changed": False}
        await self._commit([chats.read_write(self.org_id, self.key, command.user_id,
                                             now_utc())])
        self.unread = 0
        self._mirror_unread()
        return {"chat_id": self.key, "unread": 0, "changed": True}

    # -- outbound ---------------------------------------------------------

    @on(Send)
    async def send(self, command: Send) -> dict[str, Any]:
        self._require()
        if self.unreachable:
            raise Unreachable(f"this conversation cannot be written to: {self.unreachable}")
        if not command.text.strip():
            raise Invalid("a message needs text", field="content")
        if command.idempotency_key:
            message_id = messages.outbound_id(self.key, command.idempotency_key)
            async with self.ctx.db.tenant_tx(self.org_id) as conn:
                found = await messages.find(conn, message_id, self.key)
            if found is not None:
                return {**found, "duplicate": True}
        else:
            message_id = str(uuid.uuid4())
        reply_to = None
        if command.reply_to is not None:
            async with self.ctx.db.tenant_tx(self.org_id) as conn:
                reply_to = await messages.reply_target(conn, command.reply_to, self.key)
        at = now_utc()
        view, write = messages.outbound_write(
            self.org_id, self.key, message_id, command.text, at,
            user_id=command.user_id, agent_id=command.agent_id, reply_to=reply_to)
        await self._commit([write])
        self.last_message_at = at
        self.recent.append({"id": message_id, "sender_type": view["sender_type"],
                            "content": command.text, "is_incoming": False,
                            "status": "pending", "created_at": at})
        self._queue({"id": message_id, "content": command.text, "attempts": 0,
                     "reply_to": reply_to["external_id"] if reply_to else None})
        return {**view, "created_at": at, "duplicate": False}

    def _resume(self, pending: Mapping[str, Any]) -> None:
        """A pending message read back from Postgres: queued now if due, else
        when due (`wait` seconds from now)."""
        item = {"id": str(pending["id"]), "content": pending["content"],
                "attempts": int(pending.get("attempts") or 0),
                "reply_to": pending.get("reply_to"),
                "sent_parts": int(pending.get("sent_parts") or 0)}
        wait = float(pending.get("wait") or 0.0)
        if wait <= 0:
            self._queue(item)
        elif item["id"] not in self.sending and item["id"] not in self.timers:
            self.timers[item["id"]] = asyncio.get_running_loop().call_later(
                wait, self._due, item)

    def _due(self, item: dict[str, Any]) -> None:
        self.timers.pop(item["id"], None)
        self._queue(item)

    def _queue(self, item: dict[str, Any]) -> None:
        """Queue a message for the delivery task, once: a message already on
        its way is not queued again (the sweeper may nudge a live chat). The
        message the queue waits for goes first."""
        if item["id"] in self.sending:
            return
        timer = self.timers.pop(item["id"], None)
        if timer is not None:
            timer.cancel()
        self.sending[item["id"]] = item
        if self.paused == item["id"]:
            self.paused = None
            self.outbox.appendleft(item)
        else:
            self.outbox.append(item)
        self._start_sender()

    def _start_sender(self) -> None:
        if self.sender is None or self.sender.done():
            self.sender = asyncio.create_task(self._deliver_all())

    async def _deliver_all(self) -> None:
        """Send queued messages one at a time, in order, reporting each back."""
        system = self.ctx.system
        while self.outbox and self.paused is None:
            item = self.outbox[0]
            report = await self._deliver(item)
            self.outbox.popleft()
            try:
                await system.ask(self.kind, self.org_id, self.key, report)
            except Exception as exc:  # stays pending: the sweeper sends it again
                self.sending.pop(item["id"], None)
                log.warning("chat %s: recording delivery of %s failed: %s",
                            self.key, item["id"], exc)

    async def _deliver(self, item: dict[str, Any]) -> Delivered:
        message_id = str(item["id"])
        attempt = int(item.get("attempts") or 0) + 1
        try:
            integration = await self._integration()
            channel = sender_for(self.ctx, integration.type)
            receipt = await channel.send(integration, OutboundMessage(
                organization_id=self.org_id, integration_id=integration.id,
                channel=integration.type, thread_id=self.thread_id or "",
                message_id=message_id, chat_id=self.key, text=item["content"],
                reply_to_external_id=item.get("reply_to"),
                sent_parts=int(item.get("sent_parts") or 0)))
        except ChannelError as exc:
            return Delivered(message_id, error=str(exc), retryable=exc.retryable,
                             retry_after=exc.retry_after, attempt=attempt,
                             unreachable=exc.unreachable, reason=exc.reason,
                             sent_parts=exc.sent_parts)
        except Exception as exc:  # our side (Postgres down, ...): try again later
            log.warning("chat %s: delivering %s failed: %s", self.key, message_id, exc)
            return Delivered(message_id, error=f"{type(exc).__name__}: {exc}",
                             retryable=True, attempt=attempt)
        return Delivered(message_id, receipt=receipt, attempt=attempt)

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
        item = self.sending.pop(report.message_id, None)
        if report.receipt is None and report.retryable:
            settings = self.ctx.settings
            schedule = settings.outbound_retry_schedule if settings else RETRY_SCHEDULE
            delay = retry_delay(schedule, report.attempt, report.retry_after)
            if delay is not None:
                await self._retry_later(report, item, delay)
                return "pending"
        status = "sent" if report.receipt is not None else "failed"
        extra: dict[str, Any] = {}
        if report.receipt is not None:
            extra["provider_message_id"] = report.receipt.external_id
        if report.error:
            extra["error"] = report.error[:500]
        writes = [messages.status_write(
            self.org_id, self.key, report.message_id, status, extra, report.attempt)]
        if report.unreachable and not self.unreachable:  # later sends fail fast
            self.unreachable = (report.error or "unreachable")[:200]
            writes.append(chats.reachability_write(self.org_id, self.key, self.unreachable,
                                                   now_utc()))
        await self._commit(writes)
        if report.reason == CREDENTIALS_REFUSED and self.integration_id:
            await self._integration_failed(report.error or "credentials refused")
        for entry in self.recent:
            if str(entry["id"]) == report.message_id:
                entry["status"] = status
        return status

    async def _integration_failed(self, error: str) -> None:
        """The provider refused the integration's credentials: it shows so
        (GET /v1/integrations/{id}) until someone switches it off and on."""
        async with self.ctx.db.tenant_tx(self.org_id) as conn:
            await integrations.failed(conn, Actor(self.org_id), str(self.integration_id),
                                      error[:500])

    async def _retry_later(self, report: Delivered, item: dict[str, Any] | None,
                           delay: float) -> None:
        """Keep the message pending; count the attempt and store when the next
        is due, so that a restart continues the schedule."""
        due = now_utc() + timedelta(seconds=delay)
        await self._commit([messages.retry_write(
            self.org_id, report.message_id, report.attempt, due, report.error or "",
            report.sent_parts)])
        if item is not None:  # else not ours in memory: the sweeper brings it back
            self.paused = report.message_id  # what was queued after it waits for it
            self._resume({**item, "attempts": report.attempt, "wait": max(delay, 1e-3),
                          "sent_parts": max(report.sent_parts,
                                            int(item.get("sent_parts") or 0))})

    @on(Resend)
    async def resend(self, command: Resend) -> int:
        """The sweeper's nudge: queue those of `message_ids` still pending and
        not already on their way (each when due); return how many were due."""
        if not self.exists:
            return 0
        wanted = [i for i in command.message_ids if i not in self.sending]
        if not wanted:
            return 0
        async with self.ctx.db.tenant_tx(self.org_id) as conn:
            rows = await messages.pending(conn, wanted, self.key)
        for row in rows:
            self._resume(row)
        return sum(1 for row in rows if row["wait"] <= 0)

    @on(Typing)
    async def typing(self, _: Typing) -> bool:
        """Show the contact that we are typing (Telegram's sendChatAction), at
        most every TYPING_EVERY seconds; whether it was asked for. The call
        to the provider runs beside the turn: the chat does not wait for it."""
        now = time.monotonic()
        if not self.exists or self.unreachable or now - self.typed_at < TYPING_EVERY:
            return False
        try:
            integration = await self._integration()
            show = getattr(sender_for(self.ctx, integration.type), "send_typing", None)
        except ChannelError:
            return False
        if show is None:  # the channel has no typing indicator
            return False
        self.typed_at = now
        self.typing_task = asyncio.create_task(self._show_typing(show, integration))
        return True

    async def _show_typing(self, show: Any, integration: Integration) -> None:
        try:
            await show(integration, self.thread_id or "")
        except ChannelError as exc:  # an indicator lost costs nothing worth a retry
            log.info("chat %s: typing indicator failed: %s", self.key, exc)

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
            "unreachable": self.unreachable,
            "recent": list(self.recent),
            "touches": self.touches,
        }

    @on(Ping)
    def ping(self, message: Ping) -> int:
        self._require()
        self.touches += 1
        return self.touches

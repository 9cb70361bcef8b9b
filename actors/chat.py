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

Outbound (replies, their delivery and retries) is a base class,
actors.outbound.ChatOutbound; the assigned agent, its runs and drafts
another, actors.chat_ai.ChatAI.
"""
from __future__ import annotations

import asyncio
import logging
from collections import deque
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec

from actors.chat_ai import ChatAI, automated
from actors.files import fetch_files
from actors.messages import GetState, Ping
from actors.outbound import WINDOWED, latest, now_utc
from actors.runtime.actor import on
from actors.unread import UnreadMirror
from channels.base import (
    sender_for,
)
from core.errors import Invalid
from core.messages import (
    Attachment,
    InboundMessage,
    MessageEdit,
    Reaction,
    ThreadState,
)
from storage import chats, messages, senders, statuses
from storage.committer import FOREIGN_KEY_VIOLATION, CommitError, Write

log = logging.getLogger(__name__)

RECENT = 20  # messages kept hot
SEEN = 500  # external ids remembered for in-memory dedup


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


class Reactions(msgspec.Struct, frozen=True):
    reactions: tuple[Reaction, ...]


class Reload(msgspec.Struct, frozen=True):
    """Drop the cached state for Postgres's (its contacts were merged, say)."""


class MarkRead(msgspec.Struct, frozen=True):
    user_id: str | None = None


# -- the actor ------------------------------------------------------------

class ChatActor(ChatAI):
    kind = "chat"
    __slots__ = ("exists", "contact_id", "channel", "thread_id", "integration_id", "unread",
                 "last_inbound_at", "recent", "seen", "seen_order",
                 "touches", "members", "fetching", "last_inbound_external",
                 "reading")

    async def on_activate(self) -> None:
        try:
            UUID(self.key), UUID(self.org_id)
        except ValueError:
            raise Invalid(f"chat key {self.key!r} is not a UUID") from None
        row = await self._load()
        self.touches = 0
        self._start_outbound()
        self._start_ai()
        # Messages whose files are being fetched, and the task fetching them.
        self.fetching: dict[str, asyncio.Task[None]] = {}
        self.reading: asyncio.Task[None] | None = None
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
        self.members: dict[str, senders.Profile] = {}
        self.last_inbound_external: str | None = None  # what a read receipt names
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
        profile = row["contact_profile"] or {}
        if self.contact_id and profile.get("sender"):  # its first sender needs no lookup
            self.members[profile["sender"]] = senders.Profile(
                self.contact_id, profile.get("name"), profile.get("username"))
        for external_id in reversed(row["seen"] or ()):
            self._remember(external_id)
        if row["seen"]:
            self.last_inbound_external = row["seen"][0]  # newest first


    async def _reload(self) -> None:
        """Drop the cached state for Postgres's: the chat (or its contact) was
        deleted under this resident actor, e.g. by a contact's deletion."""
        log.info("chat %s: cached state is stale; reloading it", self.key)
        self._adopt(await self._load())

    def can_passivate(self) -> bool:
        # Retries waiting for their time do not keep a chat resident: they
        # are in Postgres, and the outbox sweeper wakes the chat when due.
        # A chat waiting to go quiet stays: its facts are remembered then.
        return (not self.outbox and not self.sending and not self.fetching
                and not self.agent_running and self.quiet is None)

    async def on_deactivate(self) -> None:
        for task in list(self.fetching.values()):  # what is not fetched stays a reference
            task.cancel()
        await self._stop_ai()
        await self._stop_outbound()

    def _remember(self, external_id: str) -> None:
        if external_id in self.seen:
            return
        self.seen.add(external_id)
        self.seen_order.append(external_id)
        if len(self.seen_order) > SEEN:
            self.seen.discard(self.seen_order.popleft())

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
        created = not self.exists  # this message opens the chat
        if message.channel in WINDOWED and message.sent_at is not None:
            # The service window runs from when the contact wrote, not from
            # when the provider got it to us (a redelivery can be days late).
            at = min(at, message.sent_at)
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
        self.last_message_at = latest(self.last_message_at, at)
        self.last_inbound_at = latest(self.last_inbound_at, at)
        self.last_inbound_external = message.external_id
        self.recent.append({"id": message_id, "sender_type": "contact",
                            "content": message.text, "is_incoming": True,
                            "status": "delivered", "created_at": at})
        self._mirror_unread()
        if any(a.provider_id for a in message.attachments):
            self._fetch(message_id, message.attachments)
        if created and self.assigned_agent_id is None:
            await self._adopt_default_agent(message.integration_id)
        if not automated(message):
            self._agent_wanted("message.received")
        answer["duplicate"] = False
        return answer

    @on(FetchFiles)
    async def fetch_files(self, command: FetchFiles) -> int:
        """Fetch what these messages' files still lack; how many messages."""
        if not self.exists:
            return 0
        idle = [i for i in command.message_ids if i not in self.fetching]  # else on its way
        if not idle:
            return 0
        async with self.ctx.db.tenant_tx(self.org_id) as conn:
            wanted = await messages.files_to_fetch(conn, idle)
        for message_id, attachments in wanted.items():
            self._fetch(message_id, tuple(attachments))
        return len(wanted)

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
        self.fetching[message_id] = task
        task.add_done_callback(lambda _: self.fetching.pop(message_id, None))

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

    @on(Reactions)
    async def reactions(self, command: Reactions) -> dict[str, int]:
        """Keep each reaction on the message it reacts to (not as a message)."""
        for reaction in command.reactions:
            if reaction.organization_id != self.org_id or \
                    chats.chat_id_for(reaction) != self.key:
                raise Invalid("this reaction belongs to another chat")
        if not self.exists:
            return {"applied": 0}
        at = now_utc()
        writes = [statuses.reaction_write(self.org_id, self.key, r, at)
                  for r in command.reactions]
        await self._commit(writes)
        return {"applied": sum(w.inserted for w in writes)}

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
        self.members[message.sender.id] = senders.profile_of(message, sender.contact_id)
        return received.inserted

    async def _sender(self, message: InboundMessage, writes: list[Write]) -> senders.Profile:
        """The contact of `message`'s sender (each member of a group is one),
        creating it or bringing its profile up to date through `writes`."""
        known = self.members.get(message.sender.id)
        if known is None:
            async with self.ctx.db.tenant_tx(self.org_id) as conn:
                known = await senders.find_contact(conn, message)
            if known is None:
                writes.append(senders.contact_write(self.org_id, message))
                return senders.profile_of(message, chats.contact_id_for(message))
            self._alias(known.contact_id, message, writes)
        update = senders.profile_write(self.org_id, known, message)
        if update is not None:
            writes.append(update)
        return known

    def _alias(self, contact_id: str, message: InboundMessage, writes: list[Write]) -> None:
        aliases = senders.alias_write(self.org_id, contact_id, message)
        if aliases is not None:
            writes.append(aliases)

    async def _creation(self, message: InboundMessage, at: datetime) -> list[Write]:
        """The writes that create this chat (and its contact when new)."""
        async with self.ctx.db.tenant_tx(self.org_id) as conn:
            found = await senders.find_contact(conn, message)
        writes: list[Write] = []
        if found is None:
            writes.append(senders.contact_write(self.org_id, message))
            self.contact_id = chats.contact_id_for(message)
            found = senders.profile_of(message, self.contact_id)
        else:
            self.contact_id = found.contact_id
            self._alias(found.contact_id, message, writes)
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
        if self.channel == "whatsapp" and self.last_inbound_external:
            self.reading = asyncio.create_task(self._read_receipt(self.last_inbound_external))
        return {"chat_id": self.key, "unread": 0, "changed": True}

    async def _read_receipt(self, external_id: str) -> None:
        """Tell the provider the contact's messages were read (WhatsApp's blue
        ticks), beside the turn; a receipt lost costs nothing worth a retry."""
        try:
            integration = await self._integration()
            read = getattr(sender_for(self.ctx, integration.type), "mark_read", None)
            if read is not None:
                await read(integration, external_id)
        except Exception as exc:
            log.info("chat %s: read receipt failed: %s", self.key, exc)

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
            "agent_running": self.agent_running,
            "unreachable": self.unreachable,
            "recent": list(self.recent),
            "touches": self.touches,
        }

    @on(Ping)
    def ping(self, message: Ping) -> int:
        self._require()
        self.touches += 1
        return self.touches

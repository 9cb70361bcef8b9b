"""A chat's outbound half: its replies, their delivery and their retries.

A `Send` turn persists the message as `pending` (an `Idempotency-Key` maps
to a fixed id) and queues it; a per-chat delivery task sends queued messages
in order through the chat's channel and reports back with a `Delivered`
turn, which moves the status forward (`sent` or `failed`). A retryable
failure keeps the message `pending`, stores the attempt count, when the next
attempt is due (`outbound_retry_schedule`, jittered, or the receiver's
Retry-After) and how many parts of a split text went out, and queues it
again then, first: the messages queued after it wait for it, so a chat's
replies keep their order. Pending messages found at activation are queued
again when due, and the outbox sweeper (actors.outbox) nudges chats whose
host died with a `Resend`, so a host crash delays a send but never drops it
(the message id is the `webhook-id`: receivers dedup).

`ChatOutbound` is the ChatActor's base (actors.chat): the state it names
is the chat's.
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

import msgspec

from actors.runtime.actor import VirtualActor, on
from channels import webchat
from channels.base import (
    CREDENTIALS_REFUSED,
    ChannelError,
    integration_loader,
    retry_delay,
    sender_for,
)
from core.errors import Invalid, NotFound, Unreachable, WindowClosed
from core.messages import OutboundMessage, Receipt, StatusUpdate
from core.settings import RETRY_SCHEDULE
from storage import chats, email_threads, integrations, messages, statuses
from storage.audit import Actor
from storage.committer import Write
from storage.integrations import Integration

log = logging.getLogger(__name__)

TYPING_EVERY = 4.0  # seconds; Telegram shows a chat action for about 5
# WhatsApp's customer service window: free-form messages only this long
# after the contact's last message (a template opens a conversation any time).
SERVICE_WINDOW = timedelta(hours=24)
EARLY = 1000  # statuses held for messages whose receipt is still on its way
WINDOWED = frozenset({"whatsapp"})
WEBCHAT = webchat.WebchatSender()


class Send(msgspec.Struct, frozen=True):
    """Send `text` from a user (or an agent) to the chat's channel."""

    text: str
    user_id: str | None = None
    agent_id: str | None = None
    idempotency_key: str | None = None
    reply_to: str | None = None  # a message of this chat it answers
    # A provider template ({"name", "language", "components"}) instead of
    # free text: allowed outside WhatsApp's 24-hour window.
    template: dict[str, Any] | None = None
    campaign_id: str | None = None  # a campaign sends it (no user, no agent)


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


class Statuses(msgspec.Struct, frozen=True):
    """The provider's statuses of messages this chat sent."""

    updates: tuple[StatusUpdate, ...]


class Resend(msgspec.Struct, frozen=True):
    """Deliver these pending messages when due, unless already on their way."""

    message_ids: tuple[str, ...]


def now_utc() -> datetime:
    return datetime.now(UTC)


def aware(at: datetime) -> datetime:
    """`at` in UTC with its zone (Postgres's timestamps come back without one)."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


def latest(known: datetime | None, at: datetime) -> datetime:
    return at if known is None or aware(at) > aware(known) else known


class ChatOutbound(VirtualActor):
    __slots__ = ("outbox", "sending", "timers", "sender", "paused", "typed_at", "typing_task",
                 "unreachable", "last_message_at", "early")

    # The chat's state this half reads (actors.chat.ChatActor keeps it).
    exists: bool
    channel: str | None
    integration_id: str | None
    thread_id: str | None
    last_inbound_at: datetime | None
    recent: deque[dict[str, Any]]
    # The chat's state both halves write.
    unreachable: str | None
    last_message_at: datetime | None
    # Its own, set by `_start_outbound`.
    outbox: deque[dict[str, Any]]
    sending: dict[str, dict[str, Any]]
    timers: dict[str, asyncio.TimerHandle]
    sender: asyncio.Task[None] | None
    paused: str | None
    typed_at: float
    typing_task: asyncio.Task[None] | None
    early: dict[str, list[StatusUpdate]]

    def _start_outbound(self) -> None:
        self.outbox = deque()
        self.sending = {}  # queued or in flight, until reported
        self.timers = {}  # retries not yet due
        self.sender = None
        # A message waiting for its retry holds the ones queued behind it: order.
        self.paused = None
        self.typed_at = float("-inf")
        self.typing_task = None
        # Provider statuses that came before the receipt of their message
        # (the provider answered the send, then posted its status, and the
        # status's turn ran first): applied with the receipt.
        self.early = {}

    async def _stop_outbound(self) -> None:
        # Only at shutdown can sends be in flight here: they stay `pending` in
        # Postgres and are queued again by the next activation.
        for timer in self.timers.values():
            timer.cancel()
        self.timers.clear()
        if self.sender is not None and not self.sender.done():
            self.sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.sender

    def _require(self) -> None:
        if not self.exists:
            raise NotFound(f"chat {self.key} not found")

    async def _commit(self, writes: list[Write]) -> None:
        await self.ctx.committer.commit(self.org_id, writes)

    @on(Send)
    async def send(self, command: Send) -> dict[str, Any]:
        self._require()
        if self.unreachable:
            raise Unreachable(f"this conversation cannot be written to: {self.unreachable}")
        if not command.text.strip():
            raise Invalid("a message needs text", field="content")
        if command.template is None and self.channel in WINDOWED:
            self._require_window()
        if command.template is not None and self.channel not in WINDOWED:
            raise Invalid(f"templates are WhatsApp's; this chat is on {self.channel}",
                          field="template")
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
            user_id=command.user_id, agent_id=command.agent_id, reply_to=reply_to,
            template=command.template, campaign_id=command.campaign_id)
        await self._commit([write])
        self.last_message_at = at
        self.recent.append({"id": message_id, "sender_type": view["sender_type"],
                            "content": command.text, "is_incoming": False,
                            "status": "pending", "created_at": at})
        self._queue({"id": message_id, "content": command.text, "attempts": 0,
                     "reply_to": reply_to["external_id"] if reply_to else None,
                     "template": command.template})
        return {**view, "created_at": at, "duplicate": False}

    def _require_window(self) -> None:
        """`WindowClosed` unless the contact wrote within the service window:
        checked before anything is stored or sent, for every sender alike (a
        person, an agent, a campaign)."""
        last = aware(self.last_inbound_at) if self.last_inbound_at is not None else None
        if last is None or now_utc() - last > SERVICE_WINDOW:
            since = "has never written" if last is None else \
                f"last wrote at {last.isoformat(timespec='seconds')}"
            raise WindowClosed(
                "outside WhatsApp's 24-hour customer service window: the contact"
                f" {since}; only an approved template can be sent now (send"
                " `template` instead of free text)")

    def _resume(self, pending: Mapping[str, Any]) -> None:
        """A pending message read back from Postgres: queued now if due, else
        when due (`wait` seconds from now)."""
        item = {"id": str(pending["id"]), "content": pending["content"],
                "attempts": int(pending.get("attempts") or 0),
                "reply_to": pending.get("reply_to"),
                "template": pending.get("template"),
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
            # Web chat has no provider: the visitor's WebSocket reads the reply.
            channel = WEBCHAT if integration.type == webchat.CHANNEL \
                else sender_for(self.ctx, integration.type)
            receipt = await channel.send(integration, OutboundMessage(
                organization_id=self.org_id, integration_id=integration.id,
                channel=integration.type, thread_id=self.thread_id or "",
                message_id=message_id, chat_id=self.key, text=item["content"],
                reply_to_external_id=item.get("reply_to"), template=item.get("template"),
                sent_parts=int(item.get("sent_parts") or 0),
                context=await self._context(integration, item.get("reply_to"))))
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

    async def _context(self, integration: Integration,
                       reply_to: str | None) -> dict[str, Any] | None:
        """What the channel needs from the thread to write in it (email: the
        addresses, subject and Message-IDs of the message answered)."""
        if integration.type != "email":
            return None
        async with self.ctx.db.tenant_tx(self.org_id) as conn:
            return await email_threads.reply_context(conn, self.key, reply_to)

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
            extra.update(report.receipt.data or {})
        if report.error:
            extra["error"] = report.error[:500]
        writes = [statuses.status_write(
            self.org_id, self.key, report.message_id, status, extra, report.attempt,
            report.receipt.external_id if report.receipt and report.receipt.unique_in_thread
            else None)]
        if report.receipt is not None:
            writes.extend(statuses.provider_status_write(self.org_id, self.key, u)
                          for u in self.early.pop(report.receipt.external_id, ()))
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
        await self._commit([statuses.retry_write(
            self.org_id, report.message_id, report.attempt, due, report.error or "",
            report.sent_parts)])
        if item is not None:  # else not ours in memory: the sweeper brings it back
            self.paused = report.message_id  # what was queued after it waits for it
            self._resume({**item, "attempts": report.attempt, "wait": max(delay, 1e-3),
                          "sent_parts": max(report.sent_parts,
                                            int(item.get("sent_parts") or 0))})

    @on(Statuses)
    async def statuses(self, command: Statuses) -> dict[str, int]:
        """Apply the provider's statuses (a status never moves back); those of
        a message whose receipt is not recorded yet wait for it."""
        for update in command.updates:
            if update.organization_id != self.org_id or chats.chat_id_for(update) != self.key:
                raise Invalid("this status belongs to another chat")
        if not self.exists:
            return {"applied": 0, "held": 0}
        writes = [statuses.provider_status_write(self.org_id, self.key, u)
                  for u in command.updates]
        await self._commit(writes)
        held = 0
        for update, write in zip(command.updates, writes, strict=True):
            if not write.inserted and self.sending and len(self.early) < EARLY:
                self.early.setdefault(update.external_id, []).append(update)
                held += 1
        return {"applied": sum(w.inserted for w in writes), "held": held}

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


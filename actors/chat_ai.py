"""A chat's AI half: its assigned agent, the agent's runs, and drafts.

A new inbound message of a chat with an assigned agent (never an
auto-reply or a bounce) starts a run beside the chat's turns
(actors.agent_run: the provider may take seconds; the chat keeps taking
messages meanwhile). A chat has at most one run at a time: messages that
arrive during a run are folded into one more run after it, so a burst gets
one reply, not several. The run's reply comes back as a turn: sent like any
reply (`Send` with the agent as sender) when the agent's guardrails let it
act alone, else stored as a draft (`ai_draft`, status `draft`) that a person
approves (optionally edited: it is then queued like any reply) or rejects;
the outcome is kept on the message for analytics.

`ChatAI` is the ChatActor's base (actors.chat) after ChatOutbound: the
state it names is the chat's.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

import msgspec

from actors.hostcache import cached
from actors.outbound import WINDOWED, ChatOutbound, Send, now_utc
from actors.runtime.actor import on
from channels.base import integration_loader
from core.errors import Conflict, Invalid, NotFound, Unreachable
from core.messages import InboundMessage
from storage import chats, messages

log = logging.getLogger(__name__)

# What an inbound message's data says of it that keeps agents from answering:
# an auto-reply (Auto-Submitted, X-Autoreply) or a bounce.
AUTOMATED = ("auto_submitted", "bounce")
DEFAULTS_TTL = 10.0  # seconds a host keeps an integration's default agent
REMEMBER_ON_STOP = 2.0  # seconds a stopping chat gives its facts to be remembered


class Draft(msgspec.Struct, frozen=True):
    """An agent's reply to keep for a person to approve."""

    text: str
    agent_id: str
    run_id: str
    reason: str = "draft mode"  # why it was not sent (the agent's mode, a guardrail)


class DecideDraft(msgspec.Struct, frozen=True):
    """Approve a pending draft (with `content`: edited first) or reject it."""

    message_id: str
    approve: bool
    content: str | None = None
    user_id: str | None = None


class Assign(msgspec.Struct, frozen=True):
    """Make `agent_id` the chat's agent (None: no agent)."""

    agent_id: str | None
    user_id: str | None = None


class RunAgent(msgspec.Struct, frozen=True):
    """Run the chat's agent (or `agent_id`) now, or after the run going on."""

    trigger: str = "manual"
    agent_id: str | None = None


async def default_agent(ctx: Any, org_id: str, integration_id: str) -> str | None:
    """The integration's default agent, kept by the host for DEFAULTS_TTL
    seconds (every new chat asks; it rarely changes)."""
    async def load() -> str | None:
        loader = ctx.loader("integration", lambda: integration_loader(ctx))
        found = await loader.load((org_id, integration_id))
        agent = found.config.get("default_agent_id") if found is not None else None
        return str(agent) if agent else None
    return await cached(ctx, "default-agents", integration_id, DEFAULTS_TTL, load)


def automated(message: InboundMessage) -> bool:
    """Whether an agent must leave `message` alone (an auto-reply, a bounce)."""
    data = message.data or {}
    return any(data.get(name) for name in AUTOMATED)


class ChatAI(ChatOutbound):
    __slots__ = ("agent_task", "agent_again", "assigned_agent_id", "quiet", "remembering")

    assigned_agent_id: str | None
    # The chat's state this half reads (actors.chat.ChatActor keeps it).
    contact_id: str | None

    def _start_ai(self) -> None:
        self.agent_task: asyncio.Task[None] | None = None
        self.agent_again: str | None = None  # the trigger of one more run, when due
        self.quiet: asyncio.TimerHandle | None = None  # when the conversation goes quiet
        self.remembering: asyncio.Task[None] | None = None

    async def _stop_ai(self) -> None:
        if self.quiet is not None:  # stopped before it went quiet (a host shutting down)
            self.quiet.cancel()
            self.quiet = None
            if self.assigned_agent_id is not None and self.contact_id is not None:
                with contextlib.suppress(Exception):  # bounded: a shutdown waits for it
                    await asyncio.wait_for(self._remember_facts(), REMEMBER_ON_STOP)
        if self.agent_task is not None and not self.agent_task.done():
            self.agent_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.agent_task

    @property
    def agent_running(self) -> bool:
        return self.agent_task is not None and not self.agent_task.done()

    def _agent_wanted(self, trigger: str, agent_id: str | None = None) -> None:
        """A run of the chat's agent is due: now, or after the one going on."""
        if agent_id is None and self.assigned_agent_id is None:
            return
        if trigger == "message.received":
            self._quiet_later()
        if self.agent_running:
            self.agent_again = trigger
            return
        self.agent_task = asyncio.create_task(self._agent_loop(trigger, agent_id),
                                              name=f"agent run {self.key}")

    async def _agent_loop(self, trigger: str, agent_id: str | None) -> None:
        from actors.agent_run import run_for_chat  # the AI engine loads only where runs happen

        next_trigger: str | None = trigger
        while next_trigger is not None:
            self.agent_again = None
            try:
                await run_for_chat(self.ctx, self._snapshot(next_trigger, agent_id))
            except asyncio.CancelledError:
                raise
            except Exception:  # the chat goes on
                log.exception("chat %s: the agent run failed", self.key)
            next_trigger, agent_id = self.agent_again, None

    async def _adopt_default_agent(self, integration_id: str) -> None:
        """A new chat gets its integration's default agent, if it has one."""
        agent_id = await default_agent(self.ctx, self.org_id, integration_id)
        if agent_id is None:
            return
        write = chats.assign_write(self.org_id, self.key, agent_id, None)
        await self._commit([write])
        if write.inserted:
            self.assigned_agent_id = agent_id

    def _quiet_later(self) -> None:
        """(Re)start the wait for the conversation to go quiet."""
        if self.quiet is not None:
            self.quiet.cancel()
        self.quiet = asyncio.get_running_loop().call_later(
            self.ctx.settings.ai_quiet_seconds, self._gone_quiet)

    def _gone_quiet(self) -> None:
        self.quiet = None
        if self.assigned_agent_id is None or self.contact_id is None:
            return
        if self.remembering is None or self.remembering.done():
            self.remembering = asyncio.create_task(self._remember_facts(),
                                                   name=f"facts of {self.key}")

    async def _remember_facts(self) -> None:
        """What the contact stated, as memories of the agent (deduplicated
        against what is stored)."""
        from actors.agent_run import remember_facts

        try:
            await remember_facts(self.ctx, self.org_id, str(self.assigned_agent_id),
                                 str(self.contact_id), list(self.recent))
        except Exception:  # memories are a help, never a reason for the chat to fail
            log.exception("chat %s: remembering the conversation's facts failed", self.key)

    def _snapshot(self, trigger: str, agent_id: str | None) -> dict[str, Any]:
        """What a run reads of the chat, as it stands when it starts."""
        return {"org_id": self.org_id, "chat_id": self.key,
                "agent_id": agent_id or self.assigned_agent_id, "trigger": trigger,
                "contact_id": self.contact_id, "channel": self.channel,
                "integration_id": self.integration_id,
                "last_inbound_at": self.last_inbound_at.isoformat()
                if self.last_inbound_at else None,
                "unreachable": self.unreachable,
                "recent": [{"sender_type": m.get("sender_type"), "content": m.get("content"),
                            "is_incoming": m.get("is_incoming"), "status": m.get("status")}
                           for m in self.recent]}

    # -- turns ------------------------------------------------------------

    @on(RunAgent)
    def run_agent(self, command: RunAgent) -> dict[str, Any]:
        """A run now (the API's manual trigger, a scheduled follow-up), or
        right after the one going on; answers at once (the run is not part of
        the turn: the chat takes its messages meanwhile). Its outcome is its
        `agent_executions` row."""
        self._require()
        agent_id = command.agent_id or self.assigned_agent_id
        if agent_id is None:
            raise Invalid("this chat has no agent: assign one or name it", field="agent_id")
        folded = self.agent_running
        self._agent_wanted(command.trigger, agent_id)
        return {"chat_id": self.key, "agent_id": agent_id,
                "status": "queued" if folded else "started"}

    @on(Assign)
    async def assign(self, command: Assign) -> dict[str, Any]:
        self._require()
        write = chats.assign_write(self.org_id, self.key, command.agent_id, command.user_id)
        await self._commit([write])
        if not write.inserted:
            raise Invalid("no such agent in this organization", field="assigned_agent_id")
        self.assigned_agent_id = command.agent_id
        return {"chat_id": self.key, "assigned_agent_id": command.agent_id}

    @on(Draft)
    async def draft(self, command: Draft) -> dict[str, Any]:
        self._require()
        message_id, at = str(uuid.uuid4()), now_utc()
        view, write = messages.outbound_write(
            self.org_id, self.key, message_id, command.text, at, user_id=None,
            agent_id=command.agent_id, draft={"run_id": command.run_id,
                                              "reason": command.reason})
        await self._commit([write])
        self.recent.append({"id": message_id, "sender_type": "agent", "content": command.text,
                            "is_incoming": False, "status": "draft", "created_at": at})
        return view

    @on(DecideDraft)
    async def decide_draft(self, command: DecideDraft) -> dict[str, Any]:
        self._require()
        async with self.ctx.db.tenant_tx(self.org_id) as conn:
            found = await messages.find(conn, command.message_id, self.key)
        if found is None:
            raise NotFound("message not found")
        if found["status"] != "draft":
            raise Conflict(f"this message is not a pending draft (it is {found['status']})")
        content = command.content
        if content is not None and not content.strip():
            raise Invalid("an edited draft needs text", field="content")
        if command.approve:
            if self.unreachable:
                raise Unreachable(f"this conversation cannot be written to: {self.unreachable}")
            if self.channel in WINDOWED:
                self._require_window()
        write = messages.draft_decision_write(
            self.org_id, self.key, command.message_id, approve=command.approve,
            content=content, original=found["content"], user_id=command.user_id,
            at=now_utc())
        await self._commit([write])
        if not write.inserted:  # decided meanwhile by someone else
            raise Conflict("this draft was decided already")
        final = content if content is not None else found["content"]
        status = "pending" if command.approve else "rejected"
        for entry in self.recent:
            if str(entry["id"]) == command.message_id:
                entry["status"], entry["content"] = status, final
        if command.approve:
            self._queue({"id": command.message_id, "content": final, "attempts": 0,
                         "reply_to": None, "template": None})
        return {"id": command.message_id, "chat_id": self.key, "status": status,
                "content": final}


__all__ = ("Assign", "ChatAI", "DecideDraft", "Draft", "RunAgent", "Send", "automated")

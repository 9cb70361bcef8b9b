"""Typed references to the actors: how the rest of the engine reaches a
chat, an organization or an agent.

A reference knows its actor's kind, how its key is derived, which message
each method sends, what comes back, and how the call is retried
(`actors.runtime.retry`): the calls that may safely run twice (an inbound
message with its dedup key, a send with an idempotency key, marking read,
taking or returning a run slot) are retried while the owning host restarts
or the mailbox is full, within a bounded time; the others are not.

    await ChatRef.of(actors, message).inbound(message)
    await ChatRef(actors, org_id, chat_id).send(text, user_id, key)

References are cheap to make and safe to keep; kind names and message
classes stay behind them.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypedDict, TypeVar

from actors.agent import AgentActor, Begin, Config, FinishRun, StartRun
from actors.chat import (
    ChatActor,
    Edit,
    FetchFiles,
    Inbound,
    MarkRead,
    Reactions,
    Reload,
    SetReachable,
)
from actors.chat_ai import Assign, DecideDraft, Draft, RunAgent
from actors.messages import GetState, Ping
from actors.org import AiTokensSpent, AiTokensToday, FlushUsage, OrgActor, RecordUsage
from actors.outbound import Resend, Send, Statuses, Typing
from actors.runtime.client import ActorRef, ActorSystem
from actors.runtime.retry import DEFAULT_POLICY, RetryPolicy
from core.messages import Batch, InboundMessage, MessageEdit, Reaction, StatusUpdate, ThreadState
from storage.chats import chat_id_for

T = TypeVar("T", StatusUpdate, Reaction)


class Accepted(TypedDict):
    """An inbound message stored (after COMMIT), or known already."""

    id: str
    chat_id: str
    duplicate: bool


class SentMessage(TypedDict):
    """An outbound message stored as `pending` (or the one an idempotency key
    names already, `duplicate`)."""

    id: str
    chat_id: str
    sender_type: str
    sender_id: str | None
    content: str
    is_incoming: bool
    is_read: bool
    status: str
    external_id: str | None
    created_at: datetime | str
    duplicate: bool


class ReadResult(TypedDict):
    chat_id: str
    unread: int
    changed: bool


@dataclass(frozen=True, slots=True)
class ChatRef:
    """One conversation's actor, the only writer of its messages."""

    system: ActorSystem
    org_id: str
    chat_id: str
    policy: RetryPolicy = DEFAULT_POLICY

    @classmethod
    def of(cls, system: ActorSystem,
           message: InboundMessage | MessageEdit | ThreadState | Reaction,
           policy: RetryPolicy = DEFAULT_POLICY) -> ChatRef:
        """The chat `message` belongs to (its id follows from where it happens)."""
        return cls(system, message.organization_id, chat_id_for(message), policy)

    @property
    def actor(self) -> ActorRef:
        return self.system.ref(ChatActor.kind, self.org_id, self.chat_id)

    async def inbound(self, message: InboundMessage) -> Accepted:
        """Store `message`; resolves after COMMIT. Its dedup key makes a retry
        store it once."""
        return await self.policy.ask(  # type: ignore[no-any-return]
            self.actor, Inbound(message), idempotent=True)

    async def edit(self, edit: MessageEdit) -> Accepted:
        """Keep `edit` as a revision of its message; resolves after COMMIT (a
        redelivered edit is one revision: `duplicate`)."""
        return await self.policy.ask(  # type: ignore[no-any-return]
            self.actor, Edit(edit), idempotent=True)

    async def set_reachable(self, state: ThreadState) -> dict[str, Any]:
        """Mark the conversation (un)reachable, as the provider reports it."""
        return await self.policy.ask(  # type: ignore[no-any-return]
            self.actor, SetReachable(state), idempotent=True)

    async def send(self, text: str, user_id: str | None,
                   idempotency_key: str | None = None, *,
                   reply_to: str | None = None, template: dict[str, Any] | None = None,
                   agent_id: str | None = None, campaign_id: str | None = None) -> SentMessage:
        """Store `text` as pending and queue it for the chat's channel; only
        with an idempotency key is a lost call tried again (it cannot send twice).
        `reply_to`: the id of the message of this chat it answers; `template`:
        a provider template to send instead of free text (WhatsApp). The
        sender is a user, an agent or a campaign: each is held to the same
        rules (WhatsApp's window: `WindowClosed`)."""
        command = Send(text, user_id=user_id, idempotency_key=idempotency_key,
                       reply_to=reply_to, template=template, agent_id=agent_id,
                       campaign_id=campaign_id)
        return await self.policy.ask(  # type: ignore[no-any-return]
            self.actor, command, idempotent=bool(idempotency_key))

    async def statuses(self, updates: tuple[StatusUpdate, ...]) -> dict[str, int]:
        """Apply the provider's statuses of this chat's messages; after COMMIT."""
        return await self.policy.ask(  # type: ignore[no-any-return]
            self.actor, Statuses(updates), idempotent=True)

    async def reactions(self, reactions: tuple[Reaction, ...]) -> dict[str, int]:
        """Keep reactions on the messages they react to; after COMMIT."""
        return await self.policy.ask(  # type: ignore[no-any-return]
            self.actor, Reactions(reactions), idempotent=True)

    async def mark_read(self, user_id: str | None) -> ReadResult:
        return await self.policy.ask(  # type: ignore[no-any-return]
            self.actor, MarkRead(user_id=user_id), idempotent=True)

    async def typing(self, user_id: str | None) -> bool:
        """Show the contact that `user_id` is typing, where the channel can
        (Telegram), at most every few seconds; whether it was asked for."""
        return await self.policy.ask(  # type: ignore[no-any-return]
            self.actor, Typing(user_id), idempotent=True)

    def resend(self, message_ids: tuple[str, ...]) -> asyncio.Future[Any]:
        """Nudge the chat to send these pending messages when due (a tell:
        resolves once its host has it; the outbox's next sweep is the retry)."""
        return self.actor.tell(Resend(message_ids))

    async def state(self) -> dict[str, Any]:
        return await self.policy.ask(  # type: ignore[no-any-return]
            self.actor, GetState(), idempotent=True)

    def fetch_files(self, message_ids: tuple[str, ...]) -> asyncio.Future[Any]:
        """Nudge the chat to fetch these messages' files still missing (a tell,
        like `resend`: the sweeper's next pass is the retry)."""
        return self.actor.tell(FetchFiles(message_ids))

    async def reload(self) -> bool:
        """Make the chat read its state from Postgres again (whether it exists)."""
        return await self.policy.ask(  # type: ignore[no-any-return]
            self.actor, Reload(), idempotent=True)

    async def ping(self) -> int:
        return await self.policy.ask(  # type: ignore[no-any-return]
            self.actor, Ping(), idempotent=False)

    async def assign(self, agent_id: str | None, user_id: str | None) -> dict[str, Any]:
        """Make `agent_id` the chat's agent (None: none)."""
        return await self.policy.ask(  # type: ignore[no-any-return]
            self.actor, Assign(agent_id, user_id), idempotent=True)

    async def run_agent(self, trigger: str = "manual",
                        agent_id: str | None = None) -> dict[str, Any]:
        """Run the chat's agent (or `agent_id`) now, or right after the run
        going on; resolves once the chat has it (the outcome is the run's
        `agent_executions` row). Not retried: a second call is a second run."""
        return await self.policy.ask(  # type: ignore[no-any-return]
            self.actor, RunAgent(trigger, agent_id), idempotent=False)

    async def draft(self, text: str, agent_id: str, run_id: str,
                    reason: str) -> dict[str, Any]:
        """Keep an agent's reply as a draft for a person to approve."""
        return await self.policy.ask(  # type: ignore[no-any-return]
            self.actor, Draft(text, agent_id, run_id, reason), idempotent=False)

    async def decide_draft(self, message_id: str, *, approve: bool, content: str | None,
                           user_id: str | None) -> dict[str, Any]:
        """Approve (edited, with `content`) or reject a pending draft; a
        draft decided already is a `Conflict`, so a retry cannot send twice."""
        return await self.policy.ask(  # type: ignore[no-any-return]
            self.actor, DecideDraft(message_id, approve, content, user_id), idempotent=True)


@dataclass(frozen=True, slots=True)
class OrgRef:
    """An organization's actor: plan limits and usage counters."""

    system: ActorSystem
    org_id: str
    policy: RetryPolicy = DEFAULT_POLICY

    @property
    def actor(self) -> ActorRef:
        return self.system.ref(OrgActor.kind, self.org_id, self.org_id)

    async def record_usage(self, metric: str, quantity: int = 1) -> int:
        """Count usage; answers the month's total. A lost call is not tried
        again: it may have counted."""
        return await self.policy.ask(  # type: ignore[no-any-return]
            self.actor, RecordUsage(metric, quantity), idempotent=False)

    async def flush(self) -> int:
        return await self.policy.ask(  # type: ignore[no-any-return]
            self.actor, FlushUsage(), idempotent=True)

    async def ai_tokens_today(self) -> int:
        return await self.policy.ask(  # type: ignore[no-any-return]
            self.actor, AiTokensToday(), idempotent=True)

    async def ai_tokens_spent(self, tokens: int) -> int:
        return await self.policy.ask(  # type: ignore[no-any-return]
            self.actor, AiTokensSpent(tokens), idempotent=False)

    async def state(self) -> dict[str, Any]:
        return await self.policy.ask(  # type: ignore[no-any-return]
            self.actor, GetState(), idempotent=True)


@dataclass(frozen=True, slots=True)
class AgentRef:
    """An AI agent's actor: its configuration and its concurrent runs."""

    system: ActorSystem
    org_id: str
    agent_id: str
    policy: RetryPolicy = DEFAULT_POLICY

    @property
    def actor(self) -> ActorRef:
        return self.system.ref(AgentActor.kind, self.org_id, self.agent_id)

    async def start_run(self, run_id: str) -> int:
        """Take a run slot (`RateLimited` when all are taken); answers how many
        are taken. Taking the same run's slot again is harmless."""
        return await self.policy.ask(  # type: ignore[no-any-return]
            self.actor, StartRun(run_id), idempotent=True)

    async def finish_run(self, run_id: str) -> int:
        return await self.policy.ask(  # type: ignore[no-any-return]
            self.actor, FinishRun(run_id), idempotent=True)

    async def begin(self, run_id: str) -> dict[str, Any]:
        """Take a run slot (`RateLimited` when all are taken) and answer the
        agent's configuration. Taking the same run's slot again is harmless."""
        return await self.policy.ask(  # type: ignore[no-any-return]
            self.actor, Begin(run_id), idempotent=True)

    async def config(self, fresh: bool = False) -> dict[str, Any]:
        """The agent's configuration (`fresh`: read again from Postgres)."""
        return await self.policy.ask(  # type: ignore[no-any-return]
            self.actor, Config(fresh), idempotent=True)

    async def state(self) -> dict[str, Any]:
        return await self.policy.ask(  # type: ignore[no-any-return]
            self.actor, GetState(), idempotent=True)


async def deliver_batch(system: ActorSystem, batch: Batch) -> list[Accepted]:
    """Everything one provider request or poll carried, each part to its
    chat actor: the chats at once, each chat's messages in the order they
    came, then the edits and thread states; resolves once all of it is committed.
    A failure raises: the provider is not told it arrived and sends it again
    (webhooks), or the cursor does not move (polling); dedup keys make the
    parts stored already harmless."""
    if len(batch.messages) == 1 and not (batch.edits or batch.states or batch.statuses
                                         or batch.reactions):
        (message,) = batch.messages  # a webhook's one message: straight to its chat
        return [await ChatRef.of(system, message).inbound(message)]
    accepted = []
    by_chat: dict[str, list[InboundMessage]] = {}
    for message in batch.messages:
        by_chat.setdefault(chat_id_for(message), []).append(message)

    async def one_chat(items: list[InboundMessage]) -> list[Accepted]:
        return [await ChatRef.of(system, m).inbound(m) for m in items]

    if len(by_chat) == 1:  # no task to spawn
        accepted.extend(await one_chat(next(iter(by_chat.values()))))
    else:
        for got in await asyncio.gather(*(one_chat(v) for v in by_chat.values())):
            accepted.extend(got)
    for edit in batch.edits:
        accepted.append(await ChatRef.of(system, edit).edit(edit))
    for state in batch.states:
        await ChatRef.of(system, state).set_reachable(state)
    if batch.statuses or batch.reactions:
        await _deliver_news(system, batch)
    return accepted


async def _deliver_news(system: ActorSystem, batch: Batch) -> None:
    """Statuses and reactions, each chat's in one call, the chats at once
    (after the messages: a reaction may name one of them)."""
    calls = [ChatRef(system, org, chat).statuses(tuple(items))
             for (org, chat), items in _by_chat(batch.statuses).items()]
    calls += [ChatRef(system, org, chat).reactions(tuple(items))
              for (org, chat), items in _by_chat(batch.reactions).items()]
    if len(calls) == 1:
        await calls[0]
    else:
        await asyncio.gather(*calls)


def _by_chat(items: tuple[T, ...]) -> dict[tuple[str, str], list[T]]:
    """`items` by (org, chat), in order; those naming no conversation are
    dropped (nothing to find them by)."""
    grouped: dict[tuple[str, str], list[T]] = {}
    for item in items:
        if item.thread_id is not None:
            grouped.setdefault((item.organization_id, chat_id_for(item)), []).append(item)
    return grouped

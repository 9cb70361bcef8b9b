"""One agent run for one chat: from the chat's snapshot to a reply sent,
a draft, or nothing, always with its `agent_executions` row.

The run takes one of the agent's run slots (AgentActor: its concurrent-run
limit) and one token of `rate_limit:ai:{org}:{agent}`, checks the org's
tokens today (OrgActor) against the daily quota, reads what the prompt
needs (the contact, their company and open deals, memories that match the
conversation, the chat's recent turns in Redis), and runs the tool loop
(agents.runner) with the agent's provider: the org's OpenAI or Anthropic
integration, else the engine's key, else the offline provider. Then the
guardrails decide what becomes of the reply: sent by the agent (mode
`autopilot`, within business hours, under the contact's daily cap, inside
WhatsApp's window), or kept as a draft for a person (any other case, with
the reason). A blocked run (a quota, a guardrail, the tool-step cap) sends
nothing and is recorded with its reason; a provider error likewise.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from actors.hostcache import cached
from actors.outbound import SERVICE_WINDOW, aware
from actors.refs import AgentRef, ChatRef, OrgRef
from agents import guardrails as rails
from agents import prompts, runner, toolbox
from agents.embeddings import Embedder, OfflineEmbedder
from agents.embeddings_openai import OpenAIEmbedder
from agents.facts import extract as extract_facts
from agents.llm import Provider, ProviderError, Turn
from agents.memory import LongTermMemory, ShortTermMemory
from agents.providers import provider_for
from agents.tools import ToolContext
from core.crypto import Cipher
from core.errors import RateLimited
from storage import agents as agent_rows
from storage import integrations, memories
from storage.audit import Actor
from storage.ratelimit import TokenBucket

log = logging.getLogger(__name__)

KEYS_TTL = 10.0  # seconds a host keeps an org's model keys before reading them again
SLOT_WAIT = 60.0  # seconds a run waits for one of its agent's run slots
SLOT_PAUSE = (0.02, 0.25)  # the first and the longest pause between two tries


def _rate(ctx: Any) -> TokenBucket:
    per_minute = ctx.settings.ai_runs_per_minute
    return ctx.loader("ai-rate", lambda: TokenBucket(  # type: ignore[no-any-return]
        ctx.redis, per_minute, per_minute / 60.0))


async def provider_of(ctx: Any, org_id: str, choice: str | None) -> Provider:
    """The agent's provider: its choice, else the org's integration, else the engine's key."""
    settings = ctx.settings

    def make(kind: str, key: str | None = None, base_url: str | None = None) -> Provider:
        # One client per key and server on this host: its connections are reused.
        digest = hashlib.sha256(f"{kind}\x1f{key}\x1f{base_url}".encode()).hexdigest()
        return ctx.loader(f"provider:{digest}", lambda: provider_for(  # type: ignore[no-any-return]
            kind, api_key=key, base_url=base_url, timeout=settings.ai_timeout,
            max_retries=settings.ai_retries))

    if choice == "offline":
        return make("offline")
    kinds = [choice] if choice else ["openai", "anthropic"]
    found = await _keys(ctx, org_id, tuple(kinds))
    for kind in kinds:
        if kind in found:
            return make(kind, found[kind].secrets.get("api_key"),
                        found[kind].config.get("base_url"))
    for kind in kinds:
        key = getattr(settings, f"{kind}_api_key").get_secret_value()
        if key:
            return make(kind, key, getattr(settings, f"{kind}_base_url"))
    return make("offline")


async def _slot(agent: AgentRef, run_id: str) -> dict[str, Any] | None:
    """One of the agent's run slots, waited for while all are taken (each
    try answers at once: the AgentActor never holds a turn for it), and the
    agent's configuration; None when no slot came in time."""
    deadline = time.monotonic() + SLOT_WAIT
    pause = SLOT_PAUSE[0]
    while True:
        try:
            return await agent.begin(run_id)
        except RateLimited:
            if time.monotonic() + pause > deadline:
                return None
            await asyncio.sleep(pause * (0.5 + random.random()))
            pause = min(pause * 2, SLOT_PAUSE[1])


async def _keys(ctx: Any, org_id: str, kinds: tuple[str, ...]) -> dict[str, Any]:
    """The org's model-provider integrations of these kinds, kept by the host
    for KEYS_TTL seconds (every run needs them; they rarely change)."""
    async def load() -> dict[str, Any]:
        cipher = Cipher(ctx.settings.encryption_key.get_secret_value())
        async with ctx.db.tenant_tx(org_id) as conn:
            return await integrations.of_types(conn, kinds, cipher)
    return await cached(ctx, "ai-keys", (org_id, kinds), KEYS_TTL, load)


def _conversation(recent: list[dict[str, Any]]) -> list[Turn]:
    """The chat as the model reads it: one user turn of delimited data (the
    contact's words are never instructions), ending with their last message."""
    return [Turn(role="user", content=prompts.conversation(recent))]


async def embedder_of(ctx: Any, org_id: str) -> Embedder:
    """The org's embedder: OpenAI's when it has an OpenAI key (its
    integration, else the engine's), else the offline one. Memories keep
    the name of theirs and are searched only with it."""
    settings = ctx.settings
    found = (await _keys(ctx, org_id, ("openai",))).get("openai")
    key = found.secrets.get("api_key") if found is not None else \
        settings.openai_api_key.get_secret_value() or None
    if not key:
        return ctx.loader("offline-embedder", OfflineEmbedder)  # type: ignore[no-any-return]
    base = found.config.get("base_url") if found is not None else settings.openai_base_url
    digest = hashlib.sha256(f"{key}\x1f{base}".encode()).hexdigest()
    return ctx.loader(f"embedder:{digest}", lambda: OpenAIEmbedder(  # type: ignore[no-any-return]
        key, base_url=base, timeout=settings.ai_timeout, max_retries=settings.ai_retries))


async def _facts(ctx: Any, org_id: str, contact_id: str | None, embedder: Embedder,
                 query: str, recent: list[dict[str, Any]]) -> prompts.Facts:
    """The prompt's facts and the memories that match the conversation. The
    conversation is embedded only when there are memories to search (an
    embedding can be a provider call). Memories are a help: an embedder
    that fails (a provider down) leaves them out, and the run goes on."""
    async with ctx.db.tenant_tx(org_id) as conn:
        known = await agent_rows.prompt_facts(conn, contact_id)
    vector = None
    if known["memories"] and query.strip():
        try:
            vector = (await embedder.embed([query]))[0]
        except ProviderError as exc:
            log.warning("org %s: embedding the conversation failed: %s", org_id, exc)
    recalled = []
    if vector is not None and any(vector):
        async with ctx.db.tenant_tx(org_id) as conn:
            recalled = await memories.search(
                conn, vector, contact_id=UUID(contact_id) if contact_id else None, limit=5,
                embedder=embedder.name)
    return prompts.Facts(org=known["org"], contact=known["contact"], company=known["company"],
                         deal=known["deal"], recent_messages=recent,
                         memories=[m.content for m in recalled])


async def run_for_chat(ctx: Any, snapshot: dict[str, Any]) -> dict[str, Any]:
    org_id, chat_id, agent_id = snapshot["org_id"], snapshot["chat_id"], snapshot["agent_id"]
    started = time.monotonic()
    agent = AgentRef(ctx.system, org_id, agent_id)
    run_id = str(uuid.uuid4())
    record: dict[str, Any] = {"trigger": snapshot["trigger"], "provider": "none",
                              "input": {"chat_id": chat_id, "trigger": snapshot["trigger"]}}

    async def finish(status: str, *, output: Any = None, error: str | None = None,
                     tokens: int = 0, provider: str | None = None) -> dict[str, Any]:
        ms = int((time.monotonic() - started) * 1000)
        execution_id, write = agent_rows.execution_write(
            org_id, agent_id, chat_id, trigger=record["trigger"], input_data=record["input"],
            output_data=output, status=status, error=error, tokens=tokens, ms=ms,
            provider=provider or record["provider"])
        await ctx.committer.commit(org_id, [write])
        return {"status": status, "execution_id": execution_id, "error": error,
                "output": output}

    decision = await _rate(ctx).take(f"rate_limit:ai:{org_id}:{agent_id}")
    if not decision.allowed:
        return await finish("blocked", error="rate limited: too many runs of this agent")
    config = await _slot(agent, run_id)
    if config is None:
        return await finish("blocked", error=f"no run slot of the agent came free within"
                            f" {SLOT_WAIT:.0f} s (its concurrent-run limit)")
    try:
        if not config.get("is_active", True):
            return await finish("blocked", error="the agent is switched off")
        guard = rails.parse(config.get("guardrails") or {})
        used = await OrgRef(ctx.system, org_id).ai_tokens_today()
        if used >= guard.max_tokens_per_org_per_day:
            return await finish("blocked", error=f"the org's daily token quota is spent"
                                f" ({used} of {guard.max_tokens_per_org_per_day})")
        return await _run(ctx, snapshot, config, guard, run_id, record, finish)
    finally:
        await agent.finish_run(run_id)


async def _run(ctx: Any, snapshot: dict[str, Any], config: dict[str, Any],
               guard: rails.Guardrails, run_id: str, record: dict[str, Any],
               finish: Callable[..., Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    org_id, chat_id, agent_id = snapshot["org_id"], snapshot["chat_id"], snapshot["agent_id"]
    contact_id = snapshot.get("contact_id")
    provider = await provider_of(ctx, org_id, config.get("provider"))
    record["provider"] = provider.name
    embedder = await embedder_of(ctx, org_id)
    memory = LongTermMemory(ctx.db, embedder)
    short = ShortTermMemory(ctx.redis)
    recent = snapshot["recent"]
    last = next((m["content"] for m in reversed(recent) if m.get("is_incoming")), "")
    record["input"]["last_message"] = last[:2000]
    chat = ChatRef(ctx.system, org_id, chat_id)
    actor = Actor(org_id, agent_id=agent_id)
    sent: list[Any] = []

    async def send(text: str) -> dict[str, Any]:  # the send_message tool, when it may
        result = await chat.send(text, None, f"agent:{run_id}:{len(sent)}", agent_id=agent_id)
        sent.append(result)
        return {"id": result["id"], "status": result["status"]}

    tool_ctx = ToolContext(db=ctx.db, org_id=org_id, agent_id=agent_id, chat_id=chat_id,
                           contact_id=contact_id, actor=actor, memory=memory, send=send)
    earlier = await short.recent(org_id, chat_id, 20)  # turns the hot state no longer holds
    facts = await _facts(ctx, org_id, contact_id, embedder, last, recent)
    system = prompts.render(config["prompt_template"], facts)
    if earlier and len(earlier) > len(recent):
        system += "\n" + prompts.conversation(
            [{"is_incoming": role == "contact", "content": text}
             for role, text in earlier[:len(earlier) - len(recent)]])
    result = await runner.run(
        provider=provider, model=config.get("model") or "gpt-4o-mini", system=system,
        turns=_conversation(recent), registry=toolbox.registry(),
        allowed=list(config.get("tools") or []), ctx=tool_ctx, guardrails=guard,
        max_tokens=int(config.get("max_tokens") or 1000),
        temperature=float(config.get("temperature") or 0.0))
    tokens = result.usage.total
    if tokens:
        await OrgRef(ctx.system, org_id).ai_tokens_spent(tokens)
    output = {**result.as_output(), "sent_by_tool": [m["id"] for m in sent]}
    if result.status != "success" or not result.reply:
        return await finish(result.status, output=output, error=result.reason, tokens=tokens,
                            provider=result.provider)
    reason = await _why_not_send(ctx, snapshot, guard)
    if reason is None:
        message = await chat.send(result.reply, None, f"agent:{run_id}:reply",
                                  agent_id=agent_id)
        output["sent"] = message["id"]
    else:
        draft = await chat.draft(result.reply, agent_id, run_id, reason)
        output["draft"], output["draft_reason"] = draft["id"], reason
    await short.append(org_id, chat_id, "contact", last)
    await short.append(org_id, chat_id, "agent", result.reply)
    return await finish("success", output=output, tokens=tokens, provider=result.provider)


async def _why_not_send(ctx: Any, snapshot: dict[str, Any],
                        guard: rails.Guardrails) -> str | None:
    """None when the agent may send its reply itself; else why it is a draft."""
    if guard.mode != "autopilot":
        return "draft mode: a person approves each reply"
    now = datetime.now(UTC)
    if not guard.in_business_hours(now):
        return "outside business hours"
    if snapshot.get("unreachable"):
        return f"the conversation is unreachable: {snapshot['unreachable']}"
    if snapshot.get("channel") == "whatsapp":
        last = snapshot.get("last_inbound_at")
        if last is None or now - aware(datetime.fromisoformat(last)) > SERVICE_WINDOW:
            return "outside WhatsApp's 24-hour window: only a template may go"
    contact = snapshot.get("contact_id")
    if contact:
        async with ctx.db.tenant_tx(snapshot["org_id"]) as conn:
            today = await agent_rows.agent_sends_today(conn, contact)
        if today >= guard.max_messages_per_contact_per_day:
            return (f"the contact has had {today} messages from agents today (the cap is"
                    f" {guard.max_messages_per_contact_per_day})")
    return None


async def remember_facts(ctx: Any, org_id: str, agent_id: str, contact_id: str,
                         recent: list[dict[str, Any]]) -> int:
    """The facts and preferences the contact stated in `recent`, kept as the
    agent's memories of them; answers how many were new."""
    turns = [("contact" if m.get("is_incoming") else "agent", str(m.get("content") or ""))
             for m in recent]
    facts = extract_facts(turns)
    if not facts:
        return 0
    memory = LongTermMemory(ctx.db, await embedder_of(ctx, org_id))
    saved = await memory.remember_all(org_id, Actor(org_id, agent_id=agent_id),
                                      agent_id=UUID(agent_id), contact_id=UUID(contact_id),
                                      facts=facts)
    return sum(1 for _, created in saved if created)

"""Test doubles at the seams the tool loop has with things outside it.

`ScriptedProvider` is a `Provider` that answers from a list of
completions (or raises a `ProviderError` placed in the list) and records
every request it was given, so a test can read what the model saw.
Scripts are data (agents.llm types), so the same script can be served by a
fake OpenAI or Anthropic server to the real SDKs.

`TableMemory` is a long-term memory over the real `agent_memories` table
with a word match instead of embeddings (the tools only need recall and
remember; ranking quality is not what these tests are about). `Outbox`
records what `ctx.send` was asked to send."""
from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from agents.llm import Completion, ProviderError, ToolCall, ToolSpec, Turn, Usage
from storage.audit import Actor, record
from storage.db import Database

Step = Completion | ProviderError


@dataclass(frozen=True)
class Request:
    model: str
    system: str
    turns: list[Turn]
    tools: list[ToolSpec]
    max_tokens: int


class ScriptedProvider:
    """Answers with `script` in order; with `repeat`, the last step forever."""

    name = "scripted"

    def __init__(self, script: Sequence[Step], *, repeat: bool = False) -> None:
        self.script = list(script)
        self.repeat = repeat
        self.requests: list[Request] = []

    async def complete(self, *, model: str, system: str, turns: list[Turn],
                       tools: list[ToolSpec], max_tokens: int,
                       temperature: float) -> Completion:
        self.requests.append(Request(model, system, list(turns), list(tools), max_tokens))
        index = len(self.requests) - 1
        if index >= len(self.script):
            if not self.repeat:
                raise AssertionError(f"the script has {len(self.script)} steps, asked for more")
            index = len(self.script) - 1
        step = self.script[index]
        if isinstance(step, ProviderError):
            raise step
        return step

    def seen(self) -> str:
        """Everything the model was sent, as one text (to search for leaks)."""
        parts = []
        for r in self.requests:
            parts.append(r.system)
            parts.extend(t.content for t in r.turns)
        return "\n".join(parts)


def calls(*pairs: tuple[str, str], tokens: int = 50) -> Completion:
    """A completion that calls tools: (name, JSON arguments) pairs."""
    return Completion("", tuple(ToolCall(f"call-{uuid.uuid4().hex[:8]}", name, arguments)
                                for name, arguments in pairs),
                      Usage(tokens, tokens // 2), provider="scripted", finish="tool_calls")


def reply(text: str, tokens: int = 50) -> Completion:
    return Completion(text, (), Usage(tokens, tokens // 2), provider="scripted", finish="stop")


@dataclass
class Outbox:
    """`ctx.send`: what the agent sent to its chat."""

    sent: list[str] = field(default_factory=list)

    async def __call__(self, text: str) -> dict[str, Any]:
        self.sent.append(text)
        return {"message_id": str(uuid.uuid4()), "status": "pending"}


@dataclass(frozen=True)
class Remembered:
    id: str
    memory_type: str
    content: str
    contact_id: str | None


class TableMemory:
    """recall/remember over `agent_memories`, matching words of the query."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def recall(self, org_id: str, query: str, *, contact_id: str | None = None,
                     limit: int = 5) -> list[Remembered]:
        words = [w for w in query.lower().split() if len(w) > 2] or [query.lower()]
        async with self.db.tenant_tx(org_id) as conn:
            rows = await conn.fetch(
                "SELECT id, memory_type, content, contact_id FROM agent_memories"
                " WHERE ($1::uuid IS NULL OR contact_id = $1)"
                " AND lower(content) LIKE ANY($2::text[]) ORDER BY created_at DESC LIMIT $3",
                uuid.UUID(contact_id) if contact_id else None,
                [f"%{w}%" for w in words], limit)
        return [Remembered(str(r["id"]), r["memory_type"], r["content"],
                           str(r["contact_id"]) if r["contact_id"] else None) for r in rows]

    async def remember(self, org_id: str, actor: Actor, *, agent_id: str,
                       contact_id: str | None, memory_type: str,
                       content: str) -> tuple[Remembered, bool]:
        async with self.db.tenant_tx(org_id) as conn:
            same = await conn.fetchrow(
                "SELECT id FROM agent_memories WHERE contact_id IS NOT DISTINCT FROM $1"
                " AND lower(content) = lower($2)",
                uuid.UUID(contact_id) if contact_id else None, content)
            if same is not None:
                return Remembered(str(same["id"]), memory_type, content, contact_id), False
            memory_id = await conn.fetchval(
                "INSERT INTO agent_memories (organization_id, agent_id, contact_id, memory_type,"
                " content) VALUES ($1, $2, $3, $4, $5) RETURNING id", uuid.UUID(org_id),
                uuid.UUID(agent_id), uuid.UUID(contact_id) if contact_id else None,
                memory_type, content)
            await record(conn, actor, action="memory.create", resource_type="memory",
                         resource_id=memory_id, changes={"memory_type": memory_type},
                         event_type="memory.created", payload={"id": memory_id})
        return Remembered(str(memory_id), memory_type, content, contact_id), True

"""What an agent remembers.

Short-term: the recent turns of one chat, in Redis under
`bidi:ai:turns:{org}:{chat}`: a list capped at `max_turns` (oldest dropped)
whose TTL is renewed by every append, so a quiet chat's turns expire on
their own and a busy one never loses its latest. Append, trim and expire go
in one MULTI, so no reader sees the list over its cap or without a TTL.

Long-term: `agent_memories` through storage.memories, embedded by the
configured `Embedder` (OpenAI's when an org has it, else the offline one).
Embedding happens before the tenant transaction opens: a slow provider
never holds a database connection.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

import msgspec
import redis.asyncio as aioredis

from agents.embeddings import Embedder
from storage import memories
from storage.audit import Actor
from storage.db import Database
from storage.memories import Memory

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(tuple[str, str]).decode


def turns_key(org_id: UUID | str, chat_id: UUID | str) -> str:
    return f"bidi:ai:turns:{org_id}:{chat_id}"


class ShortTermMemory:
    """The last turns of each chat, as (role, text), oldest first."""

    def __init__(self, redis: aioredis.Redis, *, ttl: float = 86400,
                 max_turns: int = 50) -> None:
        if ttl <= 0 or max_turns < 1:
            raise ValueError("ttl must be positive and max_turns at least 1")
        self.redis = redis
        self.ttl_ms = int(ttl * 1000)
        self.max_turns = max_turns

    async def append(self, org_id: UUID | str, chat_id: UUID | str, role: str,
                     text: str) -> None:
        key = turns_key(org_id, chat_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.rpush(key, _encode((role, text)))
            pipe.ltrim(key, -self.max_turns, -1)
            pipe.pexpire(key, self.ttl_ms)
            await pipe.execute()

    async def recent(self, org_id: UUID | str, chat_id: UUID | str,
                     n: int) -> list[tuple[str, str]]:
        """The last `n` turns (fewer when the chat has fewer), oldest first."""
        if n < 1:
            return []
        raw: list[bytes | str] = await self.redis.lrange(turns_key(org_id, chat_id), -n, -1)
        return [_decode(item) for item in raw]

    async def clear(self, org_id: UUID | str, chat_id: UUID | str) -> None:
        await self.redis.delete(turns_key(org_id, chat_id))


class LongTermMemory:
    """Facts and preferences an org's agents keep, found again by meaning."""

    def __init__(self, db: Database, embedder: Embedder) -> None:
        self.db = db
        self.embedder = embedder

    async def _embedding(self, text: str) -> list[float]:
        (vector,) = await self.embedder.embed([text])
        return vector

    async def remember(self, org_id: UUID | str, actor: Actor, *, agent_id: UUID | str | None,
                       contact_id: UUID | str | None, memory_type: str, content: str,
                       metadata: dict[str, Any] | None = None) -> tuple[Memory, bool]:
        """Store `content` unless a near-duplicate is stored (storage.memories.save);
        returns the memory and whether it is new."""
        _same_org(org_id, actor)
        vector = await self._embedding(content)
        meta = {"embedder": self.embedder.name, **(metadata or {})}
        async with self.db.tenant_tx(org_id) as conn:
            return await memories.save(conn, actor, agent_id=_uuid(agent_id),
                                       contact_id=_uuid(contact_id),
                                       memory_type=memory_type, content=content,
                                       embedding=vector, metadata=meta)

    async def remember_all(self, org_id: UUID | str, actor: Actor, *, agent_id: UUID | None,
                           contact_id: UUID | None,
                           facts: Sequence[tuple[str, str]]) -> list[tuple[Memory, bool]]:
        """Several (memory_type, content) at once: one embedding call, one transaction."""
        _same_org(org_id, actor)
        if not facts:
            return []
        vectors = await self.embedder.embed([content for _, content in facts])
        meta = {"embedder": self.embedder.name}
        async with self.db.tenant_tx(org_id) as conn:
            return [await memories.save(conn, actor, agent_id=agent_id, contact_id=contact_id,
                                        memory_type=kind, content=content, embedding=vector,
                                        metadata=meta)
                    for (kind, content), vector in zip(facts, vectors, strict=True)]

    async def recall(self, org_id: UUID | str, query: str, *,
                     contact_id: UUID | str | None = None, limit: int = 5) -> list[Memory]:
        """The org's memories (the contact's, when given) closest to `query`."""
        if not query.strip():
            return []
        vector = await self._embedding(query)
        if not any(vector):
            return []  # nothing meaningful to compare (only stop words)
        async with self.db.tenant_tx(org_id) as conn:
            return await memories.search(conn, vector, contact_id=_uuid(contact_id),
                                         limit=limit, embedder=self.embedder.name)


def _uuid(value: UUID | str | None) -> UUID | None:
    """An id as storage takes it (callers hold them as text or as UUIDs)."""
    return value if value is None or isinstance(value, UUID) else UUID(value)


def _same_org(org_id: UUID | str, actor: Actor) -> None:
    # The audit row names actor.org_id; the transaction is org_id's.
    if str(UUID(str(org_id))) != str(UUID(actor.org_id)):
        raise ValueError("the actor acts for another org")

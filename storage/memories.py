"""Agents' long-term memory: `agent_memories` rows with a 1536-d embedding,
saved deduplicated and searched by cosine similarity, always inside the
caller's tenant transaction (row-level security keeps the search to the org).

Two ways to search, chosen by what narrows the rows:

- org-wide (optionally one agent's): the HNSW index (`vector_cosine_ops`,
  migration 017) answers `ORDER BY embedding <=> $1 LIMIT k` approximately
  in a few milliseconds. pgvector 0.6 filters (the org's policy, an agent)
  AFTER the index has produced its `hnsw.ef_search` candidates, so a small
  org in a large table, or a rare agent, can get fewer than `limit` rows
  back; then the same search runs exactly over the org's rows (the btree
  on organization_id, agent_id), which for such a small set is cheap. The
  planner may also pick that btree and an exact sort up front when it
  estimates the org to be small.
- one contact's: the contact's rows by the btree on contact_id, ranked
  exactly. A contact has tens or hundreds of memories, never enough to need
  an approximate index, and the exact answer never misses one.

`exact_search` is the ground truth the benchmark compares with: the same
query with a distance expression the index cannot serve, so it is a scan.

`save` deduplicates against what is stored: the nearest memory of the org
(of the contact, when one is given) at cosine similarity >= the threshold is
returned instead of a new row. An advisory lock per (org, contact) makes two
saves of the same fact at once find each other rather than both insert.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
import numpy as np

from core.errors import Invalid, NotFound
from storage.audit import Actor, record

DIMENSIONS = 1536
EF_SEARCH = 100  # HNSW candidates per search: the ceiling of `limit` it serves
MAX_LIMIT = EF_SEARCH
Embedding = Sequence[float] | np.ndarray[Any, np.dtype[np.float32]]
COLUMNS = "id, agent_id, contact_id, memory_type, content, metadata, created_at"
_LOCK = "agent_memories:save"


@dataclass(frozen=True, slots=True)
class Memory:
    """A stored memory. `score` is its cosine similarity to the embedding it
    was found for (1.0 for the row a save has just created)."""

    id: UUID
    agent_id: UUID | None
    contact_id: UUID | None
    memory_type: str
    content: str
    metadata: dict[str, Any]
    created_at: datetime
    score: float


def row_memory(row: asyncpg.Record, score: float | None = None) -> Memory:
    return Memory(id=row["id"], agent_id=row["agent_id"], contact_id=row["contact_id"],
                  memory_type=row["memory_type"] or "", content=row["content"],
                  metadata=row["metadata"] or {}, created_at=row["created_at"],
                  score=float(row["score"]) if score is None else score)


def _vector(embedding: Embedding) -> np.ndarray[Any, np.dtype[np.float32]]:
    vector = np.asarray(embedding, dtype=np.float32)
    if vector.shape != (DIMENSIONS,):
        raise Invalid(f"an embedding has {DIMENSIONS} dimensions, not {vector.shape}",
                      field="embedding")
    if not np.isfinite(vector).all() or not vector.any():
        # The cosine distance of a zero vector is NaN: it would rank anywhere.
        raise Invalid("an embedding must be finite and not all zeros", field="embedding")
    return vector


def _filters(contact_id: UUID | None, agent_id: UUID | None, first: int,
             embedder: str | None = None) -> tuple[str, list[Any]]:
    """The WHERE clause beyond the org's policy, with its parameters numbered
    from `first`. `embedder`: only vectors of that embedder (another's are
    not comparable; memories saved before it name none: the offline one)."""
    parts = ["embedding IS NOT NULL"]
    args: list[Any] = []
    for column, value in (("contact_id", contact_id), ("agent_id", agent_id),
                          ("coalesce(metadata->>'embedder', 'offline')", embedder)):
        if value is not None:
            args.append(value)
            parts.append(f"{column} = ${first + len(args) - 1}")
    return " AND ".join(parts), args


def search_sql(*, indexed: bool, filters: str) -> str:
    """The ranking statement: $1 the embedding, $2 the limit, then the filters'."""
    # `+ 0` makes the ordering an expression the HNSW index cannot serve:
    # the planner ranks every row the filters leave (by the contact btree,
    # or a scan), which is exact.
    order = "embedding <=> $1" if indexed else "(embedding <=> $1) + 0"
    return (f"SELECT {COLUMNS}, 1 - (embedding <=> $1) AS score FROM agent_memories"
            f" WHERE {filters} ORDER BY {order} LIMIT $2")


async def _ranked(conn: asyncpg.Connection, vector: np.ndarray[Any, np.dtype[np.float32]], *,
                  contact_id: UUID | None, agent_id: UUID | None, limit: int,
                  indexed: bool, embedder: str | None = None) -> list[Memory]:
    where, args = _filters(contact_id, agent_id, 3, embedder)
    rows = await conn.fetch(search_sql(indexed=indexed, filters=where), vector, limit, *args)
    return [row_memory(r) for r in rows]


def _limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise Invalid(f"limit is 1 to {MAX_LIMIT}", field="limit")
    return limit


async def search(conn: asyncpg.Connection, embedding: Embedding, *,
                 contact_id: UUID | None = None, agent_id: UUID | None = None,
                 limit: int = 10, embedder: str | None = None) -> list[Memory]:
    """The org's memories nearest to `embedding`, most similar first (with
    `embedder`: only those it embedded, the only comparable ones)."""
    vector = _vector(embedding)
    _limit(limit)
    if contact_id is not None:
        return await _ranked(conn, vector, contact_id=contact_id, agent_id=agent_id,
                             limit=limit, indexed=False, embedder=embedder)
    # Transaction-local: the pool's next user of this session gets the default.
    await conn.execute(f"SELECT set_config('hnsw.ef_search', '{EF_SEARCH}', true)")
    found = await _ranked(conn, vector, contact_id=None, agent_id=agent_id, limit=limit,
                          indexed=True, embedder=embedder)
    if len(found) < limit:
        # The index's candidates ran out under the filters (see the module's
        # docstring): the exact ranking of what the filters leave.
        found = await _ranked(conn, vector, contact_id=None, agent_id=agent_id, limit=limit,
                              indexed=False, embedder=embedder)
    return found


async def exact_search(conn: asyncpg.Connection, embedding: Embedding, *,
                       contact_id: UUID | None = None, agent_id: UUID | None = None,
                       limit: int = 10) -> list[Memory]:
    """`search` without the index: every matching row ranked exactly."""
    return await _ranked(conn, _vector(embedding), contact_id=contact_id, agent_id=agent_id,
                         limit=_limit(limit), indexed=False)


async def save(conn: asyncpg.Connection, actor: Actor, *, agent_id: UUID | None,
               contact_id: UUID | None, memory_type: str, content: str,
               embedding: Embedding, metadata: dict[str, Any] | None = None,
               dedup_threshold: float = 0.92) -> tuple[Memory, bool]:
    """The memory, and whether it is new: a stored one of the org (and the
    contact, when given) at similarity >= `dedup_threshold` is returned as it
    is instead. A new one is written with its audit row and `ai.memory.saved`."""
    vector = _vector(embedding)
    content = content.strip()
    if not content:
        raise Invalid("a memory needs content", field="content")
    if not memory_type or len(memory_type) > 50:
        raise Invalid("memory_type is 1 to 50 characters", field="memory_type")
    await _visible(conn, "contacts", contact_id, "contact")
    await _visible(conn, "ai_agents", agent_id, "agent")
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                       f"{_LOCK}:{actor.org_id}:{contact_id}")
    nearest = await search(conn, vector, contact_id=contact_id, limit=1)
    if nearest and nearest[0].score >= dedup_threshold:
        return nearest[0], False
    row = await conn.fetchrow(
        "INSERT INTO agent_memories (organization_id, agent_id, contact_id, memory_type,"
        f" content, embedding, metadata) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        f" RETURNING {COLUMNS}", UUID(actor.org_id), agent_id, contact_id, memory_type,
        content, vector, metadata or {})
    if row is None:
        raise RuntimeError("INSERT INTO agent_memories returned no row")
    memory = row_memory(row, 1.0)
    await record(conn, actor, action="memory.save", resource_type="agent_memory",
                 resource_id=memory.id,
                 changes={"memory_type": memory_type, "contact_id": contact_id,
                          "agent_id": agent_id},
                 event_type="ai.memory.saved",
                 payload={"id": memory.id, "agent_id": agent_id, "contact_id": contact_id,
                          "memory_type": memory_type, "content": content})
    return memory, True


async def _visible(conn: asyncpg.Connection, table: str, row_id: UUID | None,
                   what: str) -> None:
    """A referenced row must be the org's: a foreign key alone is checked
    past row-level security and would accept another org's id."""
    # FOR KEY SHARE: the row cannot be deleted under the new memory.
    if row_id is not None and not await conn.fetchval(
            f"SELECT 1 FROM {table} WHERE id = $1 FOR KEY SHARE", row_id):
        raise NotFound(f"{what} not found")

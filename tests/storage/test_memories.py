"""storage.memories on real Postgres: a memory is saved with its audit row and
`ai.memory.saved`, a near-duplicate returns the stored row, search stays in
the org (row-level security) and in the contact when one is given, and the
org-wide search is served by the HNSW index."""
from __future__ import annotations

import asyncio
import uuid

import numpy as np
import pytest

from core.errors import Invalid, NotFound
from storage import contacts, memories
from storage.audit import Actor
from storage.db import Database
from tests.conftest import Org, create_org
from tests.storage.trail import last_seq, trail
from tests.waiting import eventually

DIM = memories.DIMENSIONS


def unit(*hot: int, noise: int = 0) -> list[float]:
    """A unit vector mostly along the `hot` axes; `noise` seeds a small random tilt."""
    vector = np.zeros(DIM, dtype=np.float32)
    vector[list(hot)] = 1.0
    if noise:
        vector += np.random.default_rng(noise).normal(0, 0.01, DIM).astype(np.float32)
    return (vector / np.linalg.norm(vector)).tolist()


async def contact(db: Database, org: Org, name: str = "C") -> uuid.UUID:
    async with db.tenant_tx(org.id) as conn:
        row = await contacts.create(conn, Actor(str(org.id)), {"first_name": name})
    return uuid.UUID(str(row["id"]))


async def save(db: Database, org: Org, content: str, embedding: list[float],
               contact_id: uuid.UUID | None = None, agent_id: uuid.UUID | None = None,
               **kw: object) -> tuple[memories.Memory, bool]:
    async with db.tenant_tx(org.id) as conn:
        return await memories.save(conn, Actor(str(org.id)), agent_id=agent_id,
                                   contact_id=contact_id, memory_type="fact", content=content,
                                   embedding=embedding, **kw)  # type: ignore[arg-type]


async def test_a_saved_memory_has_its_audit_row_and_event(db: Database, org: Org) -> None:
    who = await contact(db, org)
    after = await last_seq(db, org)
    memory, created = await save(db, org, "  Uses Salesforce  ", unit(1), who,
                                 metadata={"source": "chat"})
    assert created and memory.score == 1.0
    assert (memory.content, memory.contact_id, memory.memory_type, memory.metadata) == (
        "Uses Salesforce", who, "fact", {"source": "chat"})
    found = await trail(db, org, after)
    assert [(e["event_type"], e["payload"]["content"]) for e in found.events] == [
        ("ai.memory.saved", "Uses Salesforce")]
    assert found.events[0]["entity_id"] == memory.id
    assert found.audit[-1]["action"] == "memory.save"
    assert found.audit[-1]["changes"]["contact_id"] == str(who)


async def test_a_near_duplicate_returns_the_stored_memory(db: Database, org: Org) -> None:
    who, other = await contact(db, org), await contact(db, org)
    first, created = await save(db, org, "Budget is $40k", unit(5, 6), who)
    after = await last_seq(db, org)
    again, again_created = await save(db, org, "Our budget is $40k", unit(5, 6, noise=1), who)
    assert created and not again_created
    assert again.id == first.id and again.content == "Budget is $40k"
    assert again.score >= 0.92
    assert (await trail(db, org, after)).events == []  # nothing written
    # Another contact's memory is not a duplicate, nor is a distant one.
    theirs, theirs_created = await save(db, org, "Budget is $40k", unit(5, 6), other)
    far, far_created = await save(db, org, "Budget is $90k", unit(5, 9), who)
    assert theirs_created and far_created and len({first.id, theirs.id, far.id}) == 3
    # The threshold is the caller's.
    _, strict = await save(db, org, "Budget: $40k", unit(5, 6, noise=1), who,
                           dedup_threshold=0.9999)
    assert strict


async def test_search_ranks_by_cosine_similarity_within_a_contact(db: Database,
                                                                  org: Org) -> None:
    annie, bob = await contact(db, org, "Annie"), await contact(db, org, "Bob")
    near, _ = await save(db, org, "near", unit(10, 11), annie)
    nearer, _ = await save(db, org, "nearer", unit(10), annie)
    await save(db, org, "far", unit(12), annie)
    bobs, _ = await save(db, org, "bob's, the nearest of all", unit(10), bob)
    async with db.tenant_tx(org.id) as conn:
        mine = await memories.search(conn, unit(10), contact_id=annie, limit=2)
        everyone = await memories.search(conn, unit(10), limit=10)
        exact = await memories.exact_search(conn, unit(10), limit=10)
    assert [m.id for m in mine] == [nearer.id, near.id]
    assert mine[0].score == pytest.approx(1.0) and mine[1].score == pytest.approx(2 ** -0.5)
    assert {m.id for m in everyone[:2]} == {nearer.id, bobs.id}
    assert [m.id for m in everyone] == [m.id for m in exact]
    assert all(m.contact_id == annie for m in mine)


async def test_another_org_never_sees_the_memories(db: Database, org: Org) -> None:
    other = await create_org(db)
    who = await contact(db, org)
    mine, _ = await save(db, org, "Prefers calls in the morning", unit(20), who)
    theirs, _ = await save(db, other, "Their own memory", unit(21))
    async with db.tenant_tx(other.id) as conn:
        found = await memories.search(conn, unit(20), limit=10)
        exact = await memories.exact_search(conn, unit(20), limit=10)
        by_contact = await memories.search(conn, unit(20), contact_id=who, limit=10)
    assert [m.id for m in found] == [m.id for m in exact] == [theirs.id]
    assert by_contact == []
    # The same vector saved in the other org is new there: no dedup across orgs.
    copy, created = await save(db, other, "Prefers calls in the morning", unit(20))
    assert created and copy.id != mine.id
    # Nor can a memory be pinned on another org's contact.
    with pytest.raises(NotFound):
        await save(db, other, "smuggled", unit(22), who)


async def test_bad_embeddings_and_limits_are_refused(db: Database, org: Org) -> None:
    with pytest.raises(Invalid) as short:
        await save(db, org, "x", [1.0] * 3)
    assert short.value.field == "embedding"
    with pytest.raises(Invalid):
        await save(db, org, "x", [0.0] * DIM)
    with pytest.raises(Invalid):
        await save(db, org, "   ", unit(1))
    async with db.tenant_tx(org.id) as conn:
        with pytest.raises(Invalid):
            await memories.search(conn, unit(1), limit=0)
        with pytest.raises(Invalid):
            await memories.search(conn, unit(1), limit=memories.MAX_LIMIT + 1)


async def test_org_wide_search_uses_the_hnsw_index(db: Database, org: Org) -> None:
    await save(db, org, "indexed", unit(30))
    for n in range(150):  # an org with more memories than one contact has
        await save(db, org, f"filler {n}", unit(n % 60, noise=n + 1))
    async with db.system_tx() as conn:  # with statistics, as autovacuum keeps them
        await conn.execute("ANALYZE agent_memories")
    async with db.tenant_tx(org.id) as conn:
        # A tiny org is cheaper to scan and sort (by the org's btree) than to
        # search approximately; with both priced out the plan shows whether
        # the query's shape lets the HNSW index serve it.
        await conn.execute("SET LOCAL enable_seqscan = off")
        await conn.execute("SET LOCAL enable_sort = off")
        vector = np.asarray(unit(30), dtype=np.float32)
        plan = "\n".join(r[0] for r in await conn.fetch(
            f"EXPLAIN {memories.search_sql(indexed=True, filters='embedding IS NOT NULL')}",
            vector, 10))
        exact = "\n".join(r[0] for r in await conn.fetch(
            f"EXPLAIN {memories.search_sql(indexed=False, filters='embedding IS NOT NULL')}",
            vector, 10))
        per_contact = "\n".join(r[0] for r in await conn.fetch(
            f"EXPLAIN {memories.search_sql(indexed=False, filters='contact_id = $3')}",
            vector, 10, uuid.uuid4()))
    assert "idx_agent_memories_embedding" in plan
    # The exact ranking reads the org's own rows (the fallback of a small org).
    assert "idx_agent_memories_embedding" not in exact
    assert "idx_agent_memories_org_agent" in exact
    assert "idx_agent_memories_contact_id" in per_contact
    assert "idx_agent_memories_embedding" not in per_contact


async def test_two_saves_of_one_fact_at_once_keep_one(db: Database, org: Org) -> None:
    who = await contact(db, org)
    saved, commit = asyncio.Event(), asyncio.Event()

    async def first() -> tuple[memories.Memory, bool]:
        async with db.tenant_tx(org.id) as conn:
            result = await memories.save(conn, Actor(str(org.id)), agent_id=None,
                                         contact_id=who, memory_type="fact",
                                         content="Has 40 seats", embedding=unit(40))
            saved.set()
            await commit.wait()  # the row is written, not yet committed
        return result

    async def second_waits() -> bool:
        async with db.system_tx() as conn:
            return bool(await conn.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"))

    one = asyncio.create_task(first())
    await saved.wait()
    two = asyncio.create_task(save(db, org, "We have 40 seats", unit(40), who))
    await eventually(second_waits, timeout=10, what="the second save waiting for the first")
    commit.set()
    (kept, created), (again, again_created) = await one, await two
    assert created and not again_created and again.id == kept.id


async def test_search_by_agent(db: Database, org: Org) -> None:
    async with db.tenant_tx(org.id) as conn:
        sdr, followup = [await conn.fetchval(
            "INSERT INTO ai_agents (organization_id, name, type, prompt_template)"
            " VALUES (bidi_org(), $1, $1, 'p') RETURNING id", kind) for kind in ("sdr", "followup")]
    mine, _ = await save(db, org, "the sdr's", unit(50), agent_id=sdr)
    await save(db, org, "the followup agent's", unit(50, 51), agent_id=followup)
    async with db.tenant_tx(org.id) as conn:
        found = await memories.search(conn, unit(50), agent_id=sdr, limit=5)
    assert [m.id for m in found] == [mine.id] and found[0].agent_id == sdr

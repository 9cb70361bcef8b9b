"""Agent memory: recent turns per chat in the real Redis of the test stack
(capped, in order, expiring), long-term memories through storage and the
offline embedder (the labelled retrieval set of memory_corpus, recall@5 with
and without the contact; never another contact's or org's memory), and the
facts a quiet conversation yields."""
from __future__ import annotations

import uuid

import pytest
import redis.asyncio as aioredis

from agents.embeddings import OfflineEmbedder
from agents.facts import extract, third_person
from agents.memory import LongTermMemory, ShortTermMemory, turns_key
from storage import contacts
from storage.audit import Actor
from storage.db import Database
from tests.agents.memory_corpus import MEMORIES, PROFILES, QUERIES
from tests.conftest import Org, create_org
from tests.waiting import eventually


async def test_recent_turns_are_capped_and_in_order(redis: aioredis.Redis) -> None:
    memory = ShortTermMemory(redis, ttl=600, max_turns=5)
    org, chat = uuid.uuid4(), uuid.uuid4()
    for n in range(8):
        await memory.append(org, chat, "user" if n % 2 == 0 else "assistant", f"turn {n}")
    assert await memory.recent(org, chat, 3) == [
        ("assistant", "turn 5"), ("user", "turn 6"), ("assistant", "turn 7")]
    assert [t for _, t in await memory.recent(org, chat, 50)] == [
        f"turn {n}" for n in range(3, 8)]
    assert await redis.llen(turns_key(org, chat)) == 5
    assert await memory.recent(org, uuid.uuid4(), 5) == []  # another chat: nothing
    assert await memory.recent(org, chat, 0) == []


async def test_every_append_renews_the_ttl(redis: aioredis.Redis) -> None:
    memory = ShortTermMemory(redis, ttl=120, max_turns=50)
    org, chat = uuid.uuid4(), uuid.uuid4()
    await memory.append(org, chat, "user", "hello")
    key = turns_key(org, chat)
    assert 110_000 < await redis.pttl(key) <= 120_000
    await redis.pexpire(key, 5_000)  # as if time had passed
    await memory.append(org, chat, "assistant", "hi, how can I help?")
    assert await redis.pttl(key) > 110_000
    # Text of any kind survives the round trip.
    await memory.append(org, chat, "user", 'quotes " and \\ and ünïcode 🎉')
    assert (await memory.recent(org, chat, 1))[0][1] == 'quotes " and \\ and ünïcode 🎉'
    await memory.clear(org, chat)
    assert await redis.exists(key) == 0


async def test_turns_expire(redis: aioredis.Redis) -> None:
    memory = ShortTermMemory(redis, ttl=0.2, max_turns=5)
    org, chat = uuid.uuid4(), uuid.uuid4()
    await memory.append(org, chat, "user", "soon gone")

    async def gone() -> bool:
        return await redis.exists(turns_key(org, chat)) == 0

    await eventually(gone, timeout=5, what="the turns expiring")
    assert await memory.recent(org, chat, 5) == []


async def corpus_org(db: Database, org: Org) -> tuple[LongTermMemory, list[uuid.UUID],
                                                       dict[str, uuid.UUID]]:
    """The corpus's 20 contacts and 200 memories in `org`; returns the memory,
    the contacts and the memory id of each corpus key."""
    actor = Actor(str(org.id))
    people = []
    async with db.tenant_tx(org.id) as conn:
        for p in PROFILES:
            row = await contacts.create(conn, actor, {"first_name": p.first,
                                                      "last_name": p.last})
            people.append(uuid.UUID(str(row["id"])))
    memory = LongTermMemory(db, OfflineEmbedder())
    ids: dict[str, uuid.UUID] = {}
    for key, (kind, content) in MEMORIES.items():
        stored, created = await memory.remember(org.id, actor, agent_id=None,
                                                contact_id=people[int(key[1:3])],
                                                memory_type=kind, content=content)
        assert created, key
        ids[key] = stored.id
    return memory, people, ids


async def test_recall_finds_the_right_memory(db: Database, org: Org) -> None:
    memory, people, ids = await corpus_org(db, org)
    assert len(QUERIES) >= 50 and len(ids) == 200
    within = org_wide = 0
    for query, who, expected in QUERIES:
        want = {ids[k] for k in expected}
        mine = await memory.recall(org.id, query, contact_id=people[who], limit=5)
        assert all(m.contact_id == people[who] for m in mine), query  # never another's
        assert [m.score for m in mine] == sorted((m.score for m in mine), reverse=True)
        within += bool(want & {m.id for m in mine})
        anyone = await memory.recall(org.id, query, limit=5)
        org_wide += bool(want & {m.id for m in anyone})
    recall_contact, recall_org = within / len(QUERIES), org_wide / len(QUERIES)
    print(f"recall@5 over {len(QUERIES)} queries: {recall_contact:.3f} within the contact,"
          f" {recall_org:.3f} org-wide")
    assert recall_contact >= 0.9
    assert recall_org >= 0.9


async def test_recall_never_crosses_orgs(db: Database, org: Org) -> None:
    memory = LongTermMemory(db, OfflineEmbedder())
    other = await create_org(db)
    await memory.remember(org.id, Actor(str(org.id)), agent_id=None, contact_id=None,
                          memory_type="fact", content="Northwind uses Salesforce")
    assert await memory.recall(other.id, "Northwind uses Salesforce") == []
    mine = await memory.recall(org.id, "what does Northwind use")
    assert [m.content for m in mine] == ["Northwind uses Salesforce"]
    with pytest.raises(ValueError):
        await memory.remember(other.id, Actor(str(org.id)), agent_id=None, contact_id=None,
                              memory_type="fact", content="crossed")


async def test_remembering_a_near_duplicate_keeps_one(db: Database, org: Org) -> None:
    memory = LongTermMemory(db, OfflineEmbedder())
    actor = Actor(str(org.id))
    first, created = await memory.remember(org.id, actor, agent_id=None, contact_id=None,
                                           memory_type="preference",
                                           content="Prefers calls in the morning")
    again, again_created = await memory.remember(org.id, actor, agent_id=None,
                                                 contact_id=None, memory_type="preference",
                                                 content="prefers calls in the morning!")
    assert created and not again_created and again.id == first.id
    assert first.metadata == {"embedder": "offline"}
    both = await memory.remember_all(org.id, actor, agent_id=None, contact_id=None, facts=[
        ("preference", "Prefers calls in the morning."), ("fact", "Has 40 seats")])
    assert [(m.id == first.id, new) for m, new in both] == [(True, False), (False, True)]
    assert await memory.recall(org.id, "   ") == []
    assert await memory.recall(org.id, "the of and") == []


CONVERSATION = [
    ("user", "Hi! I prefer calls in the morning. We use Salesforce today."),
    ("assistant", "Great. We prefer email, and we use Bidi."),  # the agent's: not evidence
    ("user", "Our budget is $40k for this year. Call me Annie, please. We have 40 seats."),
    ("user", "Dana Smith, our CFO, makes the final decision. We need it live by March 15."),
    ("user", "Do you use Pipedrive? We don't use HubSpot anymore."),  # a question, a negation
    ("user", "Please don't call me after 6pm. Our contract renews in June."),
    ("user", "I prefer calls in the morning!"),  # said again
    ("contact", "I need to check with our CTO, Marco Rossi. The deadline is end of Q3."),
]


def test_facts_and_preferences_of_a_conversation() -> None:
    assert extract(CONVERSATION) == [
        ("preference", "Prefers calls in the morning"),
        ("fact", "Uses Salesforce today"),
        ("fact", "Budget is $40k"),
        ("preference", "Wants to be called Annie"),
        ("fact", "Has 40 seats"),
        ("fact", "Decision-maker: Dana Smith (CFO)"),
        ("deadline", "Deadline: they need it live by March 15"),
        ("preference", "Do not call them after 6pm"),
        ("deadline", "Contract renews in June"),
        ("fact", "Decision-maker: Marco Rossi (CTO)"),
        ("deadline", "Deadline: end of Q3"),
    ]


@pytest.mark.parametrize(("text", "expected"), [
    ("We'd rather get one invoice a quarter.",
     [("preference", "Would rather get one invoice a quarter")]),
    ("The best time to reach me is Tuesday afternoons",
     [("preference", "Best reached Tuesday afternoons")]),
    ("we are 25 sales reps and need 30 licenses",
     [("fact", "Has 25 sales reps"), ("fact", "Needs 30 licenses")]),
    ("We can spend about $15k", [("fact", "Budget is about $15k")]),
    ("Our budget is 20,000 EUR a year.", [("fact", "Budget is 20,000 EUR a year")]),
    ("Priya approves all purchases.", [("fact", "Decision-maker: Priya")]),
    ("We want to sign before the end of the quarter.",
     [("deadline", "Deadline: they want to sign before the end of the quarter")]),
    ("Thanks, talk soon!", []),
    ("do you prefer mornings?", []),
])
def test_fact_patterns(text: str, expected: list[tuple[str, str]]) -> None:
    assert extract([("user", text)]) == expected


def test_only_the_contact_speaks_for_the_contact() -> None:
    assert extract([("assistant", "I prefer calls in the morning"), ("tool", "we use X")]) == []
    assert extract([]) == []
    assert third_person("my team and I prefer our office") == (
        "their team and they prefer their office")

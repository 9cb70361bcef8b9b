"""Long-term memory search over 100,000 memories of one org.

The memories are generated CRM notes (templates x names x companies x
products x amounts and dates) embedded by the offline embedder, the same
vectors the engine stores when no embedding provider is configured: lexical
clusters with near-duplicates, not uniform noise. They are loaded by binary
COPY with the vector index dropped; the migration's own index definition is
then built and timed (`index_build_s`).

200 queries (paraphrases from other templates, so never a stored text) run
one at a time through the engine's own path: `tenant_tx` as `bidi_app`
(row-level security on) and `storage.memories.search`, then the same
queries through `exact_search` (a full ranking, the ground truth) in the
same run. recall@10 counts a returned memory when its exact similarity is
at least the 10th best exact similarity, so equal-scoring duplicates are not
counted as misses.

`--compare` also drops the HNSW index, builds IVFFlat (lists = rows/1000,
pgvector's advice) and measures it at a few `ivfflat.probes`, which is how
migration 017 chose its index.

`memory_phase()` is what bench/agents.py calls with the database of its own
stack; `main()` starts embedded Postgres in a temporary dir and migrates it.
Last line: {"memory_p95_ms", "memory_recall_at_10", "exact_p95_ms", "index_build_s"}.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# bench/ holds email.py, which would shadow the standard library's `email`.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import numpy.typing as npt  # noqa: E402

from agents.embeddings import DIMENSIONS, OfflineEmbedder  # noqa: E402
from storage import memories  # noqa: E402
from storage.db import Database, connect_admin  # noqa: E402

INDEX = "idx_agent_memories_embedding"
BATCH = 2000
CONTACTS = 2000


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


FIRST = _words("Annie Bob Carla Deepak Elena Farid Grace Hiro Ines Jamal Kira Luca Maya Nils Olga "
               "Priya Quinn Rosa Sven Tara Umar Vera Wes Xena Yusuf Zoe Aiko Bruno Chen Dana Emil "
               "Fatima Gus Hana Ivan Jonas Kemal Lena Marco Nora Omar Paula Rafael Sara Tom Ugo "
               "Valeria Will Yara Zane")
LAST = _words("Smith Garcia Chen Patel Kowalski Silva Novak Haddad Okafor Ivanova Rossi Schmidt "
              "Tanaka Larsen Dubois Moreau Singh Costa Nakamura Berg Fischer Lopez Weber Kim Ali "
              "Young Brooks Ortiz Meyer Jensen")
COMPANIES = _words("Northwind Contoso Initech Globex Umbrella Hooli Vandelay Stark Wayne "
                   "Acme Cyberdyne Soylent Tyrell Wonka Aperture Gringotts Oscorp Massive "
                   "Dynamic Bluth Dunder Sterling Prestige Monarch Nakatomi Virtucon Gekko "
                   "Zorg Rekall Oceanic Ingen Wernham Lumon Hanso Dharma Veidt Axiom Nimbus "
                   "Quantum Helix Vertex Summit Harbor Pinecrest Redwood Silverline "
                   "Brightpath Keystone Falcon Granite")
SECTORS = ("Logistics", "Foods", "Health", "Capital", "Robotics", "Media", "Labs", "Energy",
           "Retail", "Legal", "Travel", "Motors", "Telecom", "Insurance", "Realty")
PRODUCTS = ("the analytics add-on", "the inbox module", "the Enterprise plan", "the API tier",
            "the WhatsApp connector", "the reporting suite", "the Starter plan",
            "the forecasting module", "the dialer", "the campaign builder", "SSO",
            "the data warehouse sync", "the mobile app", "the sequences feature")
CRMS = ("Salesforce", "HubSpot", "Pipedrive", "Zoho", "Dynamics", "Close", "Copper",
        "spreadsheets", "Freshsales", "Monday")
MONTHS = _words("January February March April May June July August September October November "
                "December")
DAYS = _words("Monday Tuesday Wednesday Thursday Friday")
ROLES = ("CFO", "VP of Sales", "Head of RevOps", "CTO", "procurement lead", "CEO",
         "sales director", "IT manager")
TIMES = ("in the morning", "after lunch", "late in the afternoon", "before 9am",
         "on Friday mornings", "in the evening")
CHANNELS = ("a phone call", "email", "WhatsApp", "Telegram", "a video call", "text messages")
PAINS = ("duplicate contacts", "slow reporting", "missed follow-ups", "manual data entry",
         "poor email deliverability", "no mobile access", "messy pipeline stages",
         "lost WhatsApp conversations")

EXTRAS = ("", "", "", " They liked the last webinar.", " Budget approval is pending.",
          " The team is growing fast this year.", " Asked for a case study from their industry.",
          " Wants monthly billing.", " Legal needs to review the DPA.", " Very price sensitive.",
          " Their fiscal year starts in April.", " Prefers short meetings.",
          " Integration with their ERP matters.", " They had a bad rollout last year.",
          " Interested in a multi-year discount.", " Will loop in the IT team.",
          " Open to a reference call.", " Mentioned layoffs in marketing.",
          " They run support in three languages.", " Needs an answer before the board meeting.")
NOTES = (
    "{first} {last} at {company} prefers {channel} {time}.",
    "{first} from {company} said their budget is ${amount}k for {product}.",
    "{company} uses {crm} today; the contract renews in {month}.",
    "{first} {last} wants a demo of {product} next {day}.",
    "{company} has {seats} sales reps who would need seats.",
    "Decision maker at {company} is {first2} {last2}, the {role}.",
    "{first} mentioned {company} is also evaluating {crm} as an alternative.",
    "{company} needs {product} live before the end of {month}.",
    "Main pain point at {company}: {pain}.",
    "{first} asked us to call her {first}, not {first2}; reach her {time}.",
    "{first} {last} complained about {pain} in {crm}.",
    "Sent {first} at {company} a quote for {seats} seats of {product}.",
    "{company} security review needs SSO and an audit log before signing in {month}.",
    "{first} is on vacation until {month}; follow up with {first2} {last2} meanwhile.",
    "{company} pilot with {seats} users starts {day}; success metric is {pain} fixed.",
    "{first} {last} ({role}) must approve any spend over ${amount}k at {company}.",
)
QUERIES = (
    "when is the best time to reach {first} {last}",
    "what budget does {company} have for {product}",
    "which CRM does {company} use and when does it renew",
    "demo request for {product} from {first}",
    "how many sales reps does {company} have",
    "who is the decision maker at {company}",
    "is {company} looking at a competitor",
    "deadline for {company} to go live",
    "what problems does {company} have with {pain}",
    "what name does {first} want to be called",
    "quote for seats at {company}",
    "{company} security requirements SSO",
    "who covers for {first} while away",
    "{company} pilot success metric",
    "who approves spending at {company}",
)


def _slots(rng: random.Random) -> dict[str, object]:
    return {"first": rng.choice(FIRST), "last": rng.choice(LAST), "first2": rng.choice(FIRST),
            "last2": rng.choice(LAST),
            "company": f"{rng.choice(COMPANIES)} {rng.choice(SECTORS)}",
            "product": rng.choice(PRODUCTS), "crm": rng.choice(CRMS),
            "month": rng.choice(MONTHS), "day": rng.choice(DAYS), "role": rng.choice(ROLES),
            "time": rng.choice(TIMES), "channel": rng.choice(CHANNELS), "pain": rng.choice(PAINS),
            "amount": rng.randrange(5, 250), "seats": rng.randrange(3, 500)}


def _fill(template: str, rng: random.Random) -> str:
    return template.format(**_slots(rng))


def notes(count: int, seed: int = 7) -> list[str]:
    """Notes of one to three sentences about one account, as a rep writes
    them after a call: the sentences share the person and the company."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        account = _slots(rng)
        parts = []
        for template in rng.sample(NOTES, rng.choice((1, 2, 2, 3))):
            slots = {**_slots(rng), "first": account["first"], "last": account["last"],
                     "company": account["company"]}
            parts.append(template.format(**slots))
        out.append(" ".join(parts) + rng.choice(EXTRAS))
    return out


def query_texts(count: int, seed: int = 11) -> list[str]:
    rng = random.Random(seed)
    return [_fill(rng.choice(QUERIES), rng) for _ in range(count)]


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


Truth = list[list[tuple[uuid.UUID, float]]]


async def seed(db: Database, embedder: OfflineEmbedder,
               count: int) -> tuple[uuid.UUID, str, list[uuid.UUID], npt.NDArray[np.float32]]:
    """One org with CONTACTS contacts and `count` memories spread over them;
    returns the org, the dropped index's definition, and the memories' ids
    and vectors (the exact ground truth is computed from these)."""
    assert db.system is not None
    ids = [uuid.uuid4() for _ in range(count)]
    matrix = np.empty((count, DIMENSIONS), dtype=np.float32)
    async with db.system.acquire() as conn:
        org = await conn.fetchval("INSERT INTO organizations (name, slug) VALUES ($1, $2)"
                                  " RETURNING id", "Memory bench", f"mem-{uuid.uuid4().hex[:8]}")
        contacts = [r["id"] for r in await conn.fetch(
            "INSERT INTO contacts (organization_id, first_name) SELECT $1, 'c' || n"
            " FROM generate_series(1, $2) n RETURNING id", org, CONTACTS)]
        indexdef = await conn.fetchval("SELECT indexdef FROM pg_indexes WHERE indexname = $1",
                                       INDEX)
        await conn.execute(f"DROP INDEX IF EXISTS {INDEX}")
        texts = notes(count)
        for start in range(0, count, BATCH):
            chunk = texts[start:start + BATCH]
            matrix[start:start + len(chunk)] = embedder.embed_array(chunk)
            await conn.copy_records_to_table(
                "agent_memories",
                columns=["id", "organization_id", "contact_id", "memory_type", "content",
                         "embedding"],
                records=[(ids[start + i], org, contacts[(start + i) % CONTACTS], "fact", text,
                          matrix[start + i]) for i, text in enumerate(chunk)])
        await conn.execute("ANALYZE agent_memories")
    return org, str(indexdef), ids, matrix


def exact_truth(ids: list[uuid.UUID], matrix: npt.NDArray[np.float32],
                vectors: npt.NDArray[np.float32], k: int = 10) -> Truth:
    """The exact top k of every query by brute force (rows are unit vectors:
    cosine similarity is the dot product)."""
    scores = vectors @ matrix.T
    top = np.argpartition(-scores, k, axis=1)[:, :k]
    out: Truth = []
    for q, row in enumerate(top):
        ranked = sorted(row, key=lambda i: -scores[q, i])
        out.append([(ids[i], float(scores[q, i])) for i in ranked])
    return out


async def build(db: Database, indexdef: str) -> float:
    assert db.system is not None
    async with db.system.acquire() as conn:
        # The build's graph must fit in memory, or it slows down many times over.
        await conn.execute("SET maintenance_work_mem = '2GB'")
        started = time.perf_counter()
        await conn.execute(indexdef)
        return time.perf_counter() - started


async def timed(db: Database, org: uuid.UUID, vectors: Sequence[Any], exact: bool,
                **filters: Any) -> tuple[list[float], list[list[memories.Memory]]]:
    find = memories.exact_search if exact else memories.search
    latencies: list[float] = []
    results: list[list[memories.Memory]] = []
    for vector in vectors:
        started = time.perf_counter()
        async with db.tenant_tx(org) as conn:
            results.append(await find(conn, vector, limit=10, **filters))
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies, results


def recall(found: list[list[memories.Memory]], truth: Truth, k: int = 10) -> float:
    """Tie-aware recall@k: a hit is a distinct memory scoring at least the kth
    exact score (float rounding of the two computations allowed for)."""
    total = 0.0
    for got, want in zip(found, truth, strict=False):
        floor = want[k - 1][1] - 1e-5
        hits = {m.id for m in got[:k] if m.score >= floor}
        total += min(len(hits), k) / k
    return total / len(found)


async def ivfflat(db: Database, org: uuid.UUID, vectors: Sequence[Any], count: int,
                  truth: Truth) -> dict[str, float]:
    """IVFFlat in place of HNSW: build time, and p95 and recall at some probes."""
    assert db.system is not None
    lists = max(10, count // 1000)
    async with db.system.acquire() as conn:
        await conn.execute(f"DROP INDEX {INDEX}")
    seconds = await build(db, f"CREATE INDEX {INDEX} ON agent_memories USING ivfflat"
                              f" (embedding vector_cosine_ops) WITH (lists = {lists})")
    out = {"ivfflat_build_s": round(seconds, 2), "ivfflat_lists": float(lists)}
    for probes in (1, 10, 20):
        latencies: list[float] = []
        found: list[list[memories.Memory]] = []
        for vector in vectors:
            started = time.perf_counter()
            async with db.tenant_tx(org) as conn:
                await conn.execute(f"SET LOCAL ivfflat.probes = {probes}")
                rows = await conn.fetch(
                    f"SELECT {memories.COLUMNS}, 1 - (embedding <=> $1) AS score"
                    " FROM agent_memories ORDER BY embedding <=> $1 LIMIT 10", vector)
            latencies.append((time.perf_counter() - started) * 1000)
            found.append([memories.row_memory(r) for r in rows])
        out[f"ivfflat_probes{probes}_p95_ms"] = round(p95(latencies), 2)
        out[f"ivfflat_probes{probes}_recall_at_10"] = round(recall(found, truth), 4)
    return out


async def memory_phase(database_url: str, app_password: str, *, count: int = 100_000,
                       queries: int = 200, exact_sample: int = 50,
                       compare: bool = False) -> dict[str, float]:
    """Seed, build, then measure; `exact_sample` of the queries also run
    through `exact_search` in Postgres (its latency, and a check that the
    brute-force truth is what Postgres ranks)."""
    embedder = OfflineEmbedder()
    async with Database(database_url, app_password, max_size=4) as db:
        started = time.perf_counter()
        org, indexdef, ids, matrix = await seed(db, embedder, count)
        print(f"seeded {count} memories in {time.perf_counter() - started:.1f} s", flush=True)
        index_build_s = await build(db, indexdef)
        print(f"built {indexdef} in {index_build_s:.1f} s", flush=True)
        vectors = embedder.embed_array(query_texts(queries))
        truth = exact_truth(ids, matrix, vectors)
        del matrix
        async with db.tenant_tx(org) as conn:
            plan = [r[0] for r in await conn.fetch(
                "EXPLAIN " + memories.search_sql(indexed=True, filters="embedding IS NOT NULL"),
                vectors[0], 10)]
        print("plan:", next((line.strip() for line in plan if "Scan" in line), plan[0]),
              flush=True)
        await timed(db, org, vectors[:20], exact=False)  # warm the index's pages
        indexed_ms, found = await timed(db, org, vectors, exact=False)
        exact_ms, exact = await timed(db, org, vectors[:exact_sample], exact=True)
        agree = recall(exact, truth)
        if agree < 0.999:
            raise RuntimeError(f"Postgres's exact ranking disagrees with brute force ({agree})")
        figures = {"memory_p95_ms": round(p95(indexed_ms), 2),
                   "memory_recall_at_10": round(recall(found, truth), 4),
                   "exact_p95_ms": round(p95(exact_ms), 2),
                   "index_build_s": round(index_build_s, 2)}
        async with db.tenant_tx(org) as conn:
            contact = await conn.fetchval("SELECT contact_id FROM agent_memories LIMIT 1")
        contact_ms, _ = await timed(db, org, vectors, exact=False, contact_id=contact)
        print(f"index: p50 {sorted(indexed_ms)[len(indexed_ms) // 2]:.2f} ms; exact scan:"
              f" {exact_sample} queries, the same ranking as brute force; exact/index p95"
              f" {figures['exact_p95_ms'] / figures['memory_p95_ms']:.0f}x; one contact's"
              f" search p95 {p95(contact_ms):.2f} ms", flush=True)
        if compare:
            print(json.dumps(await ivfflat(db, org, vectors, count, truth)), flush=True)
    return figures


async def _prepare(dsn: str, password: str) -> None:
    from storage.migrate import migrate

    conn = await connect_admin(dsn)
    try:
        await migrate(conn, app_password=password)
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--compare", action="store_true", help="also measure IVFFlat")
    args = parser.parse_args()
    from storage.embedded import EmbeddedPostgres

    with tempfile.TemporaryDirectory(prefix="bidi-bench-memory-") as tmp:
        postgres = EmbeddedPostgres(Path(tmp))
        dsn = postgres.start()
        try:
            password = secrets.token_urlsafe(24)
            asyncio.run(_prepare(dsn, password))
            figures = asyncio.run(memory_phase(dsn, password, count=args.count,
                                               queries=args.queries, compare=args.compare))
        finally:
            postgres.stop()
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()

"""The virtual actor runtime on this machine, load generator included.

- tell(): messages/s acknowledged by the hosts, to 10,000 distinct chat actors;
- ask(): round trip p50/p99 at a steady 1,000 asks/s;
- activation: chat actors/s loaded from Postgres (100,000 chats);
- memory: host RSS growth per idle resident chat actor, over 100,000 of them;
- group commit: message + event rows/s persisted by the committer under
  1,000 concurrent turns.
Last line: JSON with exactly the keys the README records.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

# bench/ holds email.py and telegram.py, which would shadow the standard
# library's `email` and the Bot API client's `telegram`: off the path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil  # noqa: E402
import ray  # noqa: E402

from actors.messages import Ping  # noqa: E402
from actors.runtime.client import NAMESPACE, ActorSystem, host_name  # noqa: E402
from core.settings import load_settings  # noqa: E402
from serve.stack import Stack  # noqa: E402
from storage.committer import GroupCommitter, Write  # noqa: E402
from storage.db import Database  # noqa: E402

MESSAGE_INSERT = ("INSERT INTO messages (id, chat_id, organization_id, sender_type, content,"
                  " is_incoming, external_id) VALUES ($1, $2, $3, 'contact', $4, true, $5)")
EVENT_INSERT = ("INSERT INTO events (organization_id, event_type, entity_type, entity_id,"
                " payload) VALUES ($1, 'message.received', 'message', $2, $3)")


def log(text: str) -> None:
    print(text, flush=True)


async def seed(db: Database, chats: int) -> tuple[str, list[str]]:
    async with db.system_tx() as conn:
        org = await conn.fetchval(
            "INSERT INTO organizations (name, slug) VALUES ('bench', $1) RETURNING id",
            f"bench-{uuid.uuid4().hex[:8]}")
    async with db.tenant_tx(org) as conn:
        rows = await conn.fetch(
            "INSERT INTO chats (organization_id, channel, channel_thread_id)"
            " SELECT $1, 'api', 't' || g FROM generate_series(1, $2) g RETURNING id", org, chats)
    return str(org), [str(r["id"]) for r in rows]


def hosts_rss(pids: list[int]) -> int:
    return sum(psutil.Process(pid).memory_info().rss for pid in pids)


async def host_stats(n: int) -> list[dict]:
    return list(await asyncio.gather(*(
        ray.get_actor(host_name(i), namespace=NAMESPACE).stats.remote() for i in range(n))))


async def activate(system: ActorSystem, hosts: int, org: str, keys: list[str]) -> float:
    before = sum(s["activations"].get("chat", 0) for s in await host_stats(hosts))
    started = time.perf_counter()
    for start in range(0, len(keys), 20_000):
        await asyncio.gather(*(system.tell("chat", org, k, Ping())
                               for k in keys[start:start + 20_000]))
    while True:
        done = sum(s["activations"].get("chat", 0) for s in await host_stats(hosts)) - before
        if done >= len(keys):
            return len(keys) / (time.perf_counter() - started)
        await asyncio.sleep(0.02)


async def tell_throughput(system: ActorSystem, org: str, keys: list[str],
                          total: int) -> float:
    message = Ping()
    wave = len(keys)
    started = time.perf_counter()
    sent = 0
    inflight: list[asyncio.Future] = []
    while sent < total:
        inflight.append(asyncio.gather(*(system.tell("chat", org, k, message) for k in keys)))
        sent += wave
        if len(inflight) >= 4:
            await inflight.pop(0)
    await asyncio.gather(*inflight)
    return sent / (time.perf_counter() - started)


async def ask_latency(system: ActorSystem, org: str, keys: list[str], rate: float,
                      seconds: float) -> tuple[float, float]:
    latencies: list[float] = []
    tasks = []

    async def one(key: str) -> None:
        started = time.perf_counter()
        await system.ask("chat", org, key, Ping())
        latencies.append((time.perf_counter() - started) * 1000)

    loop = asyncio.get_running_loop()
    start = loop.time()
    n = int(rate * seconds)
    for i in range(n):
        delay = start + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(random.choice(keys))))
    await asyncio.gather(*tasks)
    latencies.sort()
    return latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99)]


async def group_commit(db: Database, org: str, chats: list[str], turns: int,
                       seconds: float) -> float:
    rows = 0
    async with GroupCommitter(db) as committer:
        stop = time.monotonic() + seconds

        async def turn_loop(worker: int) -> None:
            nonlocal rows
            chat = chats[worker % len(chats)]
            n = 0
            while time.monotonic() < stop:
                message_id = uuid.uuid4()
                await committer.commit(org, [
                    Write(MESSAGE_INSERT, (message_id, uuid.UUID(chat), uuid.UUID(org),
                                           f"hello {n}", f"{worker}-{n}")),
                    Write(EVENT_INSERT, (uuid.UUID(org), message_id, {"chat_id": chat})),
                ])
                rows += 2
                n += 1

        started = time.perf_counter()
        await asyncio.gather(*(turn_loop(w) for w in range(turns)))
        elapsed = time.perf_counter() - started
    return rows / elapsed


async def run(stack: Stack, args: argparse.Namespace) -> dict[str, float]:
    settings = stack.settings
    assert settings.database_url is not None
    hosts = settings.hosts
    pids = [await ray.get_actor(host_name(i), namespace=NAMESPACE).pid.remote()
            for i in range(hosts)]
    async with Database(settings.database_url, settings.app_db_password.get_secret_value()) as db:
        org, chats = await seed(db, args.resident)
        log(f"seeded {len(chats)} chats")
        system = ActorSystem(hosts)
        rss_before = hosts_rss(pids)
        activations = await activate(system, hosts, org, chats)
        stats = await host_stats(hosts)
        resident = sum(s["resident"].get("chat", 0) for s in stats)
        kb = (hosts_rss(pids) - rss_before) / 1024 / resident
        log(f"activation {activations:,.0f} actors/s; {resident:,} resident chats, "
            f"{kb:.2f} KB each")
        tell = await tell_throughput(system, org, chats[: args.tell_actors], args.tells)
        log(f"tell {tell:,.0f} msg/s to {args.tell_actors:,} actors")
        p50, p99 = await ask_latency(system, org, chats, args.ask_rate, args.ask_seconds)
        log(f"ask at {args.ask_rate:.0f}/s: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
        await system.close()
        commit = await group_commit(db, org, chats[:1000], args.turns, args.commit_seconds)
        log(f"group commit {commit:,.0f} rows/s under {args.turns} concurrent turns")
    return {"tell_msgs_per_s": round(tell), "ask_p50_ms": round(p50, 2),
            "ask_p99_ms": round(p99, 2), "kb_per_idle_chat": round(kb, 2),
            "resident_chats": resident, "activations_per_s": round(activations),
            "commit_rows_per_s": round(commit)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--resident", type=int, default=100_000)
    parser.add_argument("--tell-actors", type=int, default=10_000)
    parser.add_argument("--tells", type=int, default=300_000)
    parser.add_argument("--ask-rate", type=float, default=1000)
    parser.add_argument("--ask-seconds", type=float, default=5)
    parser.add_argument("--turns", type=int, default=1000)
    parser.add_argument("--commit-seconds", type=float, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bidi-bench-") as tmp:
        settings = load_settings(data_dir=tmp, hosts=2, pool_size=10)
        with Stack(settings, serve=False, dashboard=False) as stack:
            figures = asyncio.run(run(stack, args))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

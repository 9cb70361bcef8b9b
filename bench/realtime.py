"""Realtime messaging through Serve's HTTP ingress, load generator included.

1. ingest: signed inbound messages (API channel) POSTed as fast as the engine
   takes them over keep-alive connections, spread over many chats, while one
   WebSocket subscriber of the org counts `message.received` frames. Figure:
   messages persisted AND delivered to the subscriber per second.
2. end to end: a steady 300 msg/s; each message carries its send time, and the
   subscriber's clock (same process) gives inbound POST -> WS frame latency.
3. fan-out: 5,000 WebSocket connections on the org topic; messages at a fixed
   rate; figure: event frames delivered per second across all connections.

Last line: {"ingest_msgs_per_s", "e2e_p50_ms", "e2e_p99_ms", "ws_connections",
"ws_deliveries_per_s"}.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.loadgen import exchange, raw_request, same_priority  # noqa: E402
from channels import signing  # noqa: E402
from core.security import issue_access_token  # noqa: E402
from core.settings import Settings, load_settings  # noqa: E402
from serve.stack import Stack, free_port  # noqa: E402
from storage.db import Database  # noqa: E402


async def seed(settings: Settings) -> tuple[str, str, str, str]:
    """An org, its owner and an API inbox; returns (org, user, integration, secret)."""
    import httpx

    assert settings.database_url is not None
    async with Database(settings.database_url, settings.app_db_password.get_secret_value()) as db, \
            db.system_tx() as conn:
        org = await conn.fetchval(
            "INSERT INTO organizations (name, slug) VALUES ('Bench', $1) RETURNING id",
            f"bench-{uuid.uuid4().hex[:8]}")
        user = await conn.fetchval(
            "INSERT INTO users (email, name) VALUES ($1, 'Owner') RETURNING id",
            f"owner-{uuid.uuid4().hex[:8]}@example.com")
        await conn.execute("INSERT INTO organization_members (organization_id, user_id,"
                           " role) VALUES ($1, $2, 'owner')", org, user)
    token = issue_access_token(settings.jwt_secret.get_secret_value(), str(user), str(org), "owner",
                               ttl=3600)
    async with httpx.AsyncClient(base_url=f"http://{settings.host}:{settings.port}") as api:
        resp = await api.post("/v1/integrations", json={"type": "api", "name": "bench"},
                              headers={"Authorization": f"Bearer {token}"})
        resp.raise_for_status()
        body = resp.json()
    return str(org), str(user), body["id"], body["secret"]


def inbound(host: str, port: int, integration: str, secret: str, thread: str,
            text: str) -> bytes:
    body = json.dumps({"external_message_id": uuid.uuid4().hex, "thread_id": thread,
                       "sender": {"id": thread, "name": "Bench"}, "text": text}).encode()
    headers = signing.headers(secret, "msg_" + uuid.uuid4().hex, body)
    headers["Content-Type"] = "application/json"
    return raw_request("POST", host, port, f"/v1/channels/api/{integration}/messages",
                       headers, body)


class Subscriber:
    """One WebSocket on the org topic, counting message.received frames."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.count = 0
        self.last_at = 0.0
        self.latencies: list[float] = []
        self.ws: Any = None
        self.task: asyncio.Task[None] | None = None

    async def start(self, measure: bool) -> None:
        import websockets

        self.ws = await websockets.connect(self.url, max_queue=None, open_timeout=60,
                                           ping_interval=None, compression=None)
        await self.ws.send(json.dumps({"type": "subscribe", "topics": ["org"], "ref": 1}))
        while json.loads(await self.ws.recv()).get("type") != "subscribed":
            pass
        self.task = asyncio.create_task(self._read(measure))

    async def _read(self, measure: bool) -> None:
        import websockets

        try:
            async for raw in self.ws:
                if measure:
                    frame = json.loads(raw)
                    if frame.get("event_type") != "message.received":
                        continue
                    now = time.perf_counter()
                    text = frame["data"]["content"]
                    if text.startswith("t="):
                        self.latencies.append((now - float(text[2:])) * 1000)
                    self.last_at = now
                elif b"message.received" not in (raw if isinstance(raw, bytes)
                                                 else raw.encode()):
                    continue
                self.count += 1
        except websockets.ConnectionClosed:
            pass


async def ingest_phase(args: dict[str, Any]) -> dict[str, float]:
    host, port = args["host"], args["port"]
    sub = Subscriber(args["ws_url"])
    await sub.start(measure=True)
    requests = [inbound(host, port, args["integration"], args["secret"], f"chat-{i % 500}",
                        f"n{i}") for i in range(args["ingest_requests"])]
    accepted = 0
    stop_at = time.monotonic() + args["seconds"]
    cursor = iter(requests)

    async def worker() -> None:
        nonlocal accepted
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for request in cursor:
                if time.monotonic() > stop_at:
                    return
                if await exchange(reader, writer, request):
                    accepted += 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(args["connections"])))
    posted_for = time.perf_counter() - started
    deadline = time.monotonic() + 60
    while sub.count < accepted and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    delivered_for = sub.last_at - started
    await sub.ws.close()
    return {"accepted": accepted, "delivered": sub.count, "posted_s": posted_for,
            "ingest_msgs_per_s": min(accepted, sub.count) / delivered_for}


async def latency_phase(args: dict[str, Any]) -> dict[str, float]:
    host, port, rate = args["host"], args["port"], args["rate"]
    sub = Subscriber(args["ws_url"])
    await sub.start(measure=True)
    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(64):
        pool.put_nowait(await asyncio.open_connection(host, port))
    errors = 0

    async def one(n: int) -> None:
        nonlocal errors
        conn = await pool.get()
        request = inbound(host, port, args["integration"], args["secret"], f"lat-{n % 200}",
                          f"t={time.perf_counter()!r}")
        if not await exchange(*conn, request):
            errors += 1
        pool.put_nowait(conn)

    total = int(rate * args["seconds"])
    tasks = []
    start = time.perf_counter()
    for n in range(total):
        delay = start + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(n)))
    await asyncio.gather(*tasks)
    deadline = time.monotonic() + 30
    while len(sub.latencies) < total - errors and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await sub.ws.close()
    lat = sorted(sub.latencies[int(rate):])  # skip the first second (warm-up)
    return {"e2e_p50_ms": lat[len(lat) // 2], "e2e_p99_ms": lat[int(len(lat) * 0.99)],
            "samples": len(lat), "errors": errors}


def _fanout_child(conn: Any, url: str, count: int, seconds: float, ready: Any,
                  go: Any) -> None:
    """`count` lean clients on the org topic (bench.wsclient: the `websockets`
    library would spend more CPU per frame here than the engine does)."""
    import uvloop

    from bench.wsclient import WsClient, connect

    same_priority()

    async def subscribed(client: WsClient) -> None:
        client.send_text(json.dumps({"type": "subscribe", "topics": ["org"], "ref": 1}))
        while json.loads(await client.recv()).get("type") != "subscribed":
            pass
        client.keep = False  # from here on only counted
        client.inbox.clear()

    async def run() -> None:
        clients: list[WsClient] = []
        for start in range(0, count, 100):
            batch = await asyncio.gather(*(connect(url) for _ in range(min(100, count - start))))
            await asyncio.gather(*(subscribed(c) for c in batch))
            clients.extend(batch)
        ready.set()
        while not go.is_set():
            await asyncio.sleep(0.01)
        base = sum(c.count for c in clients)
        began = time.perf_counter()
        await asyncio.sleep(seconds)
        got = sum(c.count for c in clients) - base
        elapsed = time.perf_counter() - began
        open_ = sum(1 for c in clients if c.open)
        conn.send({"deliveries": got, "seconds": elapsed, "open": open_})
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)

    uvloop.run(run())


async def fanout_phase(args: dict[str, Any]) -> dict[str, float]:
    ctx = mp.get_context("spawn")
    parts = args["fanout_procs"]
    per = args["ws_connections"] // parts
    pipes, procs, readies = [], [], []
    go = ctx.Event()
    for _ in range(parts):
        parent, child = ctx.Pipe(duplex=False)
        ready = ctx.Event()
        proc = ctx.Process(target=_fanout_child, args=(child, args["ws_url"], per,
                                                       args["seconds"], ready, go))
        proc.start()
        pipes.append(parent)
        procs.append(proc)
        readies.append(ready)
    while not all(r.is_set() for r in readies):
        await asyncio.sleep(0.1)
    host, port, rate = args["host"], args["port"], args["fanout_rate"]
    reader, writer = await asyncio.open_connection(host, port)
    print(f"fan-out: {args['ws_connections']:,} connected, measuring", flush=True)
    go.set()
    start = time.perf_counter()
    n = 0
    while time.perf_counter() - start < args["seconds"] + 1:
        await exchange(reader, writer, inbound(host, port, args["integration"],
                                                args["secret"], "fanout", f"f{n}"))
        n += 1
        delay = start + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
    writer.close()
    results = [await asyncio.to_thread(p.recv) for p in pipes]
    for proc in procs:
        proc.join()
    deliveries = sum(r["deliveries"] for r in results)
    seconds = max(r["seconds"] for r in results)
    return {"ws_connections": sum(r["open"] for r in results),
            "ws_deliveries_per_s": deliveries / seconds, "events_per_s": rate}


def _phase_child(conn: Any, phase: str, args: dict[str, Any]) -> None:
    import uvloop

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    same_priority()
    fn = {"ingest": ingest_phase, "latency": latency_phase, "fanout": fanout_phase}[phase]
    conn.send(uvloop.run(fn(args)))


def run_phase(phase: str, args: dict[str, Any]) -> dict[str, float]:
    """Each phase in its own process (uvloop), apart from the engine's driver."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_phase_child, args=(child, phase, args))
    proc.start()
    result: dict[str, float] = parent.recv()
    proc.join()
    return result


async def _timings(redis_url: str) -> dict[str, Any]:
    from storage.redis import open_redis
    from storage.timings import collect

    client = open_redis(redis_url)
    try:
        return await collect(client)
    finally:
        await client.aclose()


def timings_now(redis_url: str) -> dict[str, Any]:
    """Every process's hop histograms, after their next push."""
    time.sleep(1.5)
    return asyncio.run(_timings(redis_url))


def hop_table(before: dict[str, Any], after: dict[str, Any]) -> dict[str, dict[str, float]]:
    """p50 / p99 / mean in ms and the count of each hop between two snapshots."""
    from core.timings import HOPS, diff, mean, quantile

    table: dict[str, dict[str, float]] = {}
    for hop, snap in sorted(diff(after, before).items(),
                            key=lambda kv: HOPS.index(kv[0]) if kv[0] in HOPS else 99):
        if snap["count"] <= 0:
            continue
        table[hop] = {"p50_ms": (quantile(snap, 0.5) or 0) * 1000,
                      "p99_ms": (quantile(snap, 0.99) or 0) * 1000,
                      "mean_ms": (mean(snap) or 0) * 1000, "count": snap["count"]}
    return table


def print_hops(title: str, table: dict[str, dict[str, float]]) -> None:
    print(f"{title} (engine's own histograms; p50/p99 are bucket upper bounds, <=8% high):")
    for hop, row in table.items():
        print(f"  {hop:<13} p50 {row['p50_ms']:8.2f} ms  p99 {row['p99_ms']:8.2f} ms"
              f"  mean {row['mean_ms']:8.2f} ms  n={row['count']:,.0f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--connections", type=int, default=64, help="ingest HTTP connections")
    parser.add_argument("--rate", type=float, default=300, help="latency phase msg/s")
    parser.add_argument("--ws", type=int, default=5000, help="fan-out WebSocket connections")
    parser.add_argument("--fanout-rate", type=float, default=10, help="fan-out events/s")
    parser.add_argument("--fanout-procs", type=int, default=2)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--phases", default="ingest,latency,fanout")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # HAProxy inherits it
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bidi-bench-") as tmp:
        settings = load_settings(data_dir=tmp, port=free_port(), hosts=2,
                                 serve_replicas=args.replicas, rate_per_minute=10**9,
                                 rate_burst=10**9, pool_size=20)
        with Stack(settings, dashboard=False) as stack:
            settings = stack.settings
            org, user, integration, secret = asyncio.run(seed(settings))
            token = issue_access_token(settings.jwt_secret.get_secret_value(), user, org, "owner",
                                       ttl=3600)
            common = {"host": settings.host, "port": settings.port,
                      "ws_url": f"{stack.ws_url}?token={token}", "integration": integration,
                      "secret": secret, "seconds": args.seconds}
            phases = args.phases.split(",")
            if "ingest" in phases:
                before = timings_now(settings.redis_url)
                got = run_phase("ingest", {**common, "connections": args.connections,
                                           "ingest_requests": int(3000 * args.seconds)})
                print_hops("hops at full ingest",
                           hop_table(before, timings_now(settings.redis_url)))
                print(f"ingest: {got['accepted']:,.0f} accepted, {got['delivered']:,.0f}"
                      f" delivered: {got['ingest_msgs_per_s']:,.0f} msg/s", flush=True)
                figures["ingest_msgs_per_s"] = got["ingest_msgs_per_s"]
            if "latency" in phases:
                before = timings_now(settings.redis_url)
                got = run_phase("latency", {**common, "rate": args.rate})
                print_hops(f"hops at {args.rate:.0f} msg/s",
                           hop_table(before, timings_now(settings.redis_url)))
                print(f"e2e at {args.rate:.0f} msg/s: p50 {got['e2e_p50_ms']:.1f} ms, p99"
                      f" {got['e2e_p99_ms']:.1f} ms ({got['samples']:.0f} samples,"
                      f" {got['errors']:.0f} errors)", flush=True)
                figures["e2e_p50_ms"] = got["e2e_p50_ms"]
                figures["e2e_p99_ms"] = got["e2e_p99_ms"]
            if "fanout" in phases:
                got = run_phase("fanout", {**common, "ws_connections": args.ws,
                                           "fanout_rate": args.fanout_rate,
                                           "fanout_procs": args.fanout_procs})
                print(f"fan-out: {got['ws_connections']:,.0f} connections,"
                      f" {got['ws_deliveries_per_s']:,.0f} deliveries/s at"
                      f" {got['events_per_s']:.0f} events/s", flush=True)
                figures["ws_connections"] = got["ws_connections"]
                figures["ws_deliveries_per_s"] = got["ws_deliveries_per_s"]
    keys = ("ingest_msgs_per_s", "e2e_p50_ms", "e2e_p99_ms", "ws_connections",
            "ws_deliveries_per_s")
    print(json.dumps({k: round(figures.get(k, 0.0), 2) for k in keys}))


if __name__ == "__main__":
    main()

"""Realtime messaging through Serve's HTTP ingress, load generator included,
beside what it is compared with, in the same run.

1. ingest, in interleaved rounds with the same load generator and
   connections (distinct, correctly signed API-channel messages over
   keep-alive connections, spread over 500 chats, after a warm-up):
   - the engine: one WebSocket subscriber of the org counts the
     `message.received` frames; figure: messages persisted AND delivered
     per second;
   - the baseline, the service a team would write without the engine
     (bench/baseline.py: verify, one INSERT in its own transaction, one
     Redis PUBLISH), counted by a Redis subscriber the same way;
   - the no-op ceiling: `GET /healthz` with the same headers, answered by
     the engine's ingress fast path (HAProxy, the replica, serve/fastpath.py)
     doing nothing: what the HTTP path alone allows.
2. end to end at a steady 300 msg/s: each message carries its send time;
   the subscriber's clock (same process) gives inbound POST -> WebSocket
   frame latency (engine) and POST -> Redis subscriber (baseline), with the
   engine's hop histograms (core.timings) over the same interval.
3. fan-out: 5,000 WebSocket connections on the org topic; messages at a fixed
   rate; figure: event frames delivered per second across all connections.

Last line: {"ingest_msgs_per_s", "baseline_msgs_per_s", "ingest_ratio",
"noop_rps", "ingest_vs_noop", "e2e_p50_ms", "e2e_p99_ms", "ws_connections",
"ws_deliveries_per_s"}.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.baseline import CHANNEL as BASELINE_CHANNEL  # noqa: E402
from bench.baseline import run_baseline  # noqa: E402
from bench.cpu import cpu_seconds, spent  # noqa: E402
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


class RedisSubscriber:
    """The baseline's subscriber: one Redis pub/sub connection on its channel,
    counting frames and timing those whose text carries a send time."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.count = 0
        self.last_at = 0.0
        self.latencies: list[float] = []
        self.ws: Any = self  # close() as the WebSocket subscriber's
        self.task: asyncio.Task[None] | None = None

    async def start(self, measure: bool) -> None:
        from redis.asyncio import Redis

        self.client = Redis.from_url(self.url)
        self.pubsub = self.client.pubsub()
        await self.pubsub.subscribe(BASELINE_CHANNEL)
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.pubsub.listen():
            if message["type"] != "message":
                continue
            now = time.perf_counter()
            text = json.loads(message["data"])["text"]
            if text.startswith("t="):
                self.latencies.append((now - float(text[2:])) * 1000)
            self.last_at = now
            self.count += 1

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
        await self.pubsub.aclose()
        await self.client.aclose()


def _subscriber(args: dict[str, Any]) -> Subscriber | RedisSubscriber | None:
    if args["target"] == "engine":
        return Subscriber(args["ws_url"])
    if args["target"] == "baseline":
        return RedisSubscriber(args["redis_url"])
    return None


def _request(args: dict[str, Any], thread: str, text: str) -> bytes:
    host, port = args["host"], args["port"]
    if args["target"] == "noop":
        # The same headers as an inbound message, no body: a request that does
        # nothing, answered by the ingress's fast path.
        headers = signing.headers(args["secret"], "msg_" + uuid.uuid4().hex, b"{}")
        return raw_request("GET", host, port, "/healthz", headers)
    return inbound(host, port, args["integration"], args["secret"], thread, text)


async def _hammer(args: dict[str, Any], requests: list[bytes], seconds: float) -> tuple[int, float]:
    """POST `requests` over `connections` keep-alive connections for `seconds`;
    (how many got a 2xx, seconds spent)."""
    host, port = args["host"], args["port"]
    accepted = 0
    stop_at = time.monotonic() + seconds
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
    return accepted, time.perf_counter() - started


async def ingest_phase(args: dict[str, Any]) -> dict[str, float]:
    """Full speed for `seconds` (after a warm-up of distinct messages): what
    was accepted AND reached the subscriber, per second."""
    sub = _subscriber(args)
    if sub is not None:
        await sub.start(measure=True)
    tag = uuid.uuid4().hex[:6]
    warm = [_request(args, f"chat-{tag}-{i % 500}", f"w{i}") for i in range(3000)]
    await _hammer(args, warm, args["warmup"])
    base = sub.count if sub is not None else 0
    count = args["ingest_requests"] * (3 if args["target"] == "noop" else 1)
    requests = [_request(args, f"chat-{tag}-{i % 500}", f"n{i}") for i in range(count)]
    started = time.perf_counter()
    cpu_before = cpu_seconds()
    accepted, posted_for = await _hammer(args, requests, args["seconds"])
    cpu = spent(cpu_before, cpu_seconds())
    if sub is None:
        return {"accepted": accepted, "delivered": accepted, "posted_s": posted_for,
                "rate": accepted / posted_for, "cpu": cpu}
    deadline = time.monotonic() + 60
    while sub.count - base < accepted and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    delivered = sub.count - base
    await sub.ws.close()
    return {"accepted": accepted, "delivered": delivered, "posted_s": posted_for,
            "rate": min(accepted, delivered) / max(sub.last_at - started, posted_for),
            "cpu": cpu}


async def latency_phase(args: dict[str, Any]) -> dict[str, float]:
    host, port, rate = args["host"], args["port"], args["rate"]
    sub = _subscriber(args)
    assert sub is not None
    await sub.start(measure=True)
    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(64):
        pool.put_nowait(await asyncio.open_connection(host, port))
    errors = 0
    tag = uuid.uuid4().hex[:6]

    async def one(n: int) -> None:
        nonlocal errors
        conn = await pool.get()
        request = _request(args, f"lat-{tag}-{n % 200}", f"t={time.perf_counter()!r}")
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
    same_priority(args["nice"])
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


def cpu_note() -> str:
    """This machine, in one line: its cores and the time of a fixed Python loop."""
    started = time.perf_counter()
    total = 0
    for i in range(10_000_000):
        total += i
    return (f"nproc {os.cpu_count()}, 10M-iteration Python loop"
            f" {time.perf_counter() - started:.2f} s, {platform.processor() or platform.machine()}")


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10, help="seconds per measured phase")
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds of baseline, no-op and engine ingest, interleaved")
    parser.add_argument("--connections", type=int, default=64, help="ingest HTTP connections")
    parser.add_argument("--rate", type=float, default=300, help="latency phase msg/s")
    parser.add_argument("--ws", type=int, default=5000, help="fan-out WebSocket connections")
    parser.add_argument("--fanout-rate", type=float, default=10, help="fan-out events/s")
    parser.add_argument("--fanout-procs", type=int, default=2)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--hosts", type=int, default=None, help="default: the engine's")
    parser.add_argument("--baseline-workers", type=int, default=1)
    parser.add_argument("--phases", default="ingest,latency,fanout")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # HAProxy inherits it
    print(f"machine: {cpu_note()}", flush=True)
    figures: dict[str, float] = {}
    phases = args.phases.split(",")
    with tempfile.TemporaryDirectory(prefix="bidi-bench-") as tmp:
        overrides = {"hosts": args.hosts} if args.hosts else {}
        settings = load_settings(data_dir=tmp, port=free_port(), **overrides,
                                 serve_replicas=args.replicas, rate_per_minute=10**9,
                                 rate_burst=10**9, pool_size=20)
        with Stack(settings, dashboard=False) as stack:
            settings = stack.settings
            assert settings.database_url is not None and settings.redis_url is not None
            org, user, integration, secret = asyncio.run(seed(settings))
            token = issue_access_token(settings.jwt_secret.get_secret_value(), user, org, "owner",
                                       ttl=3600)
            baseline_port = free_port()
            engine = {"target": "engine", "host": settings.host, "port": settings.port,
                      "ws_url": f"{stack.ws_url}?token={token}", "integration": integration,
                      "secret": secret, "seconds": args.seconds, "warmup": args.warmup,
                      "connections": args.connections, "nice": settings.worker_niceness,
                      "ingest_requests": int(4000 * args.seconds)}
            baseline = {**engine, "target": "baseline", "port": baseline_port,
                        "redis_url": settings.redis_url}
            noop = {**engine, "target": "noop"}
            with run_baseline(settings.database_url, settings.redis_url, secret,
                              port=baseline_port, workers=args.baseline_workers,
                              nice=settings.worker_niceness):
                if "ingest" in phases:
                    figures.update(ingest_rounds(settings.redis_url, args.rounds,
                                                 engine, baseline, noop))
                if "latency" in phases:
                    got = run_phase("latency", {**baseline, "rate": args.rate})
                    print(f"baseline e2e (POST -> Redis subscriber) at {args.rate:.0f} msg/s:"
                          f" p50 {got['e2e_p50_ms']:.1f} ms, p99 {got['e2e_p99_ms']:.1f} ms",
                          flush=True)
                    before = timings_now(settings.redis_url)
                    got = run_phase("latency", {**engine, "rate": args.rate})
                    print_hops(f"engine hops at {args.rate:.0f} msg/s",
                               hop_table(before, timings_now(settings.redis_url)))
                    print(f"engine e2e (POST -> WebSocket frame) at {args.rate:.0f} msg/s:"
                          f" p50 {got['e2e_p50_ms']:.1f} ms, p99 {got['e2e_p99_ms']:.1f} ms"
                          f" ({got['samples']:.0f} samples, {got['errors']:.0f} errors)",
                          flush=True)
                    figures["e2e_p50_ms"] = got["e2e_p50_ms"]
                    figures["e2e_p99_ms"] = got["e2e_p99_ms"]
            if "fanout" in phases:
                got = run_phase("fanout", {**engine, "ws_connections": args.ws,
                                           "fanout_rate": args.fanout_rate,
                                           "fanout_procs": args.fanout_procs})
                print(f"fan-out: {got['ws_connections']:,.0f} connections,"
                      f" {got['ws_deliveries_per_s']:,.0f} deliveries/s at"
                      f" {got['events_per_s']:.0f} events/s", flush=True)
                figures["ws_connections"] = got["ws_connections"]
                figures["ws_deliveries_per_s"] = got["ws_deliveries_per_s"]
    keys = ("ingest_msgs_per_s", "baseline_msgs_per_s", "ingest_ratio", "noop_rps",
            "ingest_vs_noop", "e2e_p50_ms", "e2e_p99_ms", "ws_connections",
            "ws_deliveries_per_s")
    print(json.dumps({k: round(figures.get(k, 0.0), 3 if "ratio" in k or "vs" in k else 2)
                      for k in keys}))


def _cpu_line(got: dict[str, Any]) -> str:
    """CPU ms per accepted request, by process group (bench.cpu), busiest first."""
    n = max(1, int(got["accepted"]))
    parts = sorted(((v, k) for k, v in got["cpu"].items() if v > 0), reverse=True)
    return ", ".join(f"{k} {v / n * 1000:.3f}" for v, k in parts)


def ingest_rounds(redis_url: str, rounds: int, engine: dict[str, Any],
                  baseline: dict[str, Any], noop: dict[str, Any]) -> dict[str, float]:
    """Baseline, no-op and engine at full speed with the same load generator,
    interleaved `rounds` times; each figure the mean of its rounds."""
    rates: dict[str, list[float]] = {"baseline": [], "noop": [], "engine": []}
    hops: list[dict[str, dict[str, float]]] = []
    for n in range(1, rounds + 1):
        for name, args in (("baseline", baseline), ("noop", noop), ("engine", engine)):
            before = timings_now(redis_url) if name == "engine" else None
            got = run_phase("ingest", args)
            if before is not None:
                hops.append(hop_table(before, timings_now(redis_url)))
            rates[name].append(got["rate"])
            print(f"round {n} {name:<8}: {got['accepted']:,.0f} accepted,"
                  f" {got['delivered']:,.0f} delivered: {got['rate']:,.0f}/s", flush=True)
            print(f"  CPU per request: {_cpu_line(got)}", flush=True)
    if hops:
        print_hops("engine hops at full ingest (last round)", hops[-1])
    engine_rate, baseline_rate, noop_rate = (_mean(rates[k]) for k in ("engine", "baseline",
                                                                        "noop"))
    print(f"ingest: engine {engine_rate:,.0f} msg/s, baseline {baseline_rate:,.0f} msg/s"
          f" ({engine_rate / baseline_rate:.2f}x), no-op ceiling {noop_rate:,.0f} req/s"
          f" ({engine_rate / noop_rate:.2f}x)", flush=True)
    return {"ingest_msgs_per_s": engine_rate, "baseline_msgs_per_s": baseline_rate,
            "ingest_ratio": engine_rate / baseline_rate, "noop_rps": noop_rate,
            "ingest_vs_noop": engine_rate / noop_rate}


if __name__ == "__main__":
    main()

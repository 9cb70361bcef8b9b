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

The phases are bench/phases.py (each in a process of its own), what counts
the deliveries bench/subscribers.py, the hop report bench/hops.py.

Last line: {"ingest_msgs_per_s", "baseline_msgs_per_s", "ingest_ratio",
"noop_rps", "ingest_vs_noop", "e2e_p50_ms", "e2e_p99_ms", "ws_connections",
"ws_deliveries_per_s"}.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

# bench/ holds email.py and telegram.py, which would shadow the standard
# library's `email` and the Bot API client's `telegram`: off the path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.baseline import run_baseline  # noqa: E402
from bench.cpu import per_request_line  # noqa: E402
from bench.hops import hop_table, print_hops, timings_now  # noqa: E402
from bench.phases import run_phase  # noqa: E402
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
            print(f"  CPU per request: {per_request_line(got)}", flush=True)
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

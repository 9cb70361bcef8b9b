"""The measured phases of bench/realtime.py, each run in a process of its
own (uvloop) at the engine's priority: full-speed ingest against the
engine, the baseline or the no-op, steady-rate end-to-end latency, and
WebSocket fan-out."""
from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import resource
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from bench.cpu import cpu_seconds, per_request_line, spent
from bench.loadgen import exchange, raw_request, same_priority
from bench.subscribers import RedisSubscriber, Subscriber
from channels import signing


def inbound(host: str, port: int, integration: str, secret: str, thread: str,
            text: str) -> bytes:
    body = json.dumps({"external_message_id": uuid.uuid4().hex, "thread_id": thread,
                       "sender": {"id": thread, "name": "Bench"}, "text": text}).encode()
    headers = signing.headers(secret, "msg_" + uuid.uuid4().hex, body)
    headers["Content-Type"] = "application/json"
    return raw_request("POST", host, port, f"/v1/channels/api/{integration}/messages",
                       headers, body)


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
    tag = uuid.uuid4().hex[:6]
    count = args["ingest_requests"] * (3 if args["target"] == "noop" else 1)
    return await hammered(args, lambda n, text: _request(args, f"chat-{tag}-{n % 500}", text),
                          _subscriber(args), count)


async def hammered(args: dict[str, Any], request: Callable[[int, str], bytes],
                   sub: Subscriber | RedisSubscriber | None,
                   count: int) -> dict[str, float]:
    """`request(n, text)` for 3,000 warm-up requests, then `count` more at
    full speed for `seconds`: what was accepted AND reached `sub` (when
    given), per second, and the CPU the machine spent meanwhile."""
    if sub is not None:
        await sub.start()
    await _hammer(args, [request(i, f"w{i}") for i in range(3000)], args["warmup"])
    base = sub.count if sub is not None else 0
    requests = [request(3000 + i, f"n{i}") for i in range(count)]
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
    await sub.close()
    return {"accepted": accepted, "delivered": delivered, "posted_s": posted_for,
            "rate": min(accepted, delivered) / max(sub.last_at - started, posted_for),
            "cpu": cpu}


async def latency_phase(args: dict[str, Any]) -> dict[str, float]:
    host, port, rate = args["host"], args["port"], args["rate"]
    sub = _subscriber(args)
    assert sub is not None
    await sub.start()
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
    await sub.close()
    lat = sorted(sub.latencies[int(rate):])  # skip the first second (warm-up)
    return {"e2e_p50_ms": lat[len(lat) // 2], "e2e_p99_ms": lat[int(len(lat) * 0.99)],
            "samples": len(lat), "errors": errors}


def _fanout_child(conn: Any, url: str, count: int, seconds: float, ready: Any,
                  go: Any, nice: int) -> None:
    """`count` lean clients on the org topic (bench.wsclient: the `websockets`
    library would spend more CPU per frame here than the engine does)."""
    import uvloop

    from bench.wsclient import WsClient, connect

    same_priority(nice)

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
                                                       args["seconds"], ready, go, args["nice"]))
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


def _child(conn: Any, work: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]],
           args: dict[str, Any]) -> None:
    import uvloop

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    same_priority(args["nice"])
    conn.send(uvloop.run(work(args)))


def run_in_process(work: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]],
                   args: dict[str, Any]) -> dict[str, Any]:
    """`work(args)` in a process of its own (uvloop) at the engine's
    priority, apart from the engine's driver; `work` is a module-level
    coroutine function (the child imports it by name)."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, work, args))
    proc.start()
    result: dict[str, Any] = parent.recv()
    proc.join()
    return result


PHASES = {"ingest": ingest_phase, "latency": latency_phase, "fanout": fanout_phase}


def run_phase(phase: str, args: dict[str, Any]) -> dict[str, float]:
    """Each phase in its own process (uvloop), apart from the engine's driver."""
    return run_in_process(PHASES[phase], args)


def interleaved(rounds: int, api_args: dict[str, Any], name: str,
                work: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]],
                channel_args: dict[str, Any]) -> tuple[float, float]:
    """`rounds` rounds of the API channel's ingest phase and a channel's
    (`work`), one after the other, the first of a round alternating (each
    phase adds 500 chats to the org: the one run second would always meet
    the bigger org): (the channel's mean msg/s, the API's)."""
    rates: dict[str, list[float]] = {"api": [], name: []}
    for n in range(1, rounds + 1):
        for which in ("api", name) if n % 2 else (name, "api"):
            got = (run_phase("ingest", api_args) if which == "api"
                   else run_in_process(work, channel_args))
            rates[which].append(got["rate"])
            print(f"round {n} {which:<8}: {got['accepted']:,.0f} accepted,"
                  f" {got['delivered']:,.0f} delivered: {got['rate']:,.0f}/s", flush=True)
            print(f"  CPU per request: {per_request_line(got)}", flush=True)
    api_rate, rate = (sum(rates[k]) / len(rates[k]) for k in ("api", name))
    print(f"webhook ingest: {name} {rate:,.0f} msg/s, API channel {api_rate:,.0f}"
          f" msg/s ({rate / api_rate:.2f}x)", flush=True)
    return rate, api_rate

"""Telegram through Serve's HTTP ingress, load generator included, beside the
API channel, in one run, against the fake Bot API (tests/fakes/telegram.py,
in a thread of this process).

1. outbound pacing: 60 private chats of one bot, replies queued for each
   (more than the bot's 30/s cap allows); figure: the error of the measured
   sendMessage rate (the fake's clock, over 10 s once under way) against
   the cap, in percent.
2. webhook ingest, in interleaved rounds with the same load generator,
   connections and spread (500 chats, new ones each round, after a
   warm-up): distinct Telegram updates POSTed to the bot's webhook with its
   secret token, and distinct signed API-channel messages; one WebSocket
   subscriber of the org counts `message.received` frames. Figure: messages
   persisted AND delivered per second, and Telegram's over the API
   channel's (no HMAC to compute: it should not be slower).
3. long-polling ingest: a bot in polling mode; N updates waiting in the
   fake's queue (up to 100 per getUpdates, over the same 500 chats);
   figure: messages persisted and delivered per second after the same
   warm-up as the webhook rounds, to the last delivered (the rate from the
   first update given is printed beside it). Reported as null when the
   engine does not poll (no update arrives).

Last line: {"telegram_webhook_msgs_per_s", "api_msgs_per_s", "ratio",
"polling_msgs_per_s", "pacing_error_pct"}.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
# This file has the name of the Bot API client's package (python-telegram-bot's
# `telegram`): its folder must be off the path, here and in the Ray workers
# (Ray gives them a driver's script folder only when the driver has it).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(HERE.parent))

import httpx  # noqa: E402

from bench.cpu import cpu_seconds, per_request_line, spent  # noqa: E402
from bench.hops import hop_table, print_hops, timings_now  # noqa: E402
from bench.loadgen import raw_request  # noqa: E402
from bench.phases import hammered, interleaved  # noqa: E402
from bench.realtime import cpu_note, seed  # noqa: E402
from bench.subscribers import Subscriber  # noqa: E402
from core.security import issue_access_token  # noqa: E402
from core.settings import load_settings  # noqa: E402
from serve.stack import Stack, free_port  # noqa: E402
from tests.fakes.telegram import FakeTelegram  # noqa: E402

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
CHATS = 500
PACED_CHATS = 60


def update(n: int, chat: int, text: str) -> dict[str, Any]:
    """A private text message, as the Bot API delivers it."""
    person = {"id": chat, "is_bot": False, "first_name": "Bench"}
    return {"update_id": n, "message": {
        "message_id": n, "from": person, "chat": {**person, "type": "private"},
        "date": int(time.time()), "text": text}}


def _chats() -> int:
    """The first of CHATS Telegram user ids no other round uses."""
    return random.randrange(10**9, 5 * 10**9) // CHATS * CHATS


async def telegram_ingest(args: dict[str, Any]) -> dict[str, Any]:
    """bench.phases.ingest_phase with Telegram updates on the bot's webhook."""
    host, port = args["host"], args["port"]
    path = f"/v1/channels/telegram/{args['integration']}/webhook"
    headers = {"Content-Type": "application/json", SECRET_HEADER: args["secret"]}
    first_chat, first_id = _chats(), random.randrange(10**6, 10**9)

    def request(n: int, text: str) -> bytes:
        body = json.dumps(update(first_id + n, first_chat + n % CHATS, text)).encode()
        return raw_request("POST", host, port, path, headers, body)

    return await hammered(args, request, Subscriber(args["ws_url"]), args["ingest_requests"])


async def connect_bot(api: httpx.AsyncClient, headers: dict[str, str], fake: FakeTelegram,
                      mode: str) -> tuple[str, str, str]:
    """A Telegram integration on the fake: (its id, the bot token, the webhook secret)."""
    token = fake.add_bot(username=f"bench_{uuid.uuid4().hex[:8]}")
    resp = await api.post("/v1/integrations", headers=headers, json={
        "type": "telegram", "name": f"bench {mode}",
        "config": {"bot_token": token, "mode": mode, "api_base_url": fake.url}})
    if resp.status_code != 201:
        raise RuntimeError(f"connecting a bot: {resp.status_code} {resp.text}")
    calls = fake.calls_of(token, "setWebhook")
    return resp.json()["id"], token, calls[-1].params["secret_token"] if calls else ""


async def polling(ws_url: str, redis_url: str, fake: FakeTelegram, token: str, count: int,
                  probe_timeout: float, warmup: float) -> float | None:
    """Messages a second through long polling after `warmup` seconds (as
    the webhook rounds are measured: the chats' first messages, which open
    them, fall in the warm-up), or None when the engine does not poll (the
    probe update never arrives). The rate from the first update given is
    printed beside it."""
    sub = Subscriber(ws_url)
    await sub.start()
    try:
        first_chat, first_id = _chats(), random.randrange(10**6, 10**9)
        fake.enqueue(token, update(first_id, first_chat, "probe"))
        deadline = time.monotonic() + probe_timeout
        while sub.count < 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if sub.count < 1:
            return None
        base = sub.count
        updates = [update(first_id + 1 + i, first_chat + i % CHATS, f"p{i}")
                   for i in range(count)]
        before = await asyncio.to_thread(timings_now, redis_url)
        started = time.perf_counter()
        fake.enqueue(token, *updates)
        deadline = time.monotonic() + 120
        warm: tuple[int, float, dict[str, float], float] | None = None
        while sub.count - base < count and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
            if warm is None and time.perf_counter() - started >= warmup:
                warm = (sub.count, time.perf_counter(), cpu_seconds(), time.process_time())
        got = sub.count - base
        whole = got / (sub.last_at - started)
        if warm is None:  # all of it within the warm-up: the whole run it is
            warm = (base, started, cpu_seconds(), time.process_time())
        measured = sub.count - warm[0]
        rate = measured / (sub.last_at - warm[1])
        print(f"polling: {got:,} of {count:,} delivered; {measured:,} after the {warmup:g} s"
              f" warm-up: {rate:,.0f} msg/s ({whole:,.0f} msg/s from the first given)",
              flush=True)
        used = spent(warm[2], cpu_seconds())
        used["bench (fake Bot API, subscriber)"] = time.process_time() - warm[3]
        print("polling after the warm-up, CPU ms per message: "
              + per_request_line({"accepted": measured, "cpu": used}), flush=True)
        after = await asyncio.to_thread(timings_now, redis_url)
        print_hops("polling, per getUpdates, warm-up included", {
            hop: row for hop, row in hop_table(before, after).items()
            if hop.startswith("poll_") or hop in ("commit", "commit_queue", "turn")})
        return rate
    finally:
        await sub.close()


async def pacing(api: httpx.AsyncClient, headers: dict[str, str], fake: FakeTelegram,
                 cap: float, seconds: float) -> tuple[float, float]:
    """(measured sendMessage/s over `seconds` once under way, error in % of `cap`)."""
    integration, token, secret = await connect_bot(api, headers, fake, "webhook")
    first_chat, first_id = _chats(), random.randrange(10**6, 10**9)
    hook = f"/v1/channels/telegram/{integration}/webhook"
    for n in range(PACED_CHATS):
        resp = await api.post(hook, headers={SECRET_HEADER: secret},
                              json=update(first_id + n, first_chat + n, "hello"))
        resp.raise_for_status()
    listed = await api.get("/v1/chats", headers=headers,
                           params={"channel": "telegram", "limit": 100})
    listed.raise_for_status()
    ours = {str(first_chat + n) for n in range(PACED_CHATS)}
    chats = [c["id"] for c in listed.json()["data"] if c["channel_thread_id"] in ours]
    assert len(chats) == PACED_CHATS, len(chats)
    # One chat's cap is 1/s: enough chats to need twice the bot's cap, and
    # enough replies each to keep it busy past the window.
    per_chat = int((seconds + 4) * cap / PACED_CHATS) + 2
    for round_ in range(per_chat):  # round-robin: every chat has one queued early
        sends = [api.post(f"/v1/chats/{chat}/messages", headers=headers,
                          json={"content": f"reply {round_}"}) for chat in chats]
        for resp in await asyncio.gather(*sends):
            resp.raise_for_status()
    total = per_chat * PACED_CHATS
    deadline = time.monotonic() + total / cap + 60
    while len(fake.calls_of(token, "sendMessage")) < total and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    times = sorted(c.at for c in fake.calls_of(token, "sendMessage"))
    start = times[0] + 1.0  # once every chat has its first reply queued
    sent = sum(1 for t in times if start <= t < start + seconds)
    rate = sent / seconds
    print(f"pacing: {len(times)} of {total} sent; {sent} in {seconds:.0f} s once under way:"
          f" {rate:.2f}/s against the cap of {cap:.0f}/s", flush=True)
    return rate, abs(rate - cap) / cap * 100


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10, help="seconds per ingest phase")
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--polled", type=int, default=40_000, help="updates to long-poll")
    parser.add_argument("--probe-timeout", type=float, default=20.0)
    parser.add_argument("--pacing-seconds", type=float, default=10.0)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(f"machine: {cpu_note()}", flush=True)
    fake = FakeTelegram(free_port()).start()
    figures: dict[str, float | None] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="bidi-bench-") as tmp:
            settings = load_settings(data_dir=tmp, port=free_port(), rate_per_minute=10**9,
                                     rate_burst=10**9, pool_size=20,
                                     webhook_base_url="https://hooks.bench.invalid",
                                     outbound_allow_networks="127.0.0.1/32")  # the fake
            with Stack(settings, dashboard=False) as stack:
                figures = asyncio.run(measure(stack, fake, args))
    finally:
        fake.stop()
    ratio = (figures["telegram_webhook_msgs_per_s"] or 0) / (figures["api_msgs_per_s"] or 1)
    print(json.dumps({
        "telegram_webhook_msgs_per_s": round(figures["telegram_webhook_msgs_per_s"] or 0, 2),
        "api_msgs_per_s": round(figures["api_msgs_per_s"] or 0, 2),
        "ratio": round(ratio, 3),
        "polling_msgs_per_s": None if figures["polling_msgs_per_s"] is None
        else round(figures["polling_msgs_per_s"], 2),
        "pacing_error_pct": round(figures["pacing_error_pct"] or 0, 2)}))


async def measure(stack: Stack, fake: FakeTelegram,
                  args: argparse.Namespace) -> dict[str, float | None]:
    settings = stack.settings
    org, user, api_integration, api_secret = await seed(settings)
    token = issue_access_token(settings.jwt_secret.get_secret_value(), user, org, "owner",
                               ttl=3600)
    headers = {"Authorization": f"Bearer {token}"}
    ws_url = f"{stack.ws_url}?token={token}"
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=60) as api:
        # Pacing first: the org's only Telegram chats are then its own.
        _, error = await pacing(api, headers, fake, settings.telegram_bot_per_second,
                                args.pacing_seconds)
        webhook, _, secret = await connect_bot(api, headers, fake, "webhook")
        common = {"host": settings.host, "port": settings.port, "ws_url": ws_url,
                  "seconds": args.seconds, "warmup": args.warmup,
                  "connections": args.connections, "nice": settings.worker_niceness,
                  "ingest_requests": int(4000 * args.seconds)}
        api_args = {**common, "target": "engine", "integration": api_integration,
                    "secret": api_secret}
        telegram_args = {**common, "integration": webhook, "secret": secret}
        telegram_rate, api_rate = await asyncio.to_thread(
            interleaved, args.rounds, api_args, "telegram", telegram_ingest, telegram_args)
        _, polled_token, _ = await connect_bot(api, headers, fake, "polling")
        polled = await polling(ws_url, settings.redis_url or "", fake, polled_token, args.polled,
                               args.probe_timeout, args.warmup)
        print("polling: " + (f"{polled:,.0f} msg/s ({polled / telegram_rate:.2f}x the"
                             " webhook's)" if polled is not None else
                             "no update arrived: the engine does not long-poll; null"),
              flush=True)
    return {"telegram_webhook_msgs_per_s": telegram_rate, "api_msgs_per_s": api_rate,
            "polling_msgs_per_s": polled, "pacing_error_pct": error}


if __name__ == "__main__":
    main()

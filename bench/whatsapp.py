"""WhatsApp through Serve's HTTP ingress, load generator included, beside the
API channel, in one run, against the fake Graph API (tests/fakes/whatsapp.py,
in a thread of this process).

1. outbound pacing: USERS users of one number write first (their 24-hour
   windows open), then two replies are queued for each (more than the
   number's 80/s cap allows; one user gets one message every 6 s). Figure:
   the error of the measured send rate (the fake's clock, over 10 s once
   under way) against the cap, in percent.
2. notification ingest, in interleaved rounds with the same load generator,
   connections and spread (500 users, new ones each round, after a
   warm-up): distinct notifications of one text message each, signed with
   the app secret (X-Hub-Signature-256) and POSTed to the number's webhook,
   and distinct signed API-channel messages; one WebSocket subscriber of
   the org counts `message.received` frames. Figure: messages persisted AND
   delivered per second, and WhatsApp's over the API channel's.
3. statuses: outbound messages of the paced users' chats (STATUS_MESSAGES
   each, stored as `sent` with their wamid), then notifications of 10
   `delivered` statuses each, as Meta batches them (10 users' messages per
   notification), at full speed. Figure: statuses applied per second (each
   200 comes after its statuses are committed; Postgres is read afterwards
   to confirm they all moved).

Last line: {"whatsapp_msgs_per_s", "api_msgs_per_s", "ratio", "statuses_per_s",
"pacing_error_pct"}.
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
# bench/telegram.py has the name of the Bot API client's package: this
# folder must be off the path (here and in the Ray workers).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(HERE.parent))

import httpx  # noqa: E402

from bench.loadgen import raw_request  # noqa: E402
from bench.phases import _hammer, hammered, interleaved, run_in_process  # noqa: E402
from bench.realtime import cpu_note, seed  # noqa: E402
from bench.subscribers import Subscriber  # noqa: E402
from core.security import issue_access_token  # noqa: E402
from core.settings import load_settings  # noqa: E402
from serve.stack import Stack, free_port  # noqa: E402
from storage.db import Database  # noqa: E402
from tests.fakes import whatsapp_notifications as wa  # noqa: E402
from tests.fakes.whatsapp import FakeGraph  # noqa: E402

APP_SECRET = "bench-app-secret-0123456789abcdef"
CHATS = 500
USERS = 600  # paced: 80/s against one message per 6 s each needs 480 at least
STATUS_MESSAGES = 100  # outbound messages per paced chat, for the status phase
PER_NOTIFICATION = 10


def _users() -> int:
    """The first of CHATS wa_ids no other round uses."""
    return random.randrange(10**10, 9 * 10**10) // CHATS * CHATS


def signed(host: str, port: int, path: str, notification: dict[str, Any]) -> bytes:
    body = wa.encode(notification)
    headers = {"Content-Type": "application/json",
               "X-Hub-Signature-256": wa.sign(APP_SECRET, body)}
    return raw_request("POST", host, port, path, headers, body)


def one_message(phone_number_id: str, wa_id: int, text: str) -> dict[str, Any]:
    person = wa.user(wa_id=str(wa_id), name=f"Bench {wa_id}")
    return wa.notification(wa.incoming(person, wa.text(text, person, timestamp=_now()),
                                       phone_number_id=phone_number_id))


def _now() -> str:
    return str(int(time.time()))


async def whatsapp_ingest(args: dict[str, Any]) -> dict[str, Any]:
    """bench.phases.ingest_phase with notifications on the number's webhook."""
    host, port, number = args["host"], args["port"], args["phone_number_id"]
    path = f"/v1/channels/whatsapp/{args['integration']}/webhook"
    first = _users()

    def request(n: int, text: str) -> bytes:
        return signed(host, port, path, one_message(number, first + n % CHATS, text))

    return await hammered(args, request, Subscriber(args["ws_url"]), args["ingest_requests"])


async def statuses_phase(args: dict[str, Any]) -> dict[str, float]:
    """Notifications of PER_NOTIFICATION statuses each, at full speed."""
    host, port, number = args["host"], args["port"], args["phone_number_id"]
    path = f"/v1/channels/whatsapp/{args['integration']}/webhook"
    targets: list[list[str]] = args["targets"]  # [wa_id, wamid]
    requests = []
    for start in range(0, len(targets) - PER_NOTIFICATION + 1, PER_NOTIFICATION):
        items = [wa.status(wamid, "delivered", wa.user(wa_id=wa_id), timestamp=int(time.time()))
                 for wa_id, wamid in targets[start:start + PER_NOTIFICATION]]
        requests.append(signed(host, port, path,
                               wa.notification(wa.outgoing(*items, phone_number_id=number))))
    accepted, seconds = await _hammer(args, requests, args["seconds"])
    return {"accepted": accepted, "statuses": accepted * PER_NOTIFICATION, "seconds": seconds,
            "rate": accepted * PER_NOTIFICATION / seconds}


async def connect_number(api: httpx.AsyncClient, headers: dict[str, str],
                         fake: FakeGraph) -> tuple[str, str]:
    """A WhatsApp integration on the fake: (its id, the phone number id)."""
    number = fake.add_number()
    resp = await api.post("/v1/integrations", headers=headers, json={
        "type": "whatsapp", "name": "bench number", "config": {
            "access_token": number.access_token, "app_secret": APP_SECRET,
            "verify_token": uuid.uuid4().hex, "phone_number_id": number.phone_number_id,
            "waba_id": number.waba_id, "api_base_url": fake.url}})
    if resp.status_code != 201:
        raise RuntimeError(f"connecting a number: {resp.status_code} {resp.text}")
    return resp.json()["id"], number.phone_number_id


async def open_windows(api: httpx.AsyncClient, headers: dict[str, str], integration: str,
                       number: str) -> list[str]:
    """USERS users write first; their chats' ids."""
    first = _users()
    hook = f"/v1/channels/whatsapp/{integration}/webhook"
    for start in range(0, USERS, PER_NOTIFICATION):
        values = []
        for wa_id in range(first + start, first + start + PER_NOTIFICATION):
            person = wa.user(wa_id=str(wa_id), name=f"Paced {wa_id}")
            values.append(wa.incoming(person, wa.text("hello", person, timestamp=_now()),
                                      phone_number_id=number))
        body = wa.encode(wa.notification(*values))
        resp = await api.post(hook, content=body, headers={
            "Content-Type": "application/json", "X-Hub-Signature-256": wa.sign(APP_SECRET, body)})
        resp.raise_for_status()
    ours = {str(first + n) for n in range(USERS)}
    chats: list[str] = []
    page = 1
    while True:
        listed = await api.get("/v1/chats", headers=headers,
                               params={"channel": "whatsapp", "limit": 100, "page": page})
        listed.raise_for_status()
        data = listed.json()["data"]
        chats += [c["id"] for c in data if c["channel_thread_id"] in ours]
        if len(data) < 100:
            break
        page += 1
    assert len(chats) == USERS, len(chats)
    return chats


async def pacing(api: httpx.AsyncClient, headers: dict[str, str], fake: FakeGraph,
                 integration: str, number: str, cap: float,
                 seconds: float) -> tuple[list[str], float]:
    """(the paced chats, the error of the measured send rate in % of `cap`)."""
    chats = await open_windows(api, headers, integration, number)
    for round_ in range(2):  # round-robin: every chat has one queued early
        for start in range(0, len(chats), 100):
            sends = [api.post(f"/v1/chats/{chat}/messages", headers=headers,
                              json={"content": f"reply {round_}"})
                     for chat in chats[start:start + 100]]
            for resp in await asyncio.gather(*sends):
                resp.raise_for_status()
    total = 2 * len(chats)
    deadline = time.monotonic() + total / cap + 60
    while len(fake.sent(number)) < total and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    times = sorted(c.at for c in fake.calls_of(number, "messages"))
    start = times[0] + 1.0
    sent = sum(1 for t in times if start <= t < start + seconds)
    rate = sent / seconds
    print(f"pacing: {len(times)} of {total} sent; {sent} in {seconds:.0f} s once under way:"
          f" {rate:.2f}/s against the cap of {cap:.0f}/s", flush=True)
    return chats, abs(rate - cap) / cap * 100


async def status_targets(db: Database, org: str, chats: list[str]) -> list[list[str]]:
    """STATUS_MESSAGES outbound messages per chat, stored `sent` with a wamid
    (as the sends of a campaign would leave them), interleaved so that ten
    in a row are ten users'."""
    async with db.tenant_tx(org) as conn:
        rows = await conn.fetch(
            "INSERT INTO messages (chat_id, organization_id, sender_type, content,"
            " is_incoming, is_read, status, external_id, created_at)"
            " SELECT c.id, c.organization_id, 'user', 'campaign', false, true, 'sent',"
            " 'wamid.bench.' || replace(gen_random_uuid()::text, '-', ''), now()"
            " FROM chats c, generate_series(1, $2) g WHERE c.id = ANY($1::uuid[])"
            " RETURNING (SELECT channel_thread_id FROM chats WHERE id = chat_id), external_id",
            chats, STATUS_MESSAGES)
    by_user: dict[str, list[str]] = {}
    for wa_id, wamid in rows:
        by_user.setdefault(wa_id, []).append(wamid)
    users = list(by_user)
    return [[u, by_user[u][i]] for i in range(STATUS_MESSAGES) for u in users]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10, help="seconds per ingest phase")
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--pacing-seconds", type=float, default=10.0)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(f"machine: {cpu_note()}", flush=True)
    fake = FakeGraph(free_port()).start()
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
    print(json.dumps({
        "whatsapp_msgs_per_s": round(figures["whatsapp"], 2),
        "api_msgs_per_s": round(figures["api"], 2),
        "ratio": round(figures["whatsapp"] / figures["api"], 3),
        "statuses_per_s": round(figures["statuses"], 2),
        "pacing_error_pct": round(figures["pacing_error"], 2)}))


async def measure(stack: Stack, fake: FakeGraph, args: argparse.Namespace) -> dict[str, float]:
    settings = stack.settings
    org, user, api_integration, api_secret = await seed(settings)
    token = issue_access_token(settings.jwt_secret.get_secret_value(), user, org, "owner",
                               ttl=3600)
    headers = {"Authorization": f"Bearer {token}"}
    ws_url = f"{stack.ws_url}?token={token}"
    assert settings.database_url is not None
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=60) as api, \
            Database(settings.database_url, settings.app_db_password.get_secret_value()) as db:
        integration, number = await connect_number(api, headers, fake)
        chats, error = await pacing(api, headers, fake, integration, number,
                                    settings.whatsapp_number_per_second, args.pacing_seconds)
        common = {"host": settings.host, "port": settings.port, "ws_url": ws_url,
                  "seconds": args.seconds, "warmup": args.warmup,
                  "connections": args.connections, "nice": settings.worker_niceness,
                  "ingest_requests": int(4000 * args.seconds)}
        api_args = {**common, "target": "engine", "integration": api_integration,
                    "secret": api_secret}
        whatsapp_args = {**common, "integration": integration, "phone_number_id": number}
        whatsapp_rate, api_rate = await asyncio.to_thread(
            interleaved, args.rounds, api_args, "whatsapp", whatsapp_ingest, whatsapp_args)
        targets = await status_targets(db, org, chats)
        got = await asyncio.to_thread(run_in_process, statuses_phase,
                                      {**whatsapp_args, "targets": targets})
        async with db.tenant_tx(org) as conn:
            moved = await conn.fetchval(
                "SELECT count(*) FROM messages WHERE chat_id = ANY($1::uuid[])"
                " AND status = 'delivered' AND content = 'campaign'", chats)
        print(f"statuses: {got['statuses']:,.0f} posted in {got['seconds']:.1f} s,"
              f" {moved:,} applied: {got['rate']:,.0f}/s"
              f" ({got['rate'] / api_rate:.2f}x the API channel's msg/s)", flush=True)
        if moved < got["statuses"]:
            raise SystemExit(f"only {moved} of {got['statuses']:.0f} acknowledged statuses"
                             " were applied")
    return {"whatsapp": whatsapp_rate, "api": api_rate, "statuses": got["rate"],
            "pacing_error": error}


if __name__ == "__main__":
    main()

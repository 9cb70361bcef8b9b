"""The small per-message costs behind this engine's layout decisions, each
beside what it replaced, in one run (an embedded Postgres of its own, no
Ray):

1. a chat's per-message update (`storage.messages.BULK_INBOUND`'s columns,
   50 chats a statement, one backend) with the chats' indexes as migration
   022 left them (HOT) and as before it (`last_message_at` in the assignee
   indexes, fill factor 100); and what that costs the assignee list
   (`storage.chats.list_page`, a member's 5,000 chats of 20,000);
2. Serve's per-request route naming (`get_asgi_route_name`) of a channel
   webhook with FastAPI's documentation routes last (serve.app.App) and
   first (FastAPI's default);
3. FastAPI's per-request OpenTelemetry check with `BIDI_OTEL` off and on;
4. an ask's deadline as a timer on its future (actors.runtime.client)
   against `asyncio.wait_for`, on uvloop as in Ray's workers;
5. a webhook's verify + parse: Telegram's (secret compare, dict walk)
   against the API channel's (HMAC, typed decode).

Last line: {"chat_update_hot_us", "chat_update_indexed_us", "assignee_page_ms",
"assignee_page_indexed_ms", "route_name_us", "route_name_docs_first_us",
"otel_check_off_us", "otel_check_on_us", "ask_timer_us", "ask_wait_for_us",
"telegram_webhook_us", "api_webhook_us"}.
"""
from __future__ import annotations

import asyncio
import json
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg  # noqa: E402
import uvloop  # noqa: E402
from ray.serve._private.thirdparty.get_asgi_route_name import get_asgi_route_name  # noqa: E402

from bench.realtime import cpu_note  # noqa: E402
from channels import signing  # noqa: E402
from channels.api import ApiChannel  # noqa: E402
from channels.telegram import TelegramConnector  # noqa: E402
from core.settings import load_settings  # noqa: E402
from serve.app import build_app  # noqa: E402
from storage import chats  # noqa: E402
from storage.db import Database  # noqa: E402
from storage.embedded import EmbeddedPostgres  # noqa: E402
from storage.integrations import Integration  # noqa: E402
from storage.migrate import migrate  # noqa: E402

CHATS, MINE, PER_STATEMENT, STATEMENTS = 20_000, 5_000, 50, 400
# What migration 022 replaced.
INDEXED = """
DROP INDEX idx_chats_assigned_user; DROP INDEX idx_chats_assigned_agent;
CREATE INDEX idx_chats_assigned_user
  ON chats (organization_id, assigned_user_id, last_message_at DESC NULLS LAST, id);
CREATE INDEX idx_chats_assigned_agent
  ON chats (organization_id, assigned_agent_id, last_message_at DESC NULLS LAST, id);
ALTER TABLE chats SET (fillfactor = 100)
"""
# The chat part of BULK_INBOUND, on its own.
UPDATE = """
UPDATE chats SET last_message_at = greatest(last_message_at, now()::timestamp),
       last_inbound_at = greatest(last_inbound_at, now()::timestamp), is_unread = true,
       unread_count = unread_count + 1, updated_at = now()::timestamp
WHERE id = ANY($1::uuid[])
"""


# The backend's HOT updates of chats not yet reported (storage test_chat_updates).
HOT_SO_FAR = "SELECT pg_stat_get_xact_tuples_hot_updated('chats'::regclass)"


def per_call_us(fn: Callable[[], Any], n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - started) / n * 1e6


async def chat_rows(dsn: str, password: str) -> dict[str, float]:
    admin = await asyncpg.connect(dsn)
    await migrate(admin, app_password=password)
    org, user = uuid.uuid4(), uuid.uuid4()
    await admin.execute("INSERT INTO organizations (id, name, slug) VALUES ($1, 'o', $2)",
                        org, str(org))
    await admin.execute("INSERT INTO users (id, email, password_hash) VALUES ($1, $2, 'x')",
                        user, f"{user}@bench.invalid")
    await admin.execute("INSERT INTO contacts (id, organization_id, first_name) SELECT"
                        " gen_random_uuid(), $1, 'c' || g FROM generate_series(1, $2) g",
                        org, CHATS)
    ids = [r[0] for r in await admin.fetch(
        "INSERT INTO chats (organization_id, contact_id, channel, channel_thread_id, title,"
        " last_message_at, assigned_user_id) SELECT $1, id, 'api', id::text, first_name,"
        " now() - random() * interval '30 days', CASE WHEN row_number() OVER () <= $3"
        " THEN $2::uuid END FROM contacts WHERE organization_id = $1 RETURNING id",
        org, user, MINE)]
    await admin.execute("ANALYZE")
    found: dict[str, float] = {}
    async with Database(dsn, password) as db:
        for layout in ("hot", "indexed"):
            if layout == "indexed":
                await admin.execute(INDEXED)
                await admin.execute("VACUUM FULL chats")  # the pages full again, as before
                await admin.execute("ANALYZE chats")
            async with db.tenant_tx(org) as conn:  # the page, warm
                for _ in range(3):
                    await chats.list_page(conn, limit=50, offset=0, assigned_user_id=user)
                started = time.perf_counter()
                for _ in range(20):
                    await chats.list_page(conn, limit=50, offset=0, assigned_user_id=user)
                found[f"page_{layout}"] = (time.perf_counter() - started) / 20 * 1000
            mine = ids[:1000]  # updates on chats in a few pages, as a busy inbox's
            started = time.perf_counter()
            for _ in range(STATEMENTS):
                async with db.tenant_tx(org) as conn:
                    await conn.execute(UPDATE, random.sample(mine, PER_STATEMENT))
            found[f"update_{layout}"] = ((time.perf_counter() - started)
                                         / (STATEMENTS * PER_STATEMENT) * 1e6)
            async with db.tenant_tx(org) as conn:  # one more, counted (not timed)
                before = await conn.fetchval(HOT_SO_FAR)
                await conn.execute(UPDATE, random.sample(mine, PER_STATEMENT))
                hot = await conn.fetchval(HOT_SO_FAR) - before
            print(f"chat updates, {layout}: {found[f'update_{layout}']:.1f} us each"
                  f" ({hot} of {PER_STATEMENT} HOT in a statement); a member's page of 50"
                  f" of {MINE:,}: {found[f'page_{layout}']:.2f} ms", flush=True)
    await admin.close()
    return found


def routes_and_otel() -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        app = build_app(load_settings(data_dir=tmp))
        traced = build_app(load_settings(data_dir=tmp, otel=True))
    scope = {"type": "http", "method": "POST", "root_path": "", "headers": [],
             "path": f"/v1/channels/telegram/{uuid.uuid4()}/webhook"}
    found = {"route": per_call_us(lambda: get_asgi_route_name(app, scope), 20_000)}
    routes = app.router.routes
    docs = [r for r in routes if getattr(r, "path", None) in
            ("/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc")]
    routes[:] = docs + [r for r in routes if r not in docs]  # FastAPI's own order
    found["route_docs_first"] = per_call_us(lambda: get_asgi_route_name(app, scope), 20_000)
    found["otel_off"] = per_call_us(app._native_telemetry.enabled, 100_000)
    found["otel_on"] = per_call_us(traced._native_telemetry.enabled, 100_000)
    print(f"route naming of a webhook: {found['route']:.2f} us, documentation first"
          f" {found['route_docs_first']:.2f} us; OpenTelemetry check: off"
          f" {found['otel_off']:.2f} us, on {found['otel_on']:.2f} us", flush=True)
    return found


async def deadlines() -> dict[str, float]:
    loop = asyncio.get_running_loop()

    def expire(future: asyncio.Future[Any]) -> None:
        if not future.done():
            future.set_exception(TimeoutError())

    async def timer() -> None:
        future = loop.create_future()
        loop.call_soon(future.set_result, None)
        late = loop.call_later(11.0, expire, future)
        try:
            await future
        finally:
            late.cancel()

    async def wait_for() -> None:
        future = loop.create_future()
        loop.call_soon(future.set_result, None)
        await asyncio.wait_for(future, 11.0)

    async def bare() -> None:
        future = loop.create_future()
        loop.call_soon(future.set_result, None)
        await future

    found = {}
    for name, make in (("bare", bare), ("timer", timer), ("wait_for", wait_for)):
        started = time.perf_counter()
        for _ in range(100_000):
            await make()
        found[name] = (time.perf_counter() - started) / 100_000 * 1e6
    print(f"an ask's deadline, beyond a bare await ({found['bare']:.2f} us): timer"
          f" {found['timer'] - found['bare']:.2f} us, asyncio.wait_for"
          f" {found['wait_for'] - found['bare']:.2f} us", flush=True)
    return {"timer": found["timer"] - found["bare"],
            "wait_for": found["wait_for"] - found["bare"]}


def webhooks() -> dict[str, float]:
    secret = signing.new_secret()
    token = "x" * 43
    api_body = json.dumps({"external_message_id": uuid.uuid4().hex, "thread_id": "t-1",
                           "sender": {"id": "t-1", "name": "Bench"}, "text": "hello"}).encode()
    api_headers = {k.lower(): v for k, v in
                   signing.headers(secret, "msg_" + uuid.uuid4().hex, api_body).items()}
    person = {"id": 10**9, "is_bot": False, "first_name": "Bench"}
    tg_body = json.dumps({"update_id": 5, "message": {
        "message_id": 5, "from": person, "chat": {**person, "type": "private"},
        "date": int(time.time()), "text": "hello"}}).encode()
    tg_headers = {"x-telegram-bot-api-secret-token": token}
    org, integration_id = str(uuid.uuid4()), str(uuid.uuid4())
    api = ApiChannel()  # its HTTP client is made on the first send only
    api_integration = Integration(id=integration_id, org_id=org, type="api", name="b",
                                  config={}, secrets={"secret": secret})
    telegram = TelegramConnector()
    tg_integration = Integration(id=integration_id, org_id=org, type="telegram", name="b",
                                 config={}, secrets={"secret_token": token})

    def api_once() -> None:
        api.verify(api_integration, api_headers, api_body)
        api.parse(api_integration, api_body)

    def tg_once() -> None:
        telegram.verify(tg_integration, tg_headers, tg_body)
        telegram.parse(tg_integration, tg_body)

    found = {"telegram": per_call_us(tg_once, 50_000), "api": per_call_us(api_once, 50_000)}
    print(f"a webhook's verify + parse: Telegram {found['telegram']:.2f} us, API channel"
          f" {found['api']:.2f} us", flush=True)
    return found


def main() -> None:
    print(f"machine: {cpu_note()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bidi-bench-") as tmp:
        pg = EmbeddedPostgres(Path(tmp))
        dsn = pg.start()
        try:
            rows = asyncio.run(chat_rows(dsn, uuid.uuid4().hex))
        finally:
            pg.stop()
    named = routes_and_otel()
    asked = uvloop.run(deadlines())
    hooks = webhooks()
    print(json.dumps({
        "chat_update_hot_us": round(rows["update_hot"], 2),
        "chat_update_indexed_us": round(rows["update_indexed"], 2),
        "assignee_page_ms": round(rows["page_hot"], 2),
        "assignee_page_indexed_ms": round(rows["page_indexed"], 2),
        "route_name_us": round(named["route"], 2),
        "route_name_docs_first_us": round(named["route_docs_first"], 2),
        "otel_check_off_us": round(named["otel_off"], 3),
        "otel_check_on_us": round(named["otel_on"], 3),
        "ask_timer_us": round(asked["timer"], 2), "ask_wait_for_us": round(asked["wait_for"], 2),
        "telegram_webhook_us": round(hooks["telegram"], 2),
        "api_webhook_us": round(hooks["api"], 2)}))


if __name__ == "__main__":
    main()

"""The CRM API through Serve: 100 orgs x 10,000 contacts, 50 concurrent
clients. Figures: `GET /v1/contacts?q=...&limit=50` p50/p99 and contact
creates/s. Last line: {"list_p50_ms", "list_p99_ms", "creates_per_s"}."""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import uuid
from pathlib import Path

# bench/ holds email.py and telegram.py, which would shadow the standard
# library's `email` and the Bot API client's `telegram`: off the path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.loadgen import cpu_per_request, http_load, raw_request  # noqa: E402
from core.security import issue_access_token  # noqa: E402
from core.settings import Settings, load_settings  # noqa: E402
from serve.stack import Stack, free_port  # noqa: E402
from storage.db import Database  # noqa: E402

WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
         "juliet"]


async def seed(settings: Settings, orgs: int, per_org: int) -> list[tuple[str, str]]:
    """Orgs with an owner each and `per_org` contacts; returns (org, user) pairs."""
    assert settings.database_url is not None
    pairs = []
    async with Database(settings.database_url, settings.app_db_password.get_secret_value()) as db:
        for n in range(orgs):
            async with db.system_tx() as conn:
                org = await conn.fetchval(
                    "INSERT INTO organizations (name, slug) VALUES ($1, $2) RETURNING id",
                    f"Org {n}", f"bench-{n}-{uuid.uuid4().hex[:6]}")
                user = await conn.fetchval(
                    "INSERT INTO users (email, name) VALUES ($1, 'Owner') RETURNING id",
                    f"owner{n}-{uuid.uuid4().hex[:6]}@example.com")
                await conn.execute(
                    "INSERT INTO organization_members (organization_id, user_id, role)"
                    " VALUES ($1, $2, 'owner')", org, user)
            async with db.tenant_tx(org) as conn:
                await conn.execute(
                    "INSERT INTO contacts (organization_id, first_name, last_name, email, phone,"
                    " telegram_username, tags, source)"
                    " SELECT $1, (ARRAY$words)[1 + g % 10] || g, 'Person' || g,"
                    " 'c' || g || '@org' || $3::int || '.example.com',"
                    " '+1555' || lpad(g::text, 7, '0'),"
                    " 'tg_' || g, ARRAY[(ARRAY$words)[1 + g % 7]], 'import'"
                    " FROM generate_series(1, $2) g".replace(
                        "$words", str(WORDS).replace('"', "'")), org, per_org, n)
            pairs.append((str(org), str(user)))
        # Measure a settled database, not one still being vacuumed after the bulk load.
        assert db.system is not None
        async with db.system.acquire() as conn:
            await conn.execute("VACUUM (ANALYZE) contacts, contact_terms")
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orgs", type=int, default=100)
    parser.add_argument("--contacts", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--replicas", type=int, default=1, help="Serve API replicas")
    parser.add_argument("--pool", type=int, default=50,
                        help="Postgres connections per process: one per client, none queue")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bidi-bench-") as tmp:
        settings = load_settings(data_dir=tmp, port=free_port(), hosts=2,
                                 serve_replicas=args.replicas,
                                 rate_per_minute=10**9, rate_burst=10**9, pool_size=args.pool)
        with Stack(settings, dashboard=False) as stack:
            settings = stack.settings
            pairs = asyncio.run(seed(settings, args.orgs, args.contacts))
            print(f"seeded {args.orgs} orgs x {args.contacts} contacts", flush=True)
            host, port = settings.host, settings.port
            tokens = [issue_access_token(settings.jwt_secret.get_secret_value(), user, org, "owner",
                                         ttl=3600) for org, user in pairs]
            lists = [raw_request("GET", host, port, f"/v1/contacts?q={WORDS[i % 10]}{i}"
                                 f"&limit=50", {"Authorization": f"Bearer {token}"})
                     for i, token in enumerate(tokens * 10)]
            nice = stack.settings.worker_niceness
            listed = http_load(host, port, nice=nice, requests=lists, connections=args.clients,
                               seconds=args.seconds, warmup=3.0, sample_every=1)
            lat = sorted(listed.latencies_ms)
            p50, p99 = lat[len(lat) // 2], lat[int(len(lat) * 0.99)]
            print(f"list: {listed.rps:,.0f} req/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
                  f"errors {listed.errors}", flush=True)
            print(f"list CPU per request: {cpu_per_request(listed)}", flush=True)
            creates = [raw_request("POST", host, port, "/v1/contacts", {
                "Authorization": f"Bearer {tokens[i % len(tokens)]}",
                "Content-Type": "application/json"},
                json.dumps({"first_name": f"New{i}", "tags": ["bench"]}).encode())
                for i in range(2000)]
            created = http_load(host, port, nice=nice, requests=creates,
                                connections=args.clients,
                                seconds=args.seconds, warmup=2.0)
            print(f"create: {created.rps:,.0f} contacts/s, errors {created.errors}", flush=True)
            print(f"create CPU per request: {cpu_per_request(created)}", flush=True)
    print(json.dumps({"list_p50_ms": round(p50, 2), "list_p99_ms": round(p99, 2),
                      "creates_per_s": round(created.rps, 1)}))


if __name__ == "__main__":
    main()

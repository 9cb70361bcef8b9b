"""`bidi up --demo`: seeded through the real storage and message flow, once,
with a sign-in and an API key that work and are kept for the next run."""
from __future__ import annotations

import json
import stat
from pathlib import Path

import httpx

from core.settings import Settings
from serve.demo import CONTACTS, CONVERSATIONS, CREDENTIALS, EMAIL, STAGES, seed_demo
from storage.db import Database
from tests.waiting import eventually


async def test_demo_seeds_once_and_its_sign_in_works(settings: Settings, db: Database,
                                                     api: httpx.AsyncClient) -> None:
    first = await seed_demo(settings)
    again = await seed_demo(settings)  # idempotent: the same demo, the same secrets
    assert again.org_id == first.org_id and again.email == first.email == EMAIL
    assert first.password and again.password == first.password
    assert first.api_key and again.api_key == first.api_key
    assert first.notes == ()  # the draft came
    path = Path(settings.data_dir) / CREDENTIALS
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["password"] == first.password

    signed = await api.post("/v1/auth/login", json={"email": EMAIL, "password": first.password})
    assert signed.status_code == 200, signed.text
    assert signed.json()["organization"]["id"] == first.org_id
    headers = {"Authorization": f"Bearer {signed.json()['access_token']}"}
    as_key = {"X-API-Key": first.api_key}
    listed = await api.get("/v1/contacts", params={"limit": 100}, headers=as_key)
    assert listed.status_code == 200, listed.text
    assert listed.json()["total"] == len(CONTACTS)  # seeded once
    assert all(c["company_id"] for c in listed.json()["data"])

    chats = (await api.get("/v1/chats", headers=headers)).json()
    assert chats["total"] == len(CONVERSATIONS)
    assert sorted(c["unread_count"] > 0 for c in chats["data"]) == [False, False, True, True]
    assert all(c["contact_name"] and c["assigned_agent_id"] for c in chats["data"])
    mine = await api.get("/v1/chats", params={"assigned_user_id": "me"}, headers=headers)
    assert mine.json()["total"] == 2
    drafts = []
    for chat in chats["data"]:
        history = (await api.get(f"/v1/chats/{chat['id']}/messages", headers=headers)).json()
        drafts += [m for m in history["data"] if m["status"] == "draft" and m["ai_draft"]]
        assert any(m["is_incoming"] for m in history["data"])
    assert len(drafts) == 1

    async with db.tenant_tx(first.org_id) as conn:
        stages = await conn.fetch(
            "SELECT s.name FROM pipeline_stages s JOIN pipelines p ON p.id = s.pipeline_id"
            " WHERE p.is_default ORDER BY s.order_index")
        assert [r["name"] for r in stages] == [name for name, _ in STAGES]
        deal_stages = await conn.fetchval(
            "SELECT count(DISTINCT stage_id) FROM deals WHERE value > 0")
        assert deal_stages > 1
        assert await conn.fetchval("SELECT count(*) FROM companies") == 3
        assert await conn.fetchval("SELECT count(*) FROM notes") >= 1
        assert await conn.fetchval(
            "SELECT count(*) FROM events WHERE event_type = 'organization.seeded'") == 1
        # The demo user's replies: an API inbox without a callback_url has
        # nowhere to send them, so each ends `failed`, saying why (quietly: the
        # seed went on).
        replies = sum(way == "out" for _, script in CONVERSATIONS for way, _ in script)

        async def settled() -> list[str]:
            rows = await conn.fetch("SELECT status, metadata->>'error' AS error FROM messages"
                                    " WHERE NOT is_incoming AND NOT ai_draft")
            done = [r["error"] for r in rows if r["status"] == "failed"]
            return done if len(done) == replies == len(rows) else []

        errors = await eventually(settled, what="the replies' final status")
        assert all("has no callback_url" in e for e in errors), errors

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
    assert sorted(c["unread_count"] > 0 for c in chats["data"]) == [False, False, True, True, True]
    assert sorted(c["channel"] for c in chats["data"]) == ["api"] * 2 + ["webchat"] * 3
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
        # The demo user's replies went out on the widget: `sent` at once.
        replies = sum(way == "out" for _, _, script in CONVERSATIONS for way, _ in script)

        async def settled() -> list[str]:
            rows = await conn.fetch("SELECT status FROM messages"
                                    " WHERE NOT is_incoming AND NOT ai_draft")
            done = [r["status"] for r in rows if r["status"] != "pending"]
            return done if len(done) == replies == len(rows) else []

        assert set(await eventually(settled, what="the replies' final status")) == {"sent"}

    # The widget's test page works on this engine's origin: a visitor session opens.
    assert first.widget_test_url and first.widget_test_url.startswith(str(api.base_url))
    widget = first.widget_test_url.rsplit("=", 1)[1]
    page = await api.get(first.widget_test_url)
    assert page.status_code == 200 and widget in page.text
    opened = await api.post(f"/v1/webchat/{widget}/sessions", json={},
                            headers={"Origin": str(api.base_url).rstrip("/")})
    assert opened.status_code == 201, opened.text

"""The organization itself and its audit trail."""
from __future__ import annotations

import httpx

from storage.db import Database
from tests.conftest import Account, register
from tests.serve.test_auth import envelope


async def test_read_update_and_audit_trail(api: httpx.AsyncClient, owner: Account) -> None:
    got = await api.get("/v1/organization", headers=owner.headers)
    assert got.status_code == 200 and got.json()["name"] == "Acme"
    patched = await api.patch("/v1/organization", headers=owner.headers,
                              json={"name": "Acme Corp", "settings": {"timezone": "UTC"}})
    assert patched.status_code == 200, patched.text
    assert patched.json()["settings"] == {"timezone": "UTC"}
    envelope(await api.patch("/v1/organization", json={"name": None}, headers=owner.headers),
             422)
    trail = await api.get("/v1/audit-logs", params={"action": "organization.update"},
                          headers=owner.headers)
    assert trail.status_code == 200
    entry = trail.json()["data"][0]
    assert entry["user_id"] == owner.user_id and entry["changes"]["name"] == ["Acme",
                                                                             "Acme Corp"]
    everything = await api.get("/v1/audit-logs", headers=owner.headers)
    assert {e["action"] for e in everything.json()["data"]} >= {"organization.create",
                                                                "organization.update"}


async def test_audit_trail_is_per_org(api: httpx.AsyncClient, owner: Account) -> None:
    other = await register(api, "Other")
    mine = await api.get("/v1/audit-logs", headers=owner.headers)
    theirs = await api.get("/v1/audit-logs", headers=other.headers)
    mine_ids = {e["id"] for e in mine.json()["data"]}
    assert mine_ids and not mine_ids & {e["id"] for e in theirs.json()["data"]}


async def test_delete_needs_the_slug_and_removes_everything(
        api: httpx.AsyncClient, owner: Account, db: Database) -> None:
    await api.post("/v1/contacts", json={"first_name": "Gone"}, headers=owner.headers)
    slug = (await api.get("/v1/organization", headers=owner.headers)).json()["slug"]
    envelope(await api.request("DELETE", "/v1/organization", json={"confirm_slug": "nope"},
                               headers=owner.headers), 422)
    deleted = await api.request("DELETE", "/v1/organization", json={"confirm_slug": slug},
                                headers=owner.headers)
    assert deleted.status_code == 204
    async with db.system_tx() as conn:
        assert await conn.fetchval("SELECT count(*) FROM contacts WHERE organization_id = $1",
                                   owner.org_id) == 0
        assert await conn.fetchval("SELECT count(*) FROM organizations WHERE id = $1",
                                   owner.org_id) == 0
    envelope(await api.post("/v1/auth/refresh", json={"refresh_token": owner.refresh}), 401)

"""A stage move made with an API key: the audit row, `deal.updated` and
`deal.stage.changed` all name the key's creator, as every other mutation
of a key does (storage.deals writes them with one actor)."""
from __future__ import annotations

import uuid

import httpx

from storage.db import Database
from tests.conftest import Account
from tests.serve.test_rbac import make_key


async def test_a_keys_stage_move_names_its_creator_on_both_events(
        api: httpx.AsyncClient, owner: Account, db: Database) -> None:
    key = {"X-API-Key": await make_key(api, owner, {"crm:read", "crm:write"})}
    pipe = (await api.post("/v1/pipelines", headers=key, json={
        "name": "Sales", "stages": [{"name": "Lead"}, {"name": "Won"}]})).json()
    deal = (await api.post("/v1/deals", headers=key, json={
        "name": "D", "pipeline_id": pipe["id"]})).json()
    moved = await api.patch(f"/v1/deals/{deal['id']}", headers=key,
                            json={"stage_id": pipe["stages"][1]["id"]})
    assert moved.status_code == 200, moved.text
    async with db.tenant_tx(owner.org_id) as conn:
        events = await conn.fetch(
            "SELECT event_type, user_id FROM events WHERE entity_id = $1 ORDER BY seq",
            uuid.UUID(deal["id"]))
        audited = await conn.fetchval(
            "SELECT user_id FROM audit_logs WHERE action = 'deal.update' AND resource_id = $1",
            uuid.UUID(deal["id"]))
    creator = uuid.UUID(owner.user_id)
    assert [(e["event_type"], e["user_id"]) for e in events] == [
        ("deal.created", creator), ("deal.updated", creator), ("deal.stage.changed", creator)]
    assert audited == creator

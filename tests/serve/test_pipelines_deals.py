"""Pipelines, stages, deals and the kanban over real HTTP: CRUD, stage order,
the default pipeline, stage-change events, tenancy, audit + events."""
from __future__ import annotations

import uuid
from typing import Any

import httpx

from storage.db import Database
from tests.conftest import Account, register
from tests.serve.test_auth import envelope

JSON = {"content-type": "application/json"}


async def pipeline(api: httpx.AsyncClient, who: Account, *stages: str,
                   **fields: object) -> dict[str, Any]:
    body = {"name": "Sales", **fields, "stages": [{"name": s} for s in stages]}
    resp = await api.post("/v1/pipelines", json=body, headers=who.headers)
    assert resp.status_code == 201, resp.text
    return resp.json()  # type: ignore[no-any-return]


async def deal(api: httpx.AsyncClient, who: Account, pipe: dict[str, Any],
               **fields: object) -> dict[str, Any]:
    body = {"name": "Deal", "pipeline_id": pipe["id"], **fields}
    resp = await api.post("/v1/deals", json=body, headers=who.headers)
    assert resp.status_code == 201, resp.text
    return resp.json()  # type: ignore[no-any-return]


async def history(db: Database, who: Account, entity_id: str) -> tuple[list[Any], list[Any]]:
    async with db.tenant_tx(who.org_id) as conn:
        audit = await conn.fetch("SELECT action, changes FROM audit_logs WHERE resource_id = $1"
                                 " ORDER BY created_at", uuid.UUID(entity_id))
        events = await conn.fetch("SELECT event_type, payload FROM events WHERE entity_id = $1"
                                  " ORDER BY seq", uuid.UUID(entity_id))
    return [(r["action"], r["changes"]) for r in audit], \
        [(r["event_type"], r["payload"]) for r in events]


def order(pipe: dict[str, Any]) -> list[tuple[str, int]]:
    return [(s["name"], s["order_index"]) for s in pipe["stages"]]


async def test_pipeline_and_stage_crud(api: httpx.AsyncClient, owner: Account,
                                       db: Database) -> None:
    h = owner.headers
    pipe = await pipeline(api, owner, "Lead", "Won", description="main")
    url = f"/v1/pipelines/{pipe['id']}"
    assert order(pipe) == [("Lead", 0), ("Won", 1)] and pipe["is_default"] is False
    added = await api.post(f"{url}/stages", json={"name": "Lost", "color": "#EF4444"},
                           headers=h)
    assert added.status_code == 201 and added.json()["order_index"] == 2
    stage_url = f"{url}/stages/{added.json()['id']}"
    renamed = await api.patch(stage_url, json={"name": "Dead"}, headers=h)
    assert renamed.json()["name"] == "Dead" and renamed.json()["color"] == "#EF4444"
    patched = await api.patch(url, json={"name": "Enterprise"}, headers=h)
    assert patched.json()["name"] == "Enterprise" and patched.json()["description"] == "main"
    lead = pipe["stages"][0]["id"]
    assert (await api.delete(f"{url}/stages/{lead}", headers=h)).status_code == 204
    stages = (await api.get(f"{url}/stages", headers=h)).json()
    assert [(s["name"], s["order_index"]) for s in stages] == [("Won", 0), ("Dead", 1)]
    listed = (await api.get("/v1/pipelines", headers=h)).json()
    assert listed["total"] == 1 and order(listed["data"][0]) == [("Won", 0), ("Dead", 1)]
    assert (await api.delete(url, headers=h)).status_code == 204
    envelope(await api.get(url, headers=h), 404, "not_found")
    envelope(await api.get(f"{url}/stages", headers=h), 404)
    audit, events = await history(db, owner, pipe["id"])
    assert [a for a, _ in audit] == ["pipeline.create", "pipeline.update", "pipeline.delete"]
    assert audit[1][1] == {"name": ["Sales", "Enterprise"]}
    assert [e for e, _ in events] == ["pipeline.created", "pipeline.updated",
                                      "pipeline.deleted"]
    assert [s["name"] for s in events[0][1]["stages"]] == ["Lead", "Won"]
    _, stage_events = await history(db, owner, added.json()["id"])
    assert [e for e, _ in stage_events] == ["pipeline.stage.created", "pipeline.stage.updated"]
    _, lead_events = await history(db, owner, lead)
    assert lead_events == [("pipeline.stage.deleted", {"id": lead, "pipeline_id": pipe["id"]})]


async def test_one_default_pipeline_per_org(api: httpx.AsyncClient, owner: Account,
                                            db: Database) -> None:
    first = await pipeline(api, owner, "A", is_default=True)
    second = await pipeline(api, owner, "A", is_default=True)
    assert second["is_default"] is True
    got = await api.get(f"/v1/pipelines/{first['id']}", headers=owner.headers)
    assert got.json()["is_default"] is False
    back = await api.patch(f"/v1/pipelines/{first['id']}", json={"is_default": True},
                           headers=owner.headers)
    assert back.json()["is_default"] is True
    other = await register(api, "Other")
    theirs = await pipeline(api, other, "A", is_default=True)
    async with db.tenant_tx(owner.org_id) as conn:
        defaults = await conn.fetch("SELECT id FROM pipelines WHERE is_default")
    assert [str(r["id"]) for r in defaults] == [first["id"]]
    still = await api.get(f"/v1/pipelines/{theirs['id']}", headers=other.headers)
    assert still.json()["is_default"] is True  # another org's default is its own
    _, events = await history(db, owner, second["id"])
    assert events[-1] == ("pipeline.updated", {
        "id": second["id"], "changes": {"is_default": [True, False]}})


async def test_stage_reorder(api: httpx.AsyncClient, owner: Account, db: Database) -> None:
    h = owner.headers
    pipe = await pipeline(api, owner, "A", "B", "C", "D")
    other = await pipeline(api, owner, "X")
    url = f"/v1/pipelines/{pipe['id']}/stages/order"
    ids = [s["id"] for s in pipe["stages"]]
    wanted = [ids[3], ids[1], ids[0], ids[2]]
    resp = await api.put(url, json={"stage_ids": wanted}, headers=h)
    assert resp.status_code == 200, resp.text
    assert [s["id"] for s in resp.json()] == wanted
    assert [s["order_index"] for s in resp.json()] == [0, 1, 2, 3]
    got = await api.get(f"/v1/pipelines/{pipe['id']}", headers=h)
    assert order(got.json()) == [("D", 0), ("B", 1), ("A", 2), ("C", 3)]
    for bad in (ids[:3], [*ids, ids[0]], [*ids[:3], ids[0]], [*ids[:3], other["stages"][0]["id"]],
                [], [*ids[:3], "nope"]):
        envelope(await api.put(url, json={"stage_ids": bad}, headers=h), 422)
    envelope(await api.put(url, json={"ids": wanted}, headers=h), 422)
    envelope(await api.put(f"/v1/pipelines/{uuid.uuid4()}/stages/order",
                           json={"stage_ids": wanted}, headers=h), 404)
    added = await api.post(f"/v1/pipelines/{pipe['id']}/stages", json={"name": "E"}, headers=h)
    assert added.json()["order_index"] == 4
    async with db.tenant_tx(owner.org_id) as conn:
        rows = await conn.fetch("SELECT name, order_index FROM pipeline_stages"
                                " WHERE pipeline_id = $1 ORDER BY order_index",
                                uuid.UUID(pipe["id"]))
    assert [(r["name"], r["order_index"]) for r in rows] == [
        ("D", 0), ("B", 1), ("A", 2), ("C", 3), ("E", 4)]
    _, events = await history(db, owner, pipe["id"])
    assert events[-1] == ("pipeline.stages.reordered",
                          {"pipeline_id": pipe["id"], "stage_ids": wanted})


async def test_deal_crud_and_stage_change_event(api: httpx.AsyncClient, owner: Account,
                                                db: Database) -> None:
    h = owner.headers
    pipe = await pipeline(api, owner, "Lead", "Won")
    lead, won = (s["id"] for s in pipe["stages"])
    company = (await api.post("/v1/companies", json={"name": "Acme"}, headers=h)).json()
    made = await deal(api, owner, pipe, name="Big one", value="1250.50",
                      company_id=company["id"], expected_close_date="2030-01-31")
    assert made["stage_id"] == lead and made["value"] == 1250.5
    assert (made["currency"], made["probability"]) == ("USD", 0)
    url = f"/v1/deals/{made['id']}"
    assert (await api.get(url, headers=h)).json() == made
    moved = await api.patch(url, json={"stage_id": won, "probability": 90}, headers=h)
    assert moved.status_code == 200, moved.text
    assert moved.json()["stage_id"] == won and moved.json()["name"] == "Big one"
    assert (await api.patch(url, json={"stage_id": won}, headers=h)).status_code == 200
    assert (await api.delete(url, headers=h)).status_code == 204
    envelope(await api.get(url, headers=h), 404)
    audit, events = await history(db, owner, made["id"])
    assert [a for a, _ in audit] == ["deal.create", "deal.update", "deal.delete"]
    assert audit[1][1] == {"stage_id": [lead, won], "probability": [0, 90]}
    assert [e for e, _ in events] == ["deal.created", "deal.updated", "deal.stage.changed",
                                      "deal.deleted"]
    assert events[0][1]["value"] == 1250.5
    assert events[2][1] == {"deal_id": made["id"], "from_stage_id": lead, "to_stage_id": won,
                            "pipeline_id": pipe["id"]}


async def test_deal_moves_to_another_pipeline(api: httpx.AsyncClient, owner: Account,
                                              db: Database) -> None:
    first = await pipeline(api, owner, "A", "B")
    second = await pipeline(api, owner, "X", "Y")
    made = await deal(api, owner, first, stage_id=first["stages"][1]["id"])
    url = f"/v1/deals/{made['id']}"
    envelope(await api.patch(url, json={"stage_id": second["stages"][1]["id"]},
                             headers=owner.headers), 422, "invalid")
    moved = await api.patch(url, json={"pipeline_id": second["id"]}, headers=owner.headers)
    assert moved.json()["stage_id"] == second["stages"][0]["id"]  # its first stage
    _, events = await history(db, owner, made["id"])
    assert events[-1][1] == {"deal_id": made["id"], "from_stage_id": first["stages"][1]["id"],
                             "to_stage_id": second["stages"][0]["id"],
                             "pipeline_id": second["id"]}


async def test_deal_filters_and_pagination(api: httpx.AsyncClient, owner: Account) -> None:
    h = owner.headers
    pipe = await pipeline(api, owner, "A", "B")
    other = await pipeline(api, owner, "A")
    contact = (await api.post("/v1/contacts", json={"first_name": "Ann"}, headers=h)).json()
    for i in range(5):
        await deal(api, owner, pipe, name=f"Renewal {i}", stage_id=pipe["stages"][i % 2]["id"])
    await deal(api, owner, other, name="New logo", contact_id=contact["id"])

    async def total(**params: object) -> int:
        resp = await api.get("/v1/deals", params=params, headers=h)
        assert resp.status_code == 200, resp.text
        return resp.json()["total"]  # type: ignore[no-any-return]

    assert await total() == 6
    assert await total(pipeline_id=pipe["id"]) == 5
    assert await total(stage_id=pipe["stages"][1]["id"]) == 2
    assert await total(contact_id=contact["id"]) == 1
    assert await total(q="renewal") == 5 and await total(q="%") == 0
    assert await total(pipeline_id=pipe["id"], q="logo") == 0
    page = (await api.get("/v1/deals", params={"limit": 4, "page": 2}, headers=h)).json()
    assert (page["page"], page["total"], len(page["data"])) == (2, 6, 2)
    for params in ({"limit": 0}, {"page": 0}, {"pipeline_id": "x"}, {"q": "x" * 201}):
        envelope(await api.get("/v1/deals", params=params, headers=h), 422)


async def test_deal_bad_input(api: httpx.AsyncClient, owner: Account, db: Database) -> None:
    h = owner.headers
    pipe = await pipeline(api, owner, "A")
    empty = await pipeline(api, owner)
    other = await pipeline(api, owner, "Z")
    base = {"name": "D", "pipeline_id": pipe["id"]}
    for extra in ({"value": -1}, {"value": "NaN"}, {"value": 10**12}, {"value": "1.005"},
                  {"currency": "usd"}, {"currency": "USDX"}, {"probability": 101},
                  {"probability": -1}, {"probability": 5.5}, {"name": "x" * 256},
                  {"name": ""}, {"bogus": 1}, {"pipeline_id": None},
                  {"pipeline_id": "not-a-uuid"}, {"expected_close_date": "soon"}):
        envelope(await api.post("/v1/deals", json={**base, **extra}, headers=h), 422)
    for extra in ({"pipeline_id": str(uuid.uuid4())}, {"pipeline_id": empty["id"]},
                  {"stage_id": other["stages"][0]["id"]}, {"stage_id": str(uuid.uuid4())},
                  {"contact_id": str(uuid.uuid4())}, {"company_id": str(uuid.uuid4())}):
        envelope(await api.post("/v1/deals", json={**base, **extra}, headers=h), 422, "invalid")
    envelope(await api.post("/v1/deals", json={"name": "D"}, headers=h), 422)
    envelope(await api.post("/v1/deals", content=b"{", headers={**h, **JSON}), 400,
             "malformed_json")
    made = await deal(api, owner, pipe)
    url = f"/v1/deals/{made['id']}"
    for body in ({"name": None}, {"stage_id": None}, {"pipeline_id": None},
                 {"currency": None}, {"value": -5}, {"contact_id": str(uuid.uuid4())}):
        envelope(await api.patch(url, json=body, headers=h), 422)
    envelope(await api.patch(url, content=b"}", headers={**h, **JSON}), 400)
    envelope(await api.get("/v1/deals/123", headers=h), 422)
    envelope(await api.patch(f"/v1/deals/{uuid.uuid4()}", json={"name": "x"}, headers=h), 404)
    assert (await api.get(url, headers=h)).json() == made
    async with db.tenant_tx(owner.org_id) as conn:
        assert await conn.fetchval("SELECT count(*) FROM deals") == 1


async def test_pipeline_and_stage_bad_input(api: httpx.AsyncClient, owner: Account) -> None:
    h = owner.headers
    for body in ({"name": "P", "stages": [{"name": "A", "color": "red"}]},
                 {"name": "P", "stages": [{"name": "A", "color": "#12345"}]},
                 {"name": "P", "stages": [{"name": ""}]}, {"name": "P", "stages": "A"},
                 {"name": "x" * 256}, {"name": "P", "is_default": "maybe"}, {"bogus": 1}):
        envelope(await api.post("/v1/pipelines", json=body, headers=h), 422)
    pipe = await pipeline(api, owner, "A")
    url = f"/v1/pipelines/{pipe['id']}"
    stage_url = f"{url}/stages/{pipe['stages'][0]['id']}"
    envelope(await api.patch(url, json={"name": None}, headers=h), 422)
    envelope(await api.patch(url, json={"is_default": None}, headers=h), 422)
    envelope(await api.post(f"{url}/stages", json={"name": "B", "color": "#GGGGGG"},
                            headers=h), 422)
    envelope(await api.patch(stage_url, json={"color": "#fff"}, headers=h), 422)
    envelope(await api.patch(stage_url, json={"name": None}, headers=h), 422)
    envelope(await api.patch(f"{url}/stages/{uuid.uuid4()}", json={"name": "B"}, headers=h),
             404)
    envelope(await api.delete(f"{url}/stages/not-a-uuid", headers=h), 422)
    envelope(await api.post(f"{url}/stages", content=b"[", headers={**h, **JSON}), 400)
    envelope(await api.get("/v1/pipelines", params={"limit": 500}, headers=h), 422)
    assert order((await api.get(url, headers=h)).json()) == [("A", 0)]


async def test_delete_refused_while_deals_remain(api: httpx.AsyncClient,
                                                 owner: Account) -> None:
    h = owner.headers
    pipe = await pipeline(api, owner, "A", "B")
    made = await deal(api, owner, pipe, stage_id=pipe["stages"][1]["id"])
    url = f"/v1/pipelines/{pipe['id']}"
    envelope(await api.delete(url, headers=h), 409, "conflict")
    envelope(await api.delete(f"{url}/stages/{pipe['stages'][1]['id']}", headers=h), 409)
    assert (await api.get(f"/v1/deals/{made['id']}", headers=h)).status_code == 200
    assert (await api.delete(f"/v1/deals/{made['id']}", headers=h)).status_code == 204
    assert (await api.delete(f"{url}/stages/{pipe['stages'][1]['id']}",
                             headers=h)).status_code == 204
    assert (await api.delete(url, headers=h)).status_code == 204


async def test_kanban_counts_and_sums(api: httpx.AsyncClient, owner: Account,
                                      db: Database) -> None:
    pipe = await pipeline(api, owner, "Lead", "Won", "Lost")
    lead, won, lost = (s["id"] for s in pipe["stages"])
    await deal(api, owner, pipe, name="a", value=100.25)
    await deal(api, owner, pipe, name="b", value=200)
    await deal(api, owner, pipe, name="c")  # no value: counted, adds nothing
    await deal(api, owner, pipe, name="d", value="1000.10", stage_id=won)
    elsewhere = await pipeline(api, owner, "Lead")
    await deal(api, owner, elsewhere, value=5000)
    async with db.tenant_tx(owner.org_id) as conn:
        await conn.executemany(
            "INSERT INTO deals (organization_id, pipeline_id, stage_id, name, value)"
            " VALUES ($1, $2, $3, $4, 1)",
            [(uuid.UUID(owner.org_id), uuid.UUID(pipe["id"]), uuid.UUID(lost), f"bulk {i}")
             for i in range(55)])
    resp = await api.get(f"/v1/pipelines/{pipe['id']}/kanban", headers=owner.headers)
    assert resp.status_code == 200, resp.text
    board = resp.json()
    assert board["pipeline_id"] == pipe["id"]
    assert [(s["id"], s["order_index"], s["count"]) for s in board["stages"]] == [
        (lead, 0, 3), (won, 1, 1), (lost, 2, 55)]
    assert [s["value_sum"] for s in board["stages"]] == [300.25, 1000.1, 55.0]
    assert sorted(d["name"] for d in board["stages"][0]["deals"]) == ["a", "b", "c"]
    assert board["stages"][0]["deals"][0]["name"] == "c"  # newest first
    assert len(board["stages"][2]["deals"]) == 50
    assert all(d["stage_id"] == lost for d in board["stages"][2]["deals"])
    assert board["total_count"] == 59 and board["total_value"] == 1355.35
    envelope(await api.get(f"/v1/pipelines/{uuid.uuid4()}/kanban", headers=owner.headers),
             404)


async def test_deal_notes(api: httpx.AsyncClient, owner: Account, db: Database) -> None:
    made = await deal(api, owner, await pipeline(api, owner, "A"))
    url = f"/v1/deals/{made['id']}/notes"
    note = await api.post(url, json={"body": "Sent the quote."}, headers=owner.headers)
    assert note.status_code == 201, note.text
    assert (note.json()["author_id"], note.json()["deal_id"]) == (owner.user_id, made["id"])
    assert note.json()["contact_id"] is None
    listed = await api.get(url, headers=owner.headers)
    assert [n["body"] for n in listed.json()] == ["Sent the quote."]
    envelope(await api.post(url, json={"body": ""}, headers=owner.headers), 422)
    envelope(await api.post(url, json={"text": "x"}, headers=owner.headers), 422)
    envelope(await api.get(f"/v1/deals/{uuid.uuid4()}/notes", headers=owner.headers), 404)
    _, events = await history(db, owner, note.json()["id"])
    assert [e for e, _ in events] == ["note.created"]


async def test_other_orgs_pipelines_and_deals(api: httpx.AsyncClient, owner: Account,
                                              db: Database) -> None:
    pipe = await pipeline(api, owner, "A", "B")
    contact = (await api.post("/v1/contacts", json={"first_name": "Ann"},
                              headers=owner.headers)).json()
    company = (await api.post("/v1/companies", json={"name": "Acme"},
                              headers=owner.headers)).json()
    made = await deal(api, owner, pipe, value=10)
    thief = await register(api, "Thief Inc")
    h = thief.headers
    p_url, stage = f"/v1/pipelines/{pipe['id']}", pipe["stages"][0]["id"]
    d_url = f"/v1/deals/{made['id']}"
    for method, url, body in (
            ("GET", p_url, None), ("PATCH", p_url, {"name": "X"}), ("DELETE", p_url, None),
            ("GET", f"{p_url}/stages", None), ("POST", f"{p_url}/stages", {"name": "X"}),
            ("PATCH", f"{p_url}/stages/{stage}", {"name": "X"}),
            ("DELETE", f"{p_url}/stages/{stage}", None), ("GET", f"{p_url}/kanban", None),
            ("PUT", f"{p_url}/stages/order", {"stage_ids": [s["id"] for s in pipe["stages"]]}),
            ("GET", d_url, None), ("PATCH", d_url, {"name": "X"}), ("DELETE", d_url, None),
            ("GET", f"{d_url}/notes", None), ("POST", f"{d_url}/notes", {"body": "x"})):
        envelope(await api.request(method, url, json=body, headers=h), 404, "not_found")
    own = await pipeline(api, thief, "Mine")
    base = {"name": "Steal", "pipeline_id": own["id"]}
    for extra in ({"pipeline_id": pipe["id"]}, {"stage_id": stage},
                  {"contact_id": contact["id"]}, {"company_id": company["id"]}):
        envelope(await api.post("/v1/deals", json={**base, **extra}, headers=h), 422, "invalid")
    theirs = await deal(api, thief, own)
    for body in ({"pipeline_id": pipe["id"]}, {"stage_id": stage},
                 {"contact_id": contact["id"]}, {"company_id": company["id"]}):
        envelope(await api.patch(f"/v1/deals/{theirs['id']}", json=body, headers=h), 422)
    assert (await api.get("/v1/deals", params={"pipeline_id": pipe["id"]},
                          headers=h)).json()["total"] == 0
    assert (await api.get(d_url, headers=owner.headers)).json() == made
    assert (await api.get(p_url, headers=owner.headers)).json() == pipe
    async with db.tenant_tx(thief.org_id) as conn:
        assert await conn.fetchval("SELECT count(*) FROM deals") == 1
        assert await conn.fetchval("SELECT count(*) FROM notes") == 0

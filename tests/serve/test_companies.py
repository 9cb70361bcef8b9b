"""Companies over real HTTP: CRUD, filters, pagination, tenancy, audit + events."""
from __future__ import annotations

import uuid
from typing import Any

import httpx

from storage.db import Database
from tests.conftest import Account, register
from tests.serve.test_auth import envelope


async def create(api: httpx.AsyncClient, who: Account, **fields: object) -> dict[str, Any]:
    resp = await api.post("/v1/companies", json=fields, headers=who.headers)
    assert resp.status_code == 201, resp.text
    return resp.json()  # type: ignore[no-any-return]


async def test_crud_with_audit_and_events(api: httpx.AsyncClient, owner: Account,
                                          db: Database) -> None:
    h = owner.headers
    acme = await create(api, owner, name="Acme", industry="Robotics", size="medium",
                        stage="lead", website="acme.example", metadata={"tier": 1})
    assert acme["metadata"] == {"tier": 1} and acme["description"] is None
    got = await api.get(f"/v1/companies/{acme['id']}", headers=h)
    assert got.status_code == 200 and got.json() == acme
    patched = await api.patch(f"/v1/companies/{acme['id']}",
                              json={"stage": "customer", "description": "Makes robots"},
                              headers=h)
    assert patched.status_code == 200, patched.text
    assert patched.json()["stage"] == "customer" and patched.json()["name"] == "Acme"
    assert patched.json()["size"] == "medium"  # untouched fields stay
    same = await api.patch(f"/v1/companies/{acme['id']}", json={"stage": "customer"},
                           headers=h)
    assert same.status_code == 200  # a no-op: no audit row, no event
    assert (await api.delete(f"/v1/companies/{acme['id']}", headers=h)).status_code == 204
    envelope(await api.get(f"/v1/companies/{acme['id']}", headers=h), 404, "not_found")
    envelope(await api.delete(f"/v1/companies/{acme['id']}", headers=h), 404)
    company_id = uuid.UUID(acme["id"])
    async with db.tenant_tx(owner.org_id) as conn:
        audit = await conn.fetch("SELECT action, changes, user_id FROM audit_logs"
                                 " WHERE resource_id = $1 ORDER BY created_at", company_id)
        events = await conn.fetch("SELECT event_type, payload FROM events"
                                  " WHERE entity_id = $1 ORDER BY seq", company_id)
    assert [r["action"] for r in audit] == ["company.create", "company.update",
                                            "company.delete"]
    assert all(str(r["user_id"]) == owner.user_id for r in audit)
    assert audit[1]["changes"] == {"stage": ["lead", "customer"],
                                   "description": [None, "Makes robots"]}
    assert [r["event_type"] for r in events] == ["company.created", "company.updated",
                                                 "company.deleted"]
    assert events[0]["payload"]["name"] == "Acme"
    assert events[2]["payload"] == {"id": acme["id"]}


async def test_filters_and_pagination(api: httpx.AsyncClient, owner: Account) -> None:
    h = owner.headers
    for i in range(5):
        await create(api, owner, name=f"Shop {i}", industry="Retail", size="small",
                     stage="prospect" if i % 2 else "lead")
    await create(api, owner, name="Globex", industry="Energy", size="enterprise",
                 stage="partner", website="globex.example")
    await create(api, owner, name="50% Off Ltd")

    async def listed(**params: object) -> dict[str, Any]:
        resp = await api.get("/v1/companies", params=params, headers=h)
        assert resp.status_code == 200, resp.text
        return resp.json()  # type: ignore[no-any-return]

    page = await listed(limit=3, page=3)
    assert (page["page"], page["limit"], page["total"], len(page["data"])) == (3, 3, 7, 1)
    pages = [c["id"] for p in (1, 2, 3) for c in (await listed(limit=3, page=p))["data"]]
    assert len(set(pages)) == 7  # stable order: no row twice, none skipped
    assert (await listed(page=9))["data"] == []
    assert [c["name"] for c in (await listed(q="globex.exa"))["data"]] == ["Globex"]
    assert (await listed(q="energ"))["total"] == 1  # industry is searched
    assert (await listed(q="shop"))["total"] == 5  # case-insensitive
    assert (await listed(industry="retail"))["total"] == 5
    assert (await listed(stage="lead"))["total"] == 3
    assert (await listed(stage="prospect", industry="Retail", size="small"))["total"] == 2
    assert (await listed(size="enterprise"))["data"][0]["name"] == "Globex"
    assert [c["name"] for c in (await listed(q="%"))["data"]] == ["50% Off Ltd"]
    assert (await listed(q="_"))["total"] == 0  # _ is literal, not a wildcard
    envelope(await api.get("/v1/companies", params={"stage": "won"}, headers=h), 422)
    envelope(await api.get("/v1/companies", params={"size": "huge"}, headers=h), 422)
    envelope(await api.get("/v1/companies", params={"limit": 0}, headers=h), 422)
    envelope(await api.get("/v1/companies", params={"limit": 101}, headers=h), 422)
    envelope(await api.get("/v1/companies", params={"page": "x"}, headers=h), 422)
    envelope(await api.get("/v1/companies", params={"q": "x" * 201}, headers=h), 422)


async def test_bad_input_gets_the_envelope(api: httpx.AsyncClient, owner: Account,
                                           db: Database) -> None:
    h = owner.headers
    url = "/v1/companies"
    for body in ({}, {"name": ""}, {"name": "   "}, {"name": None}, {"name": 5},
                 {"name": "x" * 256}, {"name": "A", "industry": "x" * 101},
                 {"name": "A", "website": "x" * 256}, {"name": "A", "size": "huge"},
                 {"name": "A", "stage": "won"}, {"name": "A", "bogus": 1},
                 {"name": "A", "metadata": [1]}, {"name": "A", "logo_url": "x" * 2049}):
        envelope(await api.post(url, json=body, headers=h), 422, "validation_error")
    envelope(await api.post(url, json=["Acme"], headers=h), 422)
    envelope(await api.post(url, content=b"{\"name\": ", headers={
        **h, "content-type": "application/json"}), 400, "malformed_json")
    envelope(await api.get(f"{url}/not-a-uuid", headers=h), 422)
    envelope(await api.get(f"{url}/{uuid.uuid4()}", headers=h), 404, "not_found")
    envelope(await api.patch(f"{url}/{uuid.uuid4()}", json={"stage": "lead"}, headers=h), 404)
    envelope(await api.delete(f"{url}/{uuid.uuid4()}", headers=h), 404)
    acme = await create(api, owner, name="Acme")
    one = f"{url}/{acme['id']}"
    envelope(await api.patch(one, json={"name": None}, headers=h), 422, "invalid")
    envelope(await api.patch(one, json={"size": "tiny"}, headers=h), 422)
    envelope(await api.patch(one, json={"id": str(uuid.uuid4())}, headers=h), 422)
    envelope(await api.patch(one, content=b"nope", headers={
        **h, "content-type": "application/json"}), 400, "malformed_json")
    envelope(await api.post(url, json={"name": "A"}), 401)
    assert (await api.get(one, headers=h)).json() == acme
    async with db.tenant_tx(owner.org_id) as conn:
        assert await conn.fetchval("SELECT count(*) FROM companies") == 1
        assert await conn.fetchval("SELECT count(*) FROM audit_logs"
                                   " WHERE resource_type = 'company'") == 1


async def test_other_orgs_companies_are_404(api: httpx.AsyncClient, owner: Account,
                                            db: Database) -> None:
    mine = await create(api, owner, name="Mine Corp", stage="customer")
    thief = await register(api, "Thief Inc")
    h = thief.headers
    url = f"/v1/companies/{mine['id']}"
    envelope(await api.get(url, headers=h), 404, "not_found")
    envelope(await api.patch(url, json={"name": "Stolen"}, headers=h), 404)
    envelope(await api.delete(url, headers=h), 404)
    listed = await api.get("/v1/companies", params={"q": "Mine"}, headers=h)
    assert listed.json()["total"] == 0
    # As a foreign key of the thief's own records, the id is not found either.
    envelope(await api.post("/v1/contacts", json={"company_id": mine["id"]}, headers=h), 422)
    still = await api.get(url, headers=owner.headers)
    assert still.json() == mine
    async with db.tenant_tx(thief.org_id) as conn:
        assert await conn.fetchval("SELECT count(*) FROM contacts") == 0
        assert await conn.fetchval("SELECT count(*) FROM audit_logs"
                                   " WHERE resource_type = 'company'") == 0


async def test_delete_unlinks_contacts(api: httpx.AsyncClient, owner: Account) -> None:
    h = owner.headers
    acme = await create(api, owner, name="Acme")
    contact = await api.post("/v1/contacts", json={"first_name": "Ann", "company_id": acme["id"]},
                             headers=h)
    assert contact.status_code == 201 and contact.json()["company_id"] == acme["id"]
    assert (await api.delete(f"/v1/companies/{acme['id']}", headers=h)).status_code == 204
    after = await api.get(f"/v1/contacts/{contact.json()['id']}", headers=h)
    assert after.status_code == 200 and after.json()["company_id"] is None


async def test_viewer_key_reads_but_cannot_write(api: httpx.AsyncClient, owner: Account) -> None:
    acme = await create(api, owner, name="Acme")
    made = await api.post("/v1/api-keys", json={"name": "reader", "scopes": ["crm:read"]},
                          headers=owner.headers)
    key = {"X-API-Key": made.json()["key"]}
    assert (await api.get(f"/v1/companies/{acme['id']}", headers=key)).status_code == 200
    envelope(await api.post("/v1/companies", json={"name": "B"}, headers=key), 403)
    envelope(await api.patch(f"/v1/companies/{acme['id']}", json={"name": "B"}, headers=key),
             403)
    envelope(await api.delete(f"/v1/companies/{acme['id']}", headers=key), 403)

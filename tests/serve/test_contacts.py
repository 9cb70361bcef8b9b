"""Contacts over real HTTP: CRUD, search, tenancy, audit + events, import."""
from __future__ import annotations

import asyncio
import uuid

import httpx

from storage.db import Database
from tests.conftest import Account, register
from tests.serve.test_auth import envelope


async def create(api: httpx.AsyncClient, who: Account, **fields: object) -> dict:  # type: ignore[type-arg]
    resp = await api.post("/v1/contacts", json=fields, headers=who.headers)
    assert resp.status_code == 201, resp.text
    return resp.json()  # type: ignore[no-any-return]


async def test_crud_with_audit_and_events(api: httpx.AsyncClient, owner: Account,
                                          db: Database) -> None:
    ada = await create(api, owner, first_name="Ada", last_name="Lovelace",
                       email="ada@example.com", tags=["vip", "ai", "vip"])
    assert ada["tags"] == ["ai", "vip"] and ada["source"] == "manual"
    got = await api.get(f"/v1/contacts/{ada['id']}", headers=owner.headers)
    assert got.json()["email"] == "ada@example.com"
    patched = await api.patch(f"/v1/contacts/{ada['id']}", json={"role": "CTO"},
                              headers=owner.headers)
    assert patched.status_code == 200 and patched.json()["role"] == "CTO"
    assert patched.json()["email"] == "ada@example.com"
    deleted = await api.delete(f"/v1/contacts/{ada['id']}", headers=owner.headers)
    assert deleted.status_code == 204
    envelope(await api.get(f"/v1/contacts/{ada['id']}", headers=owner.headers), 404)
    async with db.tenant_tx(owner.org_id) as conn:
        actions = [r["action"] for r in await conn.fetch(
            "SELECT action FROM audit_logs WHERE resource_id = $1 ORDER BY created_at",
            uuid.UUID(ada["id"]))]
        events = [r["event_type"] for r in await conn.fetch(
            "SELECT event_type FROM events WHERE entity_id = $1 ORDER BY seq",
            uuid.UUID(ada["id"]))]
        changes = await conn.fetchval(
            "SELECT changes FROM audit_logs WHERE action = 'contact.update'"
            " AND resource_id = $1", uuid.UUID(ada["id"]))
    assert actions == ["contact.create", "contact.update", "contact.delete"]
    assert events == ["contact.created", "contact.updated", "contact.deleted"]
    assert changes == {"role": [None, "CTO"]}


async def test_search_filters_and_pagination(api: httpx.AsyncClient, owner: Account) -> None:
    for i in range(7):
        await create(api, owner, first_name=f"Person{i}", email=f"p{i}@example.com",
                     tags=["even"] if i % 2 == 0 else ["odd"], telegram_username=f"tg_{i}")
    await create(api, owner, first_name="Zed", phone="+15550001", source="integration")
    page = await api.get("/v1/contacts", params={"limit": 3, "page": 2}, headers=owner.headers)
    body = page.json()
    assert (body["page"], body["limit"], body["total"], len(body["data"])) == (2, 3, 8, 3)
    found = await api.get("/v1/contacts", params={"q": "tg_3"}, headers=owner.headers)
    assert [c["first_name"] for c in found.json()["data"]] == ["Person3"]
    evens = await api.get("/v1/contacts", params={"tag": "even"}, headers=owner.headers)
    assert evens.json()["total"] == 4
    by_phone = await api.get("/v1/contacts", params={"q": "555000"}, headers=owner.headers)
    assert [c["first_name"] for c in by_phone.json()["data"]] == ["Zed"]
    source = await api.get("/v1/contacts", params={"source": "integration"},
                           headers=owner.headers)
    assert source.json()["total"] == 1
    literal = await api.get("/v1/contacts", params={"q": "%"}, headers=owner.headers)
    assert literal.json()["total"] == 0  # % is searched for, not a wildcard


async def test_search_words_combine_with_filters(api: httpx.AsyncClient,
                                                 owner: Account) -> None:
    company = (await api.post("/v1/companies", json={"name": "Umbrella"},
                              headers=owner.headers)).json()["id"]
    for i, (first, last) in enumerate([("Grace", "Hopper"), ("Grace", "Kelly"),
                                       ("Hopper", "Grace"), ("Gregory", "House")]):
        await create(api, owner, first_name=first, last_name=last, tags=[f"t{i % 2}"],
                     company_id=company if i < 3 else None)
    h = owner.headers

    async def names(**params: object) -> tuple[int, list[str]]:
        body = (await api.get("/v1/contacts", params=params, headers=h)).json()
        return body["total"], sorted(f"{c['first_name']} {c['last_name']}" for c in body["data"])

    assert await names(q="gr ho") == (3, ["Grace Hopper", "Gregory House", "Hopper Grace"])
    assert await names(q="grace hop") == (2, ["Grace Hopper", "Hopper Grace"])
    assert await names(q="GRACE hopper", tag="t0") == (2, ["Grace Hopper", "Hopper Grace"])
    assert await names(q="grace", tag="t1") == (1, ["Grace Kelly"])
    assert await names(q="gr", company_id=company) == (3, [
        "Grace Hopper", "Grace Kelly", "Hopper Grace"])
    assert await names(q="gre hou") == (1, ["Gregory House"])
    assert await names(q="gr", source="manual", limit=2, page=3) == (4, [])  # past the end
    assert await names(q="grace nobody") == (0, [])
    # the newest first, however the matches were found
    listed = (await api.get("/v1/contacts", params={"q": "g"}, headers=h)).json()["data"]
    assert [c["created_at"] for c in listed] == sorted((c["created_at"] for c in listed),
                                                       reverse=True)


async def test_bad_input_gets_the_envelope(api: httpx.AsyncClient, owner: Account) -> None:
    h = owner.headers
    await create(api, owner, email="dup@example.com")
    envelope(await api.post("/v1/contacts", json={"email": "DUP@example.com"}, headers=h), 409)
    envelope(await api.post("/v1/contacts", json={"email": "not-an-email"}, headers=h), 422)
    envelope(await api.post("/v1/contacts", json={"first_name": 5}, headers=h), 422)
    envelope(await api.post("/v1/contacts", json={"bogus": "x"}, headers=h), 422)
    envelope(await api.post("/v1/contacts", json={"first_name": "x" * 256}, headers=h), 422)
    envelope(await api.get("/v1/contacts/not-a-uuid", headers=h), 422)
    envelope(await api.get("/v1/contacts", params={"limit": 0}, headers=h), 422)
    envelope(await api.get("/v1/contacts", params={"page": -1}, headers=h), 422)
    envelope(await api.get("/v1/contacts", params={"limit": 1000}, headers=h), 422)
    envelope(await api.post("/v1/contacts", content=b"[", headers={
        **h, "content-type": "application/json"}), 400, "malformed_json")
    envelope(await api.post("/v1/contacts", json={"company_id": str(uuid.uuid4())}, headers=h),
             422)


async def test_other_orgs_contacts_are_404(api: httpx.AsyncClient, owner: Account) -> None:
    mine = await create(api, owner, first_name="Mine", email="mine@example.com")
    thief = await register(api, "Thief Inc")
    h = thief.headers
    url = f"/v1/contacts/{mine['id']}"
    envelope(await api.get(url, headers=h), 404, "not_found")
    envelope(await api.patch(url, json={"first_name": "Stolen"}, headers=h), 404)
    envelope(await api.delete(url, headers=h), 404)
    envelope(await api.get(f"{url}/notes", headers=h), 404)
    envelope(await api.post(f"{url}/notes", json={"body": "hi"}, headers=h), 404)
    tagged = await api.post("/v1/contacts/bulk-tag", json={"contact_ids": [mine["id"]],
                                                           "add": ["pwned"]}, headers=h)
    assert tagged.json() == {"updated": 0}
    listed = await api.get("/v1/contacts", params={"q": "Mine"}, headers=h)
    assert listed.json()["total"] == 0
    still = await api.get(url, headers=owner.headers)
    assert still.json()["first_name"] == "Mine" and still.json()["tags"] == []


async def test_bulk_tag_and_notes(api: httpx.AsyncClient, owner: Account) -> None:
    a = await create(api, owner, first_name="A", tags=["old"])
    b = await create(api, owner, first_name="B")
    resp = await api.post("/v1/contacts/bulk-tag", json={
        "contact_ids": [a["id"], b["id"]], "add": ["new"], "remove": ["old"]},
        headers=owner.headers)
    assert resp.json() == {"updated": 2}
    for c in (a, b):
        got = await api.get(f"/v1/contacts/{c['id']}", headers=owner.headers)
        assert got.json()["tags"] == ["new"]
    note = await api.post(f"/v1/contacts/{a['id']}/notes", json={"body": "Called, keen."},
                          headers=owner.headers)
    assert note.status_code == 201 and note.json()["author_id"] == owner.user_id
    notes = await api.get(f"/v1/contacts/{a['id']}/notes", headers=owner.headers)
    assert [n["body"] for n in notes.json()] == ["Called, keen."]


async def test_csv_import_reports_each_bad_row(api: httpx.AsyncClient, owner: Account) -> None:
    await create(api, owner, email="taken@example.com")
    csv_text = ("first_name,last_name,email,tags\n"
                "Ann,One,ann@example.com,a;b\n"
                "Bad,Email,not-an-email,\n"
                "Dup,Licate,taken@example.com,\n"
                "Cy,Three,cy@example.com,\n")
    resp = await api.post("/v1/contacts/import", content=csv_text.encode(),
                          headers={**owner.headers, "content-type": "text/csv"})
    assert resp.status_code == 200, resp.text
    report = resp.json()
    assert report["imported"] == 2 and report["failed"] == 2
    assert [e["row"] for e in report["errors"]] == [3, 4]
    assert "email" in report["errors"][0]["errors"][0]
    ann = await api.get("/v1/contacts", params={"q": "ann@"}, headers=owner.headers)
    assert ann.json()["data"][0]["tags"] == ["a", "b"]
    assert ann.json()["data"][0]["source"] == "import"
    envelope(await api.post("/v1/contacts/import", content=b"nope,cols\n1,2\n",
                            headers={**owner.headers, "content-type": "text/csv"}), 422)
    # CSV the parser refuses (a stray carriage return, found by schemathesis; an
    # oversize field) is reported, not a 500.
    for bad in (b"\r\xc3\xb7%\x17]", b"first_name\n" + b"x" * 140_000):
        envelope(await api.post("/v1/contacts/import", content=bad,
                                headers={**owner.headers, "content-type": "text/csv"}), 422)


async def test_api_key_scopes_and_revocation(api: httpx.AsyncClient, owner: Account) -> None:
    made = await api.post("/v1/api-keys", json={"name": "reader", "scopes": ["crm:read"]},
                          headers=owner.headers)
    assert made.status_code == 201, made.text
    key = made.json()["key"]
    listed = await api.get("/v1/api-keys", headers=owner.headers)
    assert "key" not in listed.json()["data"][0]
    assert listed.json()["data"][0]["prefix"] in key
    as_key = {"X-API-Key": key}
    assert (await api.get("/v1/contacts", headers=as_key)).status_code == 200
    envelope(await api.post("/v1/contacts", json={"first_name": "X"}, headers=as_key), 403)
    envelope(await api.get("/v1/contacts", headers={"X-API-Key": key[:-2] + "xx"}), 401)
    revoke = await api.delete(f"/v1/api-keys/{made.json()['id']}", headers=owner.headers)
    assert revoke.status_code == 204
    envelope(await api.get("/v1/contacts", headers=as_key), 401)
    envelope(await api.post("/v1/api-keys", json={"name": "x", "scopes": ["root"]},
                            headers=owner.headers), 422)


async def test_rate_limit_answers_429_with_retry_after(api: httpx.AsyncClient,
                                                       owner: Account) -> None:
    responses = await asyncio.gather(*(
        api.get("/v1/contacts", params={"limit": 1}, headers=owner.headers)
        for _ in range(200)))
    limited = [r for r in responses if r.status_code == 429]
    assert limited, "a burst of 200 must exceed the bucket of 120"
    assert all(r.status_code in (200, 429) for r in responses)
    assert int(limited[0].headers["retry-after"]) >= 1
    assert limited[0].json()["error"]["code"] == "rate_limited"


async def test_search_matches_word_starts_and_follows_edits(api: httpx.AsyncClient,
                                                           owner: Account) -> None:
    grace = await create(api, owner, first_name="Grace", last_name="Hopper",
                         email="grace.hopper@navy.example", phone="+1 (555) 010-4477",
                         telegram_username="@amazing_grace")
    await create(api, owner, first_name="Ada", last_name="Lovelace", email="ada@engine.example")

    async def names(q: str) -> list[str]:
        resp = await api.get("/v1/contacts", params={"q": q}, headers=owner.headers)
        assert resp.status_code == 200, resp.text
        return [c["first_name"] for c in resp.json()["data"]]

    for q in ("gra", "HOP", "grace hop", "navy", "grace.hopper@", "amazing", "0104477",
              "4477", "555"):
        assert await names(q) == ["Grace"], q
    assert await names("race") == []  # words match from their start
    assert await names("grace lovelace") == []  # every word must match
    assert sorted(await names("a")) == ["Ada", "Grace"]
    envelope(await api.get("/v1/contacts", params={"q": "a b c d e f"},
                           headers=owner.headers), 422)
    renamed = await api.patch(f"/v1/contacts/{grace['id']}", json={"first_name": "Amelia"},
                              headers=owner.headers)
    assert renamed.status_code == 200
    assert await names("grace") == ["Amelia"]  # still the email and telegram name
    assert await names("amel") == ["Amelia"]
    assert await names("hopper") == ["Amelia"]
    await api.delete(f"/v1/contacts/{grace['id']}", headers=owner.headers)
    assert await names("amel") == []
    other = await register(api)
    assert (await api.get("/v1/contacts", params={"q": "ada"}, headers=other.headers)
            ).json()["total"] == 0


async def test_fast_path_answers_as_the_documented_route(api: httpx.AsyncClient,
                                                         owner: Account) -> None:
    """`GET /v1/contacts` is served raw (serve/fastpath.py) when its query is
    plainly valid; an extra parameter sends the same request through FastAPI,
    which ignores it. Both must answer alike, errors included."""
    company = await api.post("/v1/companies", json={"name": "Initech"}, headers=owner.headers)
    assert company.status_code == 201, company.text
    company_id = company.json()["id"]
    await create(api, owner, first_name="Fay", last_name="Fast", email="fay@example.com",
                 tags=["a", "b"], company_id=company_id, source="import", phone="+15557771234")
    await create(api, owner, first_name="Fred", email="fred@example.com", tags=["a"],
                 metadata={"n": 1})
    key = await api.post("/v1/api-keys", json={"name": "writer", "scopes": ["crm:write"]},
                         headers=owner.headers)
    assert key.status_code == 201, key.text
    no_read = {"X-API-Key": key.json()["key"]}
    cases: list[tuple[str, dict[str, str]]] = [
        ("", owner.headers),
        ("q=fa&limit=1&page=2", owner.headers),
        ("q=fast%20fay", owner.headers),
        ("q=7771", owner.headers),
        ("tag=a&tag=b", owner.headers),
        (f"company_id={company_id}&source=import", owner.headers),
        ("q=%00", owner.headers),  # refused by the database as data: 422
        ("q=nobody", owner.headers),
        ("", {}),  # 401
        ("", {"Authorization": "Bearer nonsense"}),
        ("", {"Authorization": "Basic Zm9vOmJhcg=="}),
        ("", no_read),  # 403
    ]
    from serve.fastpath import contact_query
    for query, headers in cases:
        assert contact_query(query.encode()) is not None, query
        assert contact_query(f"{query}&via=app".encode()) is None
        fast = await api.get(f"/v1/contacts?{query}", headers=headers)
        slow = await api.get(f"/v1/contacts?{query}&via=app", headers=headers)
        assert (fast.status_code, fast.json()) == (slow.status_code, slow.json()), query
        assert fast.headers["content-type"] == slow.headers["content-type"]
    statuses = [(await api.get(f"/v1/contacts?{q}", headers=h)).status_code for q, h in cases]
    assert statuses == [200] * 6 + [422, 200, 401, 401, 401, 403]

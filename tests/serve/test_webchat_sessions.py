"""Web chat integrations and visitor sessions through Serve: the integration's
checks and once-shown secret, allowed origins, anonymous visitor ids resumed
(forged ones refused), identity HMAC, CORS naming allowed origins only,
session limits, bad session bodies, and the widget's script as served."""
from __future__ import annotations

import hashlib
import hmac
import uuid

import httpx

from serve.stack import Stack
from tests.conftest import Account
from tests.serve.local_app import fresh_ip, local_app
from tests.serve.webchat_visitors import (
    ORIGIN,
    OTHER,
    auth,
    make_webchat,
    session,
    visitor,
)
from tests.waiting import eventually


async def test_webchat_integration_is_validated_and_its_secret_shown_once(
        api: httpx.AsyncClient, owner: Account) -> None:
    for origins in ([], ["https://shop.example/path"], ["ftp://shop.example"], ["shop.example"],
                    ["https://*.example"], ["https://user@shop.example"],
                    [f"https://s{i}.example" for i in range(21)]):
        resp = await api.post("/v1/integrations", headers=owner.headers, json={
            "type": "webchat", "name": "Website", "config": {"allowed_origins": origins}})
        assert resp.status_code == 422, (origins, resp.text)
        assert resp.json()["error"]["code"] in ("invalid", "validation_error")
    plain = await make_webchat(api, owner, ["HTTPS://Shop.Example:443", "http://localhost:8080"])
    assert plain["config"] == {"allowed_origins": ["https://shop.example",
                                                   "http://localhost:8080"],
                               "identity_verification": False}
    assert plain.get("secret") is None
    assert f'data-integration="{plain["id"]}"' in plain["embed"]
    assert plain["embed"].startswith("<script src=") and "/widget.js" in plain["embed"]

    verified = await make_webchat(api, owner, verify=True)
    secret = verified["secret"]
    assert len(secret) == 64
    shown = await api.get(f"/v1/integrations/{verified['id']}", headers=owner.headers)
    assert shown.status_code == 200
    assert secret not in shown.text and "secret" not in shown.json()["config"]
    assert shown.json()["config"]["identity_verification"] is True
    assert shown.json()["embed"] == verified["embed"]
    listed = await api.get("/v1/integrations", headers=owner.headers)
    assert {i["id"]: i["embed"] for i in listed.json()["data"]} == {
        plain["id"]: plain["embed"], verified["id"]: verified["embed"]}
    assert secret not in listed.text

    patched = await api.patch(f"/v1/integrations/{verified['id']}", headers=owner.headers,
                              json={"config": {"allowed_origins": ["https://New.example"]}})
    assert patched.status_code == 200, patched.text
    assert patched.json()["config"]["allowed_origins"] == ["https://new.example"]
    bad = await api.patch(f"/v1/integrations/{verified['id']}", headers=owner.headers,
                          json={"config": {"allowed_origins": ["nope"]}})
    assert bad.status_code == 422
    rotated = await api.post(f"/v1/integrations/{verified['id']}/rotate-secret",
                             headers=owner.headers)
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["secret"] not in (secret, None)

    inbox = await api.post("/v1/integrations", headers=owner.headers,
                           json={"type": "api", "name": "Inbox"})
    wrong = await api.patch(f"/v1/integrations/{inbox.json()['id']}", headers=owner.headers,
                            json={"config": {"allowed_origins": [ORIGIN]}})
    assert wrong.status_code == 422


async def test_sessions_need_an_allowed_origin(api: httpx.AsyncClient, owner: Account) -> None:
    chat = await make_webchat(api, owner)
    ok = await session(api, chat["id"])
    assert ok.status_code == 201, ok.text
    body = ok.json()
    assert body["identified"] is False and body["visitor_id"].startswith("v1.")
    assert body["token"] and body["expires_at"] and uuid.UUID(body["chat_id"])
    other = await session(api, chat["id"], origin=OTHER)
    assert other.status_code == 403
    assert other.json()["error"]["code"] == "origin_not_allowed"
    assert (await session(api, chat["id"], origin=None)).status_code == 403
    assert (await session(api, str(uuid.uuid4()))).status_code == 404
    inbox = await api.post("/v1/integrations", headers=owner.headers,
                           json={"type": "api", "name": "Inbox"})
    assert (await session(api, inbox.json()["id"])).status_code == 404  # not a web chat
    off = await api.patch(f"/v1/integrations/{chat['id']}", headers=owner.headers,
                          json={"is_active": False})
    assert off.status_code == 200

    async def refused() -> bool:
        return (await session(api, chat["id"])).status_code == 404

    await eventually(refused, what="the deactivated web chat refusing sessions")


async def test_anonymous_visitor_resumes_and_forged_ids_are_refused(
        api: httpx.AsyncClient, owner: Account) -> None:
    chat = await make_webchat(api, owner)
    first = await visitor(api, chat["id"])
    again = await visitor(api, chat["id"], visitor_id=first["visitor_id"])
    assert again["chat_id"] == first["chat_id"] and again["visitor_id"] == first["visitor_id"]
    stranger = await visitor(api, chat["id"])
    assert stranger["chat_id"] != first["chat_id"]
    prefix, nonce, _ = first["visitor_id"].split(".")
    for forged in (f"{prefix}.{nonce}.{'0' * 32}", f"{prefix}.{'a' * 32}.{'b' * 32}",
                   "guess", first["visitor_id"] + "x"):
        resp = await session(api, chat["id"], visitor_id=forged)
        assert resp.status_code == 401, forged
        assert resp.json()["error"]["code"] == "unauthorized"
    elsewhere = await make_webchat(api, owner)  # an id is good for its own integration only
    assert (await session(api, elsewhere["id"],
                          visitor_id=first["visitor_id"])).status_code == 401


async def test_identity_verification(api: httpx.AsyncClient, owner: Account) -> None:
    chat = await make_webchat(api, owner, verify=True)
    digest = hmac.new(chat["secret"].encode(), b"customer-42", hashlib.sha256).hexdigest()
    known = await visitor(api, chat["id"], identifier="customer-42", identifier_hash=digest)
    assert known["identified"] is True
    elsewhere = await visitor(api, chat["id"], identifier="customer-42",
                              identifier_hash=digest.upper())  # another device
    assert elsewhere["chat_id"] == known["chat_id"]
    assert elsewhere["visitor_id"] != known["visitor_id"]
    wrong = await session(api, chat["id"], identifier="customer-42", identifier_hash="00" * 32)
    assert wrong.status_code == 401
    other = await session(api, chat["id"], identifier="customer-43", identifier_hash=digest)
    assert other.status_code == 401
    missing = await session(api, chat["id"], identifier="customer-42")
    assert missing.status_code == 401
    anonymous = await visitor(api, chat["id"])
    assert anonymous["identified"] is False and anonymous["chat_id"] != known["chat_id"]

    # Without verification, a bare identifier names no one: it cannot open
    # someone else's chat.
    open_chat = await make_webchat(api, owner)
    claimed = await visitor(api, open_chat["id"], identifier="customer-42")
    assert claimed["identified"] is False
    twice = await visitor(api, open_chat["id"], identifier="customer-42")
    assert twice["chat_id"] != claimed["chat_id"]


async def test_cors_names_allowed_origins_only(api: httpx.AsyncClient, owner: Account) -> None:
    chat = await make_webchat(api, owner)
    path = f"/v1/webchat/{chat['id']}/sessions"
    preflight = {"Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type"}
    ok = await api.options(path, headers={"Origin": ORIGIN, **preflight})
    assert ok.status_code == 204
    assert ok.headers["access-control-allow-origin"] == ORIGIN
    assert "content-type" in ok.headers["access-control-allow-headers"].lower()
    assert "authorization" in ok.headers["access-control-allow-headers"].lower()
    assert "POST" in ok.headers["access-control-allow-methods"]
    assert "origin" in ok.headers["vary"].lower()
    refused = await api.options(path, headers={"Origin": OTHER, **preflight})
    assert refused.status_code == 403
    assert "access-control-allow-origin" not in refused.headers

    created = await session(api, chat["id"])
    assert created.headers["access-control-allow-origin"] == ORIGIN
    assert "origin" in created.headers["vary"].lower()
    other = await session(api, chat["id"], origin=OTHER)
    assert "access-control-allow-origin" not in other.headers
    token = created.json()["token"]

    tokened = await api.options("/v1/webchat/messages", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert tokened.status_code == 204
    assert tokened.headers["access-control-allow-origin"] == ORIGIN
    unknown = await api.options("/v1/webchat/messages", headers={
        "Origin": "https://nobody-allows-this.example", "Access-Control-Request-Method": "GET"})
    assert "access-control-allow-origin" not in unknown.headers
    listed = await api.get("/v1/webchat/messages", headers=auth(token))
    assert listed.headers["access-control-allow-origin"] == ORIGIN
    invalid = await api.post("/v1/webchat/messages", headers=auth(token), json={"content": ""})
    assert invalid.status_code == 422  # an error the widget can read too
    assert invalid.headers["access-control-allow-origin"] == ORIGIN
    # A same-origin GET carries no Origin: the token alone is enough then.
    bare = await api.get("/v1/webchat/messages", headers={"Authorization": f"Bearer {token}"})
    assert bare.status_code == 200 and "access-control-allow-origin" not in bare.headers
    foreign = await api.get("/v1/webchat/messages", headers=auth(token, OTHER))
    assert foreign.status_code == 403 and "access-control-allow-origin" not in foreign.headers


async def test_sessions_are_rate_limited_per_ip_and_integration(
        api: httpx.AsyncClient, owner: Account, stack: Stack) -> None:
    chat = await make_webchat(api, owner)
    path = f"/v1/webchat/{chat['id']}/sessions"
    async with local_app(stack.settings, webchat_sessions_burst_ip=2,
                         webchat_sessions_per_minute_ip=1, webchat_sessions_burst=4,
                         webchat_sessions_per_minute=1) as app:
        async with app.client() as one:
            codes = [(await one.post(path, json={}, headers={"Origin": ORIGIN})).status_code
                     for _ in range(3)]
            assert codes == [201, 201, 429]
        async with app.client() as two:
            assert (await two.post(path, json={}, headers={"Origin": ORIGIN})).status_code == 201
        async with app.client() as three:
            assert (await three.post(path, json={},
                                     headers={"Origin": ORIGIN})).status_code == 201
            limited = await three.post(path, json={}, headers={"Origin": ORIGIN})
            assert limited.status_code == 429  # the integration's 4 are spent
            assert int(limited.headers["retry-after"]) >= 1
            assert limited.headers["access-control-allow-origin"] == ORIGIN
        async with app.client(fresh_ip()) as four:
            assert (await four.post(path, json={}, headers={"Origin": ORIGIN})).status_code \
                == 429


async def test_bad_session_bodies_are_4xx(api: httpx.AsyncClient, owner: Account) -> None:
    chat = await make_webchat(api, owner)
    for body in ({"email": "not an email"}, {"name": ""}, {"visitor_id": "x" * 101},
                 {"identifier_hash": "ab"}, {"unknown": True}):
        resp = await session(api, chat["id"], **body)
        assert resp.status_code in (401, 422), (body, resp.text)
    assert (await api.post(f"/v1/webchat/{chat['id']}/sessions", content=b"{",
                           headers={"Origin": ORIGIN,
                                    "Content-Type": "application/json"})).status_code == 400
    assert (await api.post("/v1/webchat/not-a-uuid/sessions", json={},
                           headers={"Origin": ORIGIN})).status_code == 422


async def test_widget_script_is_served_cached_and_gzipped(api: httpx.AsyncClient) -> None:
    plain = await api.get("/widget.js", headers={"Accept-Encoding": "identity"})
    assert plain.status_code == 200
    assert plain.headers["content-type"].startswith("application/javascript")
    assert "content-encoding" not in plain.headers
    assert "attachShadow" in plain.text and "innerHTML" not in plain.text
    etag = plain.headers["etag"]
    assert (await api.get("/widget.js", headers={"If-None-Match": etag})).status_code == 304
    zipped = await api.get("/widget.js", headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip"
    assert zipped.text == plain.text  # httpx inflates it
    assert int(zipped.headers["content-length"]) < 30 * 1024
    page = await api.get(f"/widget/test?integration={uuid.uuid4()}")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'src="/widget.js"' in page.text
    assert (await api.get("/widget/test?integration=<script>")).status_code == 422

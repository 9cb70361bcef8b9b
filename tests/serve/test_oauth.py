"""Google OIDC (code + PKCE) against a loopback provider, and the Telegram
Login Widget hash check."""
from __future__ import annotations

import time
import uuid
from urllib.parse import parse_qs, urlsplit

import httpx

from serve.routers.oauth import telegram_hash
from storage.db import Database
from tests.conftest import TELEGRAM_LOGIN_BOT_TOKEN
from tests.fakes.google import FakeGoogle
from tests.serve.test_auth import envelope


async def consent(api: httpx.AsyncClient) -> tuple[str, str]:
    """Start a sign-in and let the provider redirect back: (code, state)."""
    start = await api.get("/v1/auth/oauth/google/start")
    assert start.status_code == 200, start.text
    url = start.json()["authorization_url"]
    query = parse_qs(urlsplit(url).query)
    assert query["code_challenge_method"] == ["S256"] and query["nonce"]
    async with httpx.AsyncClient() as browser:
        redirect = await browser.get(url, follow_redirects=False)
    assert redirect.status_code == 302
    back = parse_qs(urlsplit(redirect.headers["location"]).query)
    assert back["state"] == [start.json()["state"]]
    return back["code"][0], back["state"][0]


def new_person(fake: FakeGoogle) -> str:
    email = f"g{uuid.uuid4().hex[:10]}@example.com"
    fake.user = {"sub": str(uuid.uuid4().int)[:21], "email": email, "email_verified": True,
                 "name": "Grace Hopper"}
    return email


async def test_google_sign_in_creates_then_finds_the_account(
        api: httpx.AsyncClient, fake_google: FakeGoogle, db: Database) -> None:
    email = new_person(fake_google)
    code, state = await consent(api)
    first = await api.post("/v1/auth/oauth/google/callback", json={"code": code, "state": state})
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["user"]["email"] == email and body["organization"]["role"] == "owner"
    me = await api.get("/v1/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.json()["user"]["email"] == email
    code, state = await consent(api)
    again = await api.post("/v1/auth/oauth/google/callback", json={"code": code, "state": state})
    assert again.json()["user"]["id"] == body["user"]["id"]
    async with db.system_tx() as conn:
        row = await conn.fetchrow(
            "SELECT access_token, refresh_token FROM oauth_connections WHERE provider = 'google'"
            " AND provider_user_id = $1", fake_google.user["sub"])
    assert row is not None and not row["access_token"].startswith("ya29.")  # encrypted
    assert row["refresh_token"] and not row["refresh_token"].startswith("1//")


async def test_google_state_is_single_use_and_must_be_known(
        api: httpx.AsyncClient, fake_google: FakeGoogle) -> None:
    new_person(fake_google)
    code, state = await consent(api)
    envelope(await api.post("/v1/auth/oauth/google/callback",
                            json={"code": code, "state": "forged"}), 401)
    ok = await api.post("/v1/auth/oauth/google/callback", json={"code": code, "state": state})
    assert ok.status_code == 200
    envelope(await api.post("/v1/auth/oauth/google/callback",
                            json={"code": code, "state": state}), 401)


async def test_google_code_needs_its_own_pkce_verifier_and_is_single_use(
        api: httpx.AsyncClient, fake_google: FakeGoogle) -> None:
    new_person(fake_google)
    code_a, _ = await consent(api)
    _, state_b = await consent(api)
    # code A presented with flow B's verifier: the provider refuses it
    envelope(await api.post("/v1/auth/oauth/google/callback",
                            json={"code": code_a, "state": state_b}), 401)
    code_c, state_c = await consent(api)
    assert (await api.post("/v1/auth/oauth/google/callback",
                           json={"code": code_c, "state": state_c})).status_code == 200
    _, state_d = await consent(api)
    envelope(await api.post("/v1/auth/oauth/google/callback",
                            json={"code": code_c, "state": state_d}), 401)


def widget(user_id: int, **extra: object) -> dict[str, object]:
    fields: dict[str, object] = {"id": user_id, "first_name": "Pavel", "username": "pavel_d",
                                 "auth_date": int(time.time()), **extra}
    return {**fields, "hash": telegram_hash(TELEGRAM_LOGIN_BOT_TOKEN, fields)}


async def test_telegram_login_widget(api: httpx.AsyncClient) -> None:
    user_id = int(uuid.uuid4().int % 10**9)
    first = await api.post("/v1/auth/telegram", json=widget(user_id))
    assert first.status_code == 200, first.text
    again = await api.post("/v1/auth/telegram", json=widget(user_id))
    assert again.json()["user"]["id"] == first.json()["user"]["id"]
    tampered = {**widget(user_id), "username": "someone_else"}
    envelope(await api.post("/v1/auth/telegram", json=tampered), 401)
    stale = widget(user_id, auth_date=int(time.time()) - 2 * 86_400)
    envelope(await api.post("/v1/auth/telegram", json=stale), 422)
    envelope(await api.post("/v1/auth/telegram", json={**widget(user_id), "hash": "0" * 64}),
             401)

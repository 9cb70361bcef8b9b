"""Google and Telegram sign-in hardening: no linking by email, the explicit
link flow, TOTP honoured through /mfa/challenge, the state bound to its
browser by a cookie, and short-lived Telegram login data."""
from __future__ import annotations

import time
import uuid
from urllib.parse import parse_qs, urlsplit

import httpx
import pyotp

from core.settings import Settings
from storage.db import Database
from tests.conftest import Account, register
from tests.fakes.google import FakeGoogle
from tests.serve.local_app import local_api, local_app
from tests.serve.test_auth import envelope
from tests.serve.test_oauth import new_person, widget


async def consent(api: httpx.AsyncClient, **headers: str) -> tuple[str, str]:
    """Start in `api` (which keeps the binding cookie) and let the provider
    redirect back: (code, state)."""
    start = await api.get("/v1/auth/oauth/google/start", headers=headers,
                          params={"link": "true"} if headers else None)
    assert start.status_code == 200, start.text
    async with httpx.AsyncClient() as provider:
        redirect = await provider.get(start.json()["authorization_url"], follow_redirects=False)
    assert redirect.status_code == 302
    back = parse_qs(urlsplit(redirect.headers["location"]).query)
    return back["code"][0], back["state"][0]


async def google(api: httpx.AsyncClient, **headers: str) -> httpx.Response:
    code, state = await consent(api, **headers)
    return await api.post("/v1/auth/oauth/google/callback", json={"code": code, "state": state})


def same_email(fake: FakeGoogle, account: Account) -> None:
    fake.user = {"sub": str(uuid.uuid4().int)[:21], "email": account.email.upper(),
                 "email_verified": True, "name": "Mallory"}


async def _links(db: Database, subject: str) -> list[uuid.UUID]:
    async with db.system_tx() as conn:
        rows = await conn.fetch("SELECT user_id FROM oauth_connections WHERE provider = 'google'"
                                " AND provider_user_id = $1", subject)
    return [r["user_id"] for r in rows]


async def test_google_never_signs_in_to_an_account_found_by_email(
        settings: Settings, fake_google: FakeGoogle, db: Database) -> None:
    async with local_api(settings) as api:
        victim = await register(api)
        same_email(fake_google, victim)
        refused = envelope(await google(api), 409, "account_exists")
        assert "link" in refused["message"] and "sign in" in refused["message"]
        assert await _links(db, fake_google.user["sub"]) == []


async def test_a_signed_in_user_links_google_then_signs_in_with_it(
        settings: Settings, fake_google: FakeGoogle, db: Database) -> None:
    async with local_api(settings) as api:
        account = await register(api)
        same_email(fake_google, account)
        linked = await google(api, **account.headers)
        assert linked.status_code == 200, linked.text
        body = linked.json()
        assert body["user"]["id"] == account.user_id
        assert body["organization"]["id"] == account.org_id
        assert await _links(db, fake_google.user["sub"]) == [uuid.UUID(account.user_id)]
        again = await google(api)  # a linked subject signs in, email or not
        assert again.status_code == 200, again.text
        assert again.json()["user"]["id"] == account.user_id
        # the same Google account cannot be linked to a second user
        other = await register(api)
        envelope(await google(api, **other.headers), 409, "conflict")
        assert await _links(db, fake_google.user["sub"]) == [uuid.UUID(account.user_id)]


async def test_linking_needs_a_user_session(settings: Settings, fake_google: FakeGoogle) -> None:
    async with local_api(settings) as api:
        account = await register(api)
        key = await api.post("/v1/api-keys", json={"name": "ci", "scopes": ["crm:read"]},
                             headers=account.headers)
        assert key.status_code == 201, key.text
        start = "/v1/auth/oauth/google/start?link=true"
        envelope(await api.get(start, headers={"X-API-Key": key.json()["key"]}), 403)
        envelope(await api.get(start), 401)
        new_person(fake_google)
        assert (await google(api)).status_code == 200  # a new account from Google is fine


async def _mfa_on(api: httpx.AsyncClient, access: str) -> pyotp.TOTP:
    headers = {"Authorization": f"Bearer {access}"}
    enrolled = await api.post("/v1/auth/mfa/enroll", headers=headers)
    assert enrolled.status_code == 200, enrolled.text
    totp = pyotp.TOTP(enrolled.json()["secret"])
    verified = await api.post("/v1/auth/mfa/verify", json={"code": totp.now()}, headers=headers)
    assert verified.status_code == 200, verified.text
    return totp


async def test_google_sign_in_asks_for_the_second_factor(
        settings: Settings, fake_google: FakeGoogle) -> None:
    async with local_api(settings) as api:
        new_person(fake_google)
        first = await google(api)
        assert first.status_code == 200, first.text
        user_id = first.json()["user"]["id"]
        totp = await _mfa_on(api, first.json()["access_token"])
        asked = envelope(await google(api), 401, "mfa_required")
        token = asked["details"]["mfa_token"]
        assert "access_token" not in asked["details"]
        envelope(await api.post("/v1/auth/mfa/challenge",
                                json={"mfa_token": token, "code": "000000"}), 422)
        envelope(await api.post("/v1/auth/mfa/challenge",
                                json={"mfa_token": "forged", "code": "000000"}), 401)
        done = await api.post("/v1/auth/mfa/challenge",
                              json={"mfa_token": token, "code": totp.at(time.time() + 30)})
        assert done.status_code == 200, done.text
        assert done.json()["user"]["id"] == user_id and done.json()["user"]["mfa_enabled"]
        me = await api.get("/v1/me",
                           headers={"Authorization": f"Bearer {done.json()['access_token']}"})
        assert me.status_code == 200
        assert (await api.post("/v1/auth/refresh", json={
            "refresh_token": done.json()["refresh_token"]})).status_code == 200
        envelope(await api.post("/v1/auth/mfa/challenge",  # single use
                                json={"mfa_token": token, "code": totp.now()}), 401)


async def test_telegram_sign_in_asks_for_the_second_factor(settings: Settings) -> None:
    async with local_api(settings) as api:
        telegram_id = int(uuid.uuid4().int % 10**9)
        first = await api.post("/v1/auth/telegram", json=widget(telegram_id))
        assert first.status_code == 200, first.text
        totp = await _mfa_on(api, first.json()["access_token"])
        token = envelope(await api.post("/v1/auth/telegram", json=widget(telegram_id)), 401,
                         "mfa_required")["details"]["mfa_token"]
        wrong = next(f"{n:06d}" for n in range(1000)
                     if f"{n:06d}" not in {totp.at(time.time() + 30 * s) for s in (-1, 0, 1)})
        for _ in range(5):
            envelope(await api.post("/v1/auth/mfa/challenge",
                                    json={"mfa_token": token, "code": wrong}), 422)
        # the failures count like /mfa/disable's: past the limit, even a right code waits
        envelope(await api.post("/v1/auth/mfa/challenge", json={
            "mfa_token": token, "code": totp.at(time.time() + 30)}), 429, "rate_limited")


async def test_the_state_is_bound_to_the_browser_that_started_it(
        settings: Settings, fake_google: FakeGoogle) -> None:
    async with local_app(settings) as app, app.client() as victim, app.client() as attacker:
        new_person(fake_google)
        code, state = await consent(attacker)
        # the attacker's state and code, planted in the victim's browser (login CSRF)
        envelope(await victim.post("/v1/auth/oauth/google/callback",
                                   json={"code": code, "state": state}), 401)
        code, state = await consent(attacker)
        envelope(await victim.post("/v1/auth/oauth/google/callback",
                                   json={"code": code, "state": state},
                                   headers={"Cookie": f"bidi_oauth_binding={'x' * 43}"}), 401)
        ok = await google(victim)
        assert ok.status_code == 200, ok.text


async def test_the_binding_cookie(settings: Settings) -> None:
    for public_url, secure in ((None, False), ("https://crm.example.com", True)):
        async with local_api(settings, public_url=public_url) as api:
            start = await api.get("/v1/auth/oauth/google/start")
            cookie = start.headers["set-cookie"].lower()
            assert cookie.startswith("bidi_oauth_binding=")
            assert "httponly" in cookie and "samesite=lax" in cookie
            assert "path=/v1/auth/oauth/google" in cookie
            assert ("secure" in cookie) is secure
            if secure:
                continue  # the client speaks plain http: it keeps a Secure cookie to itself
            # a second start keeps the browser's binding: two tabs may sign in at once
            first = start.cookies["bidi_oauth_binding"]
            again = await api.get("/v1/auth/oauth/google/start")
            assert again.cookies["bidi_oauth_binding"] == first


async def test_telegram_login_data_is_short_lived(settings: Settings) -> None:
    async with local_api(settings) as api:
        telegram_id = int(uuid.uuid4().int % 10**9)
        now = int(time.time())
        envelope(await api.post("/v1/auth/telegram",
                                json=widget(telegram_id, auth_date=now - 700)), 422)
        envelope(await api.post("/v1/auth/telegram",
                                json=widget(telegram_id, auth_date=now + 120)), 422)
        assert (await api.post("/v1/auth/telegram", json=widget(
            telegram_id, auth_date=now - 300))).status_code == 200
        assert (await api.post("/v1/auth/telegram", json=widget(
            telegram_id, auth_date=now + 30))).status_code == 200
    async with local_api(settings, telegram_login_max_age=60) as api:
        envelope(await api.post("/v1/auth/telegram",
                                json=widget(telegram_id, auth_date=now - 300)), 422)

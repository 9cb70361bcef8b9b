"""Sign-in throttling: whose address a request has, login attempts counted
before the password check, token buckets on the unauthenticated sign-in
routes and /mfa/*, and bounded second-factor guessing."""
from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from ipaddress import ip_network

import httpx
import pyotp

from core.settings import Settings
from serve.auth import forwarded_ip
from storage.db import Database
from tests.conftest import Account, register
from tests.serve.local_app import fresh_ip, local_api, local_app
from tests.serve.mfa import mfa_on
from tests.serve.test_auth import envelope
from tests.waiting import eventually

PROXIES = (ip_network("10.0.0.0/8"), ip_network("::1/128"), ip_network("2001:db8:f::/48"))


def test_forwarded_for_counts_only_from_trusted_proxies() -> None:
    assert forwarded_ip("1.2.3.4", "203.0.113.9") == "203.0.113.9"  # nothing trusted
    assert forwarded_ip("1.2.3.4", "203.0.113.9", PROXIES) == "203.0.113.9"  # untrusted peer
    assert forwarded_ip("1.2.3.4", "10.0.0.1", PROXIES) == "1.2.3.4"
    assert forwarded_ip(None, "10.0.0.1", PROXIES) == "10.0.0.1"
    # from the right: trusted hops are skipped, the first other address is the client,
    # whatever the client wrote to the left of it
    assert forwarded_ip("6.6.6.6, 1.2.3.4, 10.0.0.2", "10.0.0.1", PROXIES) == "1.2.3.4"
    assert forwarded_ip("10.0.0.3,10.0.0.2", "10.0.0.1", PROXIES) == "10.0.0.3"
    # an entry that is not an address ends the walk at the last trusted hop
    assert forwarded_ip("1.2.3.4, not-an-ip, 10.0.0.2", "10.0.0.1", PROXIES) == "10.0.0.2"
    assert forwarded_ip("not-an-ip", "10.0.0.1", PROXIES) == "10.0.0.1"
    assert forwarded_ip("1.2.3.4,,10.0.0.2", "10.0.0.1", PROXIES) == "10.0.0.2"
    assert forwarded_ip("1.2.3.4:5678", "10.0.0.1", PROXIES) == "10.0.0.1"
    # IPv6, normalised; a dual-stack socket's IPv4-mapped peer is its IPv4 address
    assert forwarded_ip("2400:CB00:0::1", "::1", PROXIES) == "2400:cb00::1"
    assert forwarded_ip("2400:cb00::1, 2001:db8:f::7", "::1", PROXIES) == "2400:cb00::1"
    assert forwarded_ip("1.2.3.4", "::ffff:10.0.0.1", PROXIES) == "1.2.3.4"
    assert forwarded_ip(None, "::FFFF:203.0.113.9") == "203.0.113.9"
    # never anything but an address or None
    assert forwarded_ip("1.2.3.4", None, PROXIES) is None
    assert forwarded_ip("1.2.3.4", "testclient", PROXIES) is None


async def _fail(api: httpx.AsyncClient, **headers: str) -> httpx.Response:
    email = f"ghost{uuid.uuid4().hex[:10]}@example.com"  # a fresh account each time
    return await api.post("/v1/auth/login", json={"email": email, "password": "wrong"},
                          headers=headers)


async def test_spoofed_forwarded_for_gets_no_fresh_login_budget(settings: Settings) -> None:
    async with local_api(settings, login_failures_per_ip=3) as api:
        for _ in range(3):
            envelope(await _fail(api), 401)
        envelope(await _fail(api), 429, "rate_limited")
        envelope(await _fail(api, **{"X-Forwarded-For": "1.2.3.4"}), 429, "rate_limited")
    # the same header from a trusted proxy names the client
    proxy = f"2001:db8:f::{uuid.uuid4().hex[:4]}"  # a trusted hop no other run has used
    async with local_api(settings, peer=proxy, login_failures_per_ip=3,
                         trusted_proxies=PROXIES) as api:
        for _ in range(3):
            envelope(await _fail(api), 401)
        envelope(await _fail(api), 429)
        envelope(await _fail(api, **{"X-Forwarded-For": fresh_ip()}), 401)


async def test_a_mutation_with_a_garbage_forwarded_for(api: httpx.AsyncClient, owner: Account,
                                                       settings: Settings,
                                                       db: Database) -> None:
    garbage = {**owner.headers, "X-Forwarded-For": "not-an-ip"}
    created = await api.post("/v1/contacts", json={"first_name": "Ada"}, headers=garbage)
    assert created.status_code == 201, created.text
    proxy = "10.1.2.3"
    async with local_api(settings, peer=proxy, trusted_proxies=PROXIES) as local:
        again = await local.post("/v1/contacts", json={"first_name": "Grace"},
                                 headers={**garbage, "X-Forwarded-For": "1.2.3.4, not-an-ip"})
        assert again.status_code == 201, again.text
    async with db.system_tx() as conn:
        ip = await conn.fetchval(
            "SELECT host(ip_address) FROM audit_logs WHERE resource_id = $1",
            uuid.UUID(again.json()["id"]))
    assert ip == proxy


async def test_parallel_wrong_passwords_are_counted_before_the_check(
        api: httpx.AsyncClient, owner: Account) -> None:
    wrong = {"email": owner.email, "password": "wrong password"}
    answers = await asyncio.gather(*(api.post("/v1/auth/login", json=wrong)
                                     for _ in range(20)))
    statuses = Counter(r.status_code for r in answers)
    assert set(statuses) <= {401, 429} and statuses[401] <= 5, statuses
    assert statuses[429] >= 15
    blocked = await api.post("/v1/auth/login", json={"email": owner.email,
                                                     "password": owner.password})
    envelope(blocked, 429, "rate_limited")
    assert 0 < int(blocked.headers["retry-after"]) <= 900


async def test_the_account_opens_again_when_its_window_ends(settings: Settings) -> None:
    async with local_api(settings, login_window_seconds=2) as api:
        account = await register(api)
        wrong = {"email": account.email, "password": "wrong password"}
        for _ in range(5):
            envelope(await api.post("/v1/auth/login", json=wrong), 401)
        right = {"email": account.email, "password": account.password}
        envelope(await api.post("/v1/auth/login", json=right), 429)

        async def signs_in() -> bool:  # refused attempts do not stretch the window
            resp = await api.post("/v1/auth/login", json=right)
            assert resp.status_code in (200, 429), resp.text
            return resp.status_code == 200

        await eventually(signs_in, timeout=10, what="sign-in after the window")


async def test_a_right_password_gives_its_ip_attempt_back(settings: Settings) -> None:
    async with local_api(settings, login_failures_per_ip=2) as api:
        account = await register(api)
        envelope(await _fail(api), 401)
        right = {"email": account.email, "password": account.password}
        for _ in range(3):
            assert (await api.post("/v1/auth/login", json=right)).status_code == 200
        envelope(await _fail(api), 401)
        envelope(await _fail(api), 429)


LOW = {"auth_burst": 3, "auth_rate_per_minute": 1, "register_burst": 2,
       "register_rate_per_minute": 1}


def _limited(resp: httpx.Response) -> None:
    envelope(resp, 429, "rate_limited")
    assert int(resp.headers["retry-after"]) >= 1


def _signup() -> dict[str, str]:
    return {"email": f"s{uuid.uuid4().hex[:12]}@example.com", "password": "long enough pw",
            "name": "S", "organization_name": "S"}


async def test_sign_up_is_limited_per_ip(settings: Settings) -> None:
    async with local_app(settings, **LOW) as app, app.client() as one, app.client() as two:
        for _ in range(2):
            assert (await one.post("/v1/auth/register", json=_signup())).status_code == 201
        _limited(await one.post("/v1/auth/register", json=_signup()))
        assert (await two.post("/v1/auth/register", json=_signup())).status_code == 201


async def test_refresh_is_limited_per_ip_and_route(settings: Settings) -> None:
    async with local_app(settings, **LOW) as app, app.client() as one, app.client() as two:
        junk = {"refresh_token": "nonsense"}
        for _ in range(3):
            envelope(await one.post("/v1/auth/refresh", json=junk), 401)
        _limited(await one.post("/v1/auth/refresh", json=junk))
        envelope(await two.post("/v1/auth/refresh", json=junk), 401)  # another address
        envelope(await one.post("/v1/auth/telegram", json={}), 422)  # another route


async def test_google_and_telegram_sign_in_are_limited_per_ip(settings: Settings) -> None:
    async with local_api(settings, **LOW) as api:
        callback = {"code": "4/0Aforged", "state": "forged"}
        for _ in range(3):
            envelope(await api.post("/v1/auth/oauth/google/callback", json=callback), 401)
        _limited(await api.post("/v1/auth/oauth/google/callback", json=callback))
        widget = {"id": 1, "auth_date": int(time.time()), "hash": "0" * 64}
        for _ in range(3):
            envelope(await api.post("/v1/auth/telegram", json=widget), 401)
        _limited(await api.post("/v1/auth/telegram", json=widget))
        challenge = {"mfa_token": "forged", "code": "123456"}
        for _ in range(3):
            envelope(await api.post("/v1/auth/mfa/challenge", json=challenge), 401)
        _limited(await api.post("/v1/auth/mfa/challenge", json=challenge))


async def test_mfa_routes_are_limited_per_user(settings: Settings) -> None:
    async with local_app(settings, **LOW) as app, app.client() as api:
        first, second = await register(api), await register(api)
        for _ in range(3):
            assert (await api.post("/v1/auth/mfa/enroll",
                                   headers=first.headers)).status_code == 200
        _limited(await api.post("/v1/auth/mfa/enroll", headers=first.headers))
        assert (await api.post("/v1/auth/mfa/enroll", headers=second.headers)).status_code == 200


def _wrong(totp: pyotp.TOTP) -> str:
    right = {totp.at(time.time() + 30 * step) for step in (-1, 0, 1)}
    return next(c for c in (f"{n:06d}" for n in range(1000)) if c not in right)


async def test_disable_bounds_totp_guessing(api: httpx.AsyncClient, owner: Account) -> None:
    totp = await mfa_on(api, owner)
    for _ in range(5):
        envelope(await api.post("/v1/auth/mfa/disable", json={"code": _wrong(totp)},
                                headers=owner.headers), 422)
    right = totp.at(time.time() + 30)
    _limited(await api.post("/v1/auth/mfa/disable", json={"code": right},
                            headers=owner.headers))


async def test_a_right_code_clears_the_count(api: httpx.AsyncClient, owner: Account) -> None:
    totp = await mfa_on(api, owner)
    for _ in range(4):
        envelope(await api.post("/v1/auth/mfa/disable", json={"code": _wrong(totp)},
                                headers=owner.headers), 422)
    off = await api.post("/v1/auth/mfa/disable", json={"code": totp.at(time.time() + 30)},
                         headers=owner.headers)
    assert off.status_code == 204, off.text
    enrolled = await api.post("/v1/auth/mfa/enroll", headers=owner.headers)
    totp = pyotp.TOTP(enrolled.json()["secret"])
    for _ in range(4):  # a fresh count: four more wrong codes, then the right one
        envelope(await api.post("/v1/auth/mfa/verify", json={"code": _wrong(totp)},
                                headers=owner.headers), 422)
    on = await api.post("/v1/auth/mfa/verify", json={"code": totp.now()},
                        headers=owner.headers)
    assert on.status_code == 200, on.text


async def test_verify_bounds_totp_guessing(api: httpx.AsyncClient, owner: Account) -> None:
    enrolled = await api.post("/v1/auth/mfa/enroll", headers=owner.headers)
    totp = pyotp.TOTP(enrolled.json()["secret"])
    for _ in range(5):
        envelope(await api.post("/v1/auth/mfa/verify", json={"code": _wrong(totp)},
                                headers=owner.headers), 422)
    _limited(await api.post("/v1/auth/mfa/verify", json={"code": totp.now()},
                            headers=owner.headers))

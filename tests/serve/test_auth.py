"""Sign-up, sign-in, tokens and their attacks, over real HTTP through Serve."""
from __future__ import annotations

import base64
import json
import time
import warnings

import httpx
import jwt
import pyotp

from core.security import issue_access_token
from core.settings import Settings
from tests.conftest import Account, register


def envelope(resp: httpx.Response, status: int, code: str | None = None) -> dict:  # type: ignore[type-arg]
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert set(error) == {"code", "message", "details"}
    if code is not None:
        assert error["code"] == code, error
    return error  # type: ignore[no-any-return]


async def test_register_returns_tokens_and_me_works(api: httpx.AsyncClient) -> None:
    account = await register(api, "Globex")
    me = await api.get("/v1/me", headers=account.headers)
    assert me.status_code == 200, me.text
    body = me.json()
    assert body["user"]["email"] == account.email
    assert body["organization"] == {"id": account.org_id, "name": "Globex",
                                    "slug": body["organization"]["slug"], "role": "owner"}
    assert [m["id"] for m in body["memberships"]] == [account.org_id]


async def test_register_rejects_bad_input(api: httpx.AsyncClient, owner: Account) -> None:
    base = {"email": "x@example.com", "password": "long enough pw", "name": "X",
            "organization_name": "X"}
    envelope(await api.post("/v1/auth/register", json={**base, "email": owner.email.upper()}),
             409, "conflict")
    envelope(await api.post("/v1/auth/register", json={**base, "password": "short"}), 422)
    envelope(await api.post("/v1/auth/register", json={**base, "surprise": 1}), 422)
    envelope(await api.post("/v1/auth/register", json={**base, "name": "n" * 300}), 422)
    envelope(await api.post("/v1/auth/register", content=b"{not json",
                            headers={"content-type": "application/json"}), 400, "malformed_json")


async def test_login_and_wrong_password(api: httpx.AsyncClient, owner: Account) -> None:
    ok = await api.post("/v1/auth/login", json={"email": owner.email,
                                                "password": owner.password})
    assert ok.status_code == 200
    assert ok.json()["organization"]["id"] == owner.org_id
    envelope(await api.post("/v1/auth/login", json={"email": owner.email, "password": "nope"}),
             401, "unauthorized")
    envelope(await api.post("/v1/auth/login", json={"email": "ghost@example.com",
                                                     "password": "nope"}), 401)


async def test_login_is_throttled_per_account(api: httpx.AsyncClient, owner: Account) -> None:
    for _ in range(5):
        envelope(await api.post("/v1/auth/login",
                                json={"email": owner.email, "password": "wrong"}), 401)
    blocked = await api.post("/v1/auth/login", json={"email": owner.email,
                                                     "password": owner.password})
    envelope(blocked, 429, "rate_limited")
    assert int(blocked.headers["retry-after"]) > 0


def _forge(claims: dict, key: str = "a-wrong-key-that-is-long-enough-0123456789",  # type: ignore[type-arg]
           alg: str = "HS256") -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # short keys are the point of some attacks
        return jwt.encode(claims, key, algorithm=alg)


def _b64(data: dict) -> str:  # type: ignore[type-arg]
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def test_jwt_attacks_are_refused(api: httpx.AsyncClient, owner: Account,
                                       settings: Settings) -> None:
    secret = settings.jwt_secret.get_secret_value()
    now = int(time.time())
    good = {"sub": owner.user_id, "org": owner.org_id, "role": "owner", "typ": "access",
            "aud": "bidi-api", "iss": "bidi", "iat": now, "exp": now + 600}
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(good)}."
    header, payload, signature = owner.access.split(".")
    tampered_claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    tampered_claims["role"] = "owner"
    tampered_claims["org"] = "00000000-0000-0000-0000-000000000001"
    tampered = f"{header}.{_b64(tampered_claims)}.{signature}"
    attacks = {
        "alg none": unsigned,
        "wrong key": _forge(good),
        "wrong aud": _forge({**good, "aud": "someone-else"}, secret),
        "expired": issue_access_token(secret, owner.user_id, owner.org_id, "owner",
                                      ttl=60, now=now - 3600),
        "tampered claims": tampered,
        "refresh type": _forge({**good, "typ": "refresh"}, secret),
        "HS512": _forge(good, secret, "HS512"),
        "garbage": "not.a.jwt",
    }
    for name, token in attacks.items():
        resp = await api.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert resp.status_code == 401, f"{name}: {resp.status_code} {resp.text}"
        assert resp.json()["error"]["code"] == "unauthorized"
    assert (await api.get("/v1/me", headers=owner.headers)).status_code == 200
    envelope(await api.get("/v1/me"), 401)


async def test_refresh_rotates_and_reuse_revokes_the_family(api: httpx.AsyncClient,
                                                             owner: Account) -> None:
    first = await api.post("/v1/auth/refresh", json={"refresh_token": owner.refresh})
    assert first.status_code == 200, first.text
    second_token = first.json()["refresh_token"]
    assert second_token != owner.refresh
    second = await api.post("/v1/auth/refresh", json={"refresh_token": second_token})
    assert second.status_code == 200
    third_token = second.json()["refresh_token"]
    # the first token again: a thief's replay. The whole family dies.
    envelope(await api.post("/v1/auth/refresh", json={"refresh_token": owner.refresh}), 401)
    envelope(await api.post("/v1/auth/refresh", json={"refresh_token": third_token}), 401)
    envelope(await api.post("/v1/auth/refresh", json={"refresh_token": "nonsense"}), 401)


async def test_logout_revokes_the_refresh_token(api: httpx.AsyncClient, owner: Account) -> None:
    resp = await api.post("/v1/auth/logout", json={"refresh_token": owner.refresh},
                          headers=owner.headers)
    assert resp.status_code == 204
    envelope(await api.post("/v1/auth/refresh", json={"refresh_token": owner.refresh}), 401)


async def test_totp_enroll_verify_replay_and_recovery(api: httpx.AsyncClient,
                                                       owner: Account) -> None:
    enrolled = await api.post("/v1/auth/mfa/enroll", headers=owner.headers)
    assert enrolled.status_code == 200, enrolled.text
    totp = pyotp.TOTP(enrolled.json()["secret"])
    code = totp.now()
    verified = await api.post("/v1/auth/mfa/verify", json={"code": code}, headers=owner.headers)
    assert verified.status_code == 200, verified.text
    recovery = verified.json()["recovery_codes"]
    assert len(recovery) == 10
    login = {"email": owner.email, "password": owner.password}
    envelope(await api.post("/v1/auth/login", json=login), 401)  # no code
    # the code that enabled MFA was consumed: the same code never works twice
    envelope(await api.post("/v1/auth/login", json={**login, "totp_code": code}), 401)
    next_code = totp.at(time.time() + 30)  # the next step, within the ±1 window
    ok = await api.post("/v1/auth/login", json={**login, "totp_code": next_code})
    assert ok.status_code == 200, ok.text
    envelope(await api.post("/v1/auth/login", json={**login, "totp_code": next_code}), 401)
    used = await api.post("/v1/auth/login", json={**login, "totp_code": recovery[0]})
    assert used.status_code == 200
    envelope(await api.post("/v1/auth/login", json={**login, "totp_code": recovery[0]}), 401)


async def test_switch_org_needs_membership(api: httpx.AsyncClient, owner: Account) -> None:
    other = await register(api, "Other")
    envelope(await api.post("/v1/auth/switch-org", json={"organization_id": other.org_id},
                            headers=owner.headers), 404)
    same = await api.post("/v1/auth/switch-org", json={"organization_id": owner.org_id},
                          headers=owner.headers)
    assert same.status_code == 200 and same.json()["organization"]["role"] == "owner"

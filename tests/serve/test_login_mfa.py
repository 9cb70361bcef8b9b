"""Sign-in with a second factor on: the right password without a code asks
for one (`mfa_required`), a wrong code or password stays the generic 401, and
every such attempt counts against the account's sign-in throttle."""
from __future__ import annotations

import time

import httpx

from core.settings import Settings
from tests.conftest import Account
from tests.serve.mfa import mfa_on
from tests.serve.test_auth import envelope


async def test_the_right_password_without_a_code_asks_for_it(api: httpx.AsyncClient,
                                                              owner: Account) -> None:
    # Before MFA is on, a password alone signs in.
    login = {"email": owner.email, "password": owner.password}
    assert (await api.post("/v1/auth/login", json=login)).status_code == 200
    totp = await mfa_on(api, owner)
    asked = envelope(await api.post("/v1/auth/login", json=login), 401, "mfa_required")
    assert asked["message"] == "enter the code from your authenticator app"
    envelope(await api.post("/v1/auth/login", json={**login, "totp_code": ""}), 401,
             "mfa_required")
    # A wrong code says nothing more.
    envelope(await api.post("/v1/auth/login", json={**login, "totp_code": "000000"}), 401,
             "unauthorized")
    # The code the form then asks for signs in (and gives the attempts back).
    code = totp.at(time.time() + 30)  # the step after the one that turned MFA on
    signed = await api.post("/v1/auth/login", json={**login, "totp_code": code})
    assert signed.status_code == 200, signed.text
    assert signed.json()["user"]["mfa_enabled"] is True
    # A wrong password, with or without a code, never tells of the second factor.
    wrong = {"email": owner.email, "password": "not the password"}
    envelope(await api.post("/v1/auth/login", json=wrong), 401, "unauthorized")
    envelope(await api.post("/v1/auth/login", json={**wrong, "totp_code": totp.now()}), 401,
             "unauthorized")

async def test_asking_for_the_code_counts_against_the_throttle(
        api: httpx.AsyncClient, owner: Account, settings: Settings) -> None:
    totp = await mfa_on(api, owner)
    login = {"email": owner.email, "password": owner.password}
    for _ in range(settings.login_failures_per_account):
        envelope(await api.post("/v1/auth/login", json=login), 401, "mfa_required")
    # Out of attempts: even the right code is refused until the window ends.
    blocked = await api.post("/v1/auth/login",
                             json={**login, "totp_code": totp.at(time.time() + 30)})
    envelope(blocked, 429, "rate_limited")

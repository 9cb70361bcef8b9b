"""A second factor turned on for an account, as a person does it: enroll,
then verify with the authenticator's current code."""
from __future__ import annotations

import httpx
import pyotp

from tests.conftest import Account


async def mfa_on(api: httpx.AsyncClient, account: Account) -> pyotp.TOTP:
    enrolled = await api.post("/v1/auth/mfa/enroll", headers=account.headers)
    assert enrolled.status_code == 200, enrolled.text
    totp = pyotp.TOTP(enrolled.json()["secret"])
    verified = await api.post("/v1/auth/mfa/verify", json={"code": totp.now()},
                              headers=account.headers)
    assert verified.status_code == 200, verified.text
    return totp

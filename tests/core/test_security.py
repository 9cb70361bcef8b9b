"""Access-token verification with its cache of verified tokens: a cached
token is still refused once expired or under another secret."""
from __future__ import annotations

import uuid

import pytest

from core import security
from core.errors import Unauthorized
from core.security import decode_access_token, issue_access_token
from tests.waiting import eventually

SECRET = "s" * 32
USER, ORG = str(uuid.uuid4()), str(uuid.uuid4())


def _refusal(secret: str, token: str) -> str | None:
    try:
        decode_access_token(secret, token)
    except Unauthorized as exc:
        return exc.message
    return None


def test_a_verified_token_is_remembered_and_still_checked() -> None:
    token = issue_access_token(SECRET, USER, ORG, "admin")
    first = decode_access_token(SECRET, token)
    assert (SECRET, token) in security._VERIFIED
    assert decode_access_token(SECRET, token) == first
    assert (first.user_id, first.org_id, first.role) == (USER, ORG, "admin")
    # the same text under another secret is verified afresh, and fails
    assert _refusal("t" * 32, token) == "invalid access token"


async def test_a_remembered_token_expires_on_time() -> None:
    token = issue_access_token(SECRET, USER, ORG, "bidi", ttl=1)
    assert decode_access_token(SECRET, token).role == "bidi"
    message = await eventually(lambda: _refusal(SECRET, token), timeout=5,
                               what="the cached token expiring")
    assert message == "access token expired"


def test_the_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(security, "VERIFIED_CACHE_SIZE", 3)
    monkeypatch.setattr(security, "_VERIFIED", {})
    tokens = [issue_access_token(SECRET, USER, ORG, "viewer") for _ in range(5)]  # jti differs
    for token in tokens:
        decode_access_token(SECRET, token)
    assert list(security._VERIFIED) == [(SECRET, t) for t in tokens[-3:]]

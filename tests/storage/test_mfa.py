"""storage.mfa called directly: enrolling, turning on with a code, replay,
guesses bounded by Redis attempts, turning off with a recovery code."""
from __future__ import annotations

import uuid

import pyotp
import pytest
import redis.asyncio as aioredis

from core.crypto import Cipher
from core.errors import Conflict, Invalid, RateLimited
from storage import identity, mfa
from storage.db import Database
from storage.ratelimit import Attempts
from tests.storage.accounts import events, sign_up

CIPHER = Cipher("storage tests")


class RedisGuesses:
    """storage.mfa.Guesses over the real attempt windows (as the API's)."""

    def __init__(self, redis: aioredis.Redis, limit: int) -> None:
        self.attempts = Attempts(redis, limit, 60)
        self.key = f"test:mfa:{uuid.uuid4().hex}"

    async def reserve(self) -> None:
        decision = await self.attempts.reserve(self.key)
        if not decision.allowed:
            raise RateLimited("too many wrong codes", retry_after=decision.retry_after)

    async def clear(self) -> None:
        await self.attempts.clear(self.key)


async def test_enable_then_disable(db: Database, redis: aioredis.Redis) -> None:
    owner = await sign_up(db)
    guesses = RedisGuesses(redis, 3)
    async with db.system_tx() as conn:
        with pytest.raises(Conflict, match="enroll first"):
            await mfa.enable(conn, owner.actor, owner.user_id, "123456", CIPHER, guesses)
        enrollment = await mfa.enroll(conn, owner.user_id, CIPHER)
    assert owner.email in enrollment.otpauth_url.replace("%40", "@")
    code = pyotp.TOTP(enrollment.secret).now()
    async with db.system_tx() as conn:
        recovery = await mfa.enable(conn, owner.actor, owner.user_id, code, CIPHER, guesses)
    assert len(recovery) == mfa.RECOVERY_CODES
    async with db.system_tx() as conn:
        user = await identity.user_by_id(conn, owner.user_id, factors=True)
        assert user is not None and user["mfa_enabled"]
        assert not await mfa.check(conn, user, code, CIPHER)  # never twice
        with pytest.raises(Conflict, match="already on"):
            await mfa.enroll(conn, owner.user_id, CIPHER)
    async with db.system_tx() as conn:
        await mfa.disable(conn, owner.actor, owner.user_id, recovery[0], CIPHER, guesses)
        user = await identity.user_by_id(conn, owner.user_id, factors=True)
    assert user is not None
    assert (user["mfa_enabled"], user["mfa_secret"], user["mfa_recovery_codes"]) == \
        (False, None, [])
    assert [e["event_type"] for e in await events(db, owner.org_id, owner.user_id)] == \
        ["user.mfa.enabled", "user.mfa.disabled"]


async def test_wrong_codes_are_bounded(db: Database, redis: aioredis.Redis) -> None:
    owner = await sign_up(db)
    guesses = RedisGuesses(redis, 2)
    async with db.system_tx() as conn:
        enrollment = await mfa.enroll(conn, owner.user_id, CIPHER)
    for _ in range(2):
        with pytest.raises(Invalid, match="wrong or already used code"):
            async with db.system_tx() as conn:
                await mfa.enable(conn, owner.actor, owner.user_id, "000000x", CIPHER, guesses)
    with pytest.raises(RateLimited):  # even the right code, past the window's limit
        async with db.system_tx() as conn:
            await mfa.enable(conn, owner.actor, owner.user_id,
                             pyotp.TOTP(enrollment.secret).now(), CIPHER, guesses)

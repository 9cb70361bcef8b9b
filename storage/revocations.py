"""Revoked sessions. Access tokens are verified without a database read, so
when a member is removed or demoted their tokens would live on until they
expire. Instead the change is announced: `revoke_sessions()` records the
moment in Redis and publishes it, and every API replica's `Revocations`
refuses that member's tokens issued before it and closes their WebSockets
— within a pub/sub hop, with no per-request I/O.

The record (`bidi:revoked`, a hash of `org:user` -> time) outlives a replica
restart or a lost pub/sub connection: a replica reloads it on start and after
every reconnect. Entries older than an access token's lifetime say nothing
any more and are pruned."""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from core.security import ACCESS_TTL
from storage.pubsub import Subscriber

log = logging.getLogger(__name__)

CHANNEL = "bidi:revocations"
RECORD = "bidi:revoked"
KEEP = ACCESS_TTL + 60  # seconds a revocation matters

Watcher = Callable[[float, str], None]  # called with the moment and the reason


async def revoke_sessions(redis: aioredis.Redis, org_id: str, user_id: str,
                          reason: str) -> float:
    """Every access token of `user_id` in `org_id` issued until now stops working."""
    at = time.time()
    member = f"{org_id}:{user_id}"
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(RECORD, member, repr(at))
        pipe.publish(CHANNEL, json.dumps({"member": member, "at": at, "reason": reason}))
        await pipe.execute()
    return at


class Revocations:
    """One replica's view of revoked sessions, kept current from pub/sub."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self._at: dict[str, float] = {}
        self._watchers: dict[str, set[Watcher]] = {}
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._wake: asyncio.Event | None = None  # the current line's `lost`
        self.ready = asyncio.Event()  # subscribed and loaded at least once

    async def __aenter__(self) -> Revocations:
        self._task = asyncio.create_task(self._listen(), name="revocations")
        return self

    async def __aexit__(self, *exc: object) -> None:
        # redis-py can swallow a cancellation (a command retried), so the
        # listener also stops on this flag and its wake-up.
        self._closing = True
        if self._wake is not None:
            self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    def revoked(self, org_id: str, user_id: str | None, issued_at: float) -> bool:
        at = self._at.get(f"{org_id}:{user_id}")
        return at is not None and issued_at <= at

    def watch(self, org_id: str, user_id: str, watcher: Watcher) -> Callable[[], None]:
        """Call `watcher` when this member's sessions are revoked; returns the unwatch."""
        member = f"{org_id}:{user_id}"
        self._watchers.setdefault(member, set()).add(watcher)

        def unwatch() -> None:
            group = self._watchers.get(member)
            if group is not None:
                group.discard(watcher)
                if not group:
                    del self._watchers[member]

        return unwatch

    async def _listen(self) -> None:
        delay = 0.1
        while not self._closing:
            try:
                await self._follow()
                delay = 0.1
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, TimeoutError) as exc:
                if self._closing:
                    return
                log.warning("revocations: Redis unreachable (%s); retrying in %.1f s",
                            exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _follow(self) -> None:
        """Subscribe, load the record, apply notices until the line is lost
        (then the caller reconnects and reloads: notices sent meanwhile are
        in the record)."""
        lost = self._wake = asyncio.Event()  # also set on the way out
        confirmed = asyncio.Event()

        def on_message(kind: str, channel: bytes, data: Any) -> None:
            if kind == "subscribe":
                confirmed.set()
            elif kind == "message":
                self._apply(data)

        sub = await Subscriber.open(self.redis, on_message, lambda exc: lost.set())
        try:
            await sub.subscribe(CHANNEL)
            async with asyncio.timeout(10):
                await confirmed.wait()
            await self._load()  # after subscribing: nothing falls in between
            self.ready.set()
            await lost.wait()
        finally:
            await sub.close()

    async def _load(self) -> None:
        stored = await self.redis.hgetall(RECORD)
        horizon = time.time() - KEEP
        stale = []
        for raw_member, raw_at in stored.items():
            member = raw_member.decode() if isinstance(raw_member, bytes) else raw_member
            at = float(raw_at)
            if at < horizon:
                stale.append(member)
            else:
                self._record(member, at, "revoked while this replica was away")
        if stale:
            await self.redis.hdel(RECORD, *stale)

    def _apply(self, data: Any) -> None:
        try:
            note = json.loads(data)
            self._record(str(note["member"]), float(note["at"]), str(note.get("reason", "")))
        except (ValueError, KeyError, TypeError):
            log.warning("revocations: ignored a malformed notice %r", data)

    def _record(self, member: str, at: float, reason: str) -> None:
        if at <= self._at.get(member, 0.0):
            return
        if len(self._at) >= 10_000:
            horizon = time.time() - KEEP
            self._at = {m: t for m, t in self._at.items() if t >= horizon}
        self._at[member] = at
        for watcher in list(self._watchers.get(member, ())):
            try:
                watcher(at, reason)
            except Exception:  # one broken watcher must not stop the others
                log.exception("revocations: a watcher failed")

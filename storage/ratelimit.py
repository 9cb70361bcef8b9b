"""Rate limiting in Redis: a token bucket per key (one Lua call, atomic) and
fixed-window attempt counters (sign-in and second-factor throttling)."""
from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, RedisError

_BUCKET = """
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(b[1]) or capacity
local ts = tonumber(b[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - ts) * rate)
local allowed = 0
local retry = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  retry = (cost - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity / rate * 1000) + 1000)
return {allowed, tostring(retry)}
"""


# INCR and the window's expiry in one step: a key left without a TTL would
# count forever.
_RESERVE = """
local count = redis.call('INCR', KEYS[1])
local ttl = redis.call('TTL', KEYS[1])
if ttl < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}
"""

# Never below zero, and never on an expired key (DECR would create it, TTL-less).
_GIVE_BACK = """
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
if count > 0 then
  return redis.call('DECR', KEYS[1])
end
return 0
"""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after: float


class TokenBucket:
    """Takes from many buckets at once: every `take` made in one turn of the
    event loop goes to Redis in one pipeline (one round trip, one connection
    checkout), which under load costs a fraction of a call each."""

    def __init__(self, redis: aioredis.Redis, capacity: float, per_second: float) -> None:
        self.redis = redis
        self.capacity = capacity
        self.per_second = per_second
        self._sha = hashlib.sha1(_BUCKET.encode()).hexdigest()
        self._pending: list[tuple[str, float, asyncio.Future[Decision]]] = []
        self._flushes: set[asyncio.Task[None]] = set()

    async def take(self, key: str, cost: float = 1.0) -> Decision:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Decision] = loop.create_future()
        self._pending.append((key, cost, future))
        if len(self._pending) == 1:
            loop.call_soon(self._start_flush)
        return await future

    def _start_flush(self) -> None:
        batch, self._pending = self._pending, []
        task = asyncio.get_running_loop().create_task(self._flush(batch))
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _flush(self, batch: list[tuple[str, float, asyncio.Future[Decision]]]) -> None:
        try:
            replies = await self._run(batch)
            if any(isinstance(r, NoScriptError) for r in replies):  # Redis restarted
                await self.redis.script_load(_BUCKET)
                replies = await self._run(batch)
        except (RedisError, OSError) as exc:
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, _, future), reply in zip(batch, replies, strict=True):
            if future.done():  # the caller went away
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                allowed, retry = reply
                future.set_result(Decision(bool(int(allowed)), float(retry)))

    async def _run(self, batch: list[tuple[str, float, asyncio.Future[Decision]]]) -> list[Any]:
        now = time.time()
        async with self.redis.pipeline(transaction=False) as pipe:
            for key, cost, _ in batch:
                pipe.execute_command("EVALSHA", self._sha, 1, key, self.capacity,
                                     self.per_second, now, cost)
            return await pipe.execute(raise_on_error=False)


class Attempts:
    """At most `limit` attempts per key in a fixed window that starts at the
    first one. An attempt is reserved before the work it guards (a password or
    code check), so a burst of parallel guesses cannot all pass a count read
    before any of them is recorded; a caller that turns out to be right gives
    its reservation back, or clears the key."""

    def __init__(self, redis: aioredis.Redis, limit: int, window: int) -> None:
        self.redis = redis
        self.limit = limit
        self.window = window
        self._reserve = redis.register_script(_RESERVE)
        self._give_back = redis.register_script(_GIVE_BACK)

    async def reserve(self, key: str) -> Decision:
        count, ttl = await self._reserve(keys=[key], args=[self.window])
        allowed = int(count) <= self.limit
        return Decision(allowed, 0.0 if allowed else float(max(int(ttl), 1)))

    async def give_back(self, key: str) -> None:
        await self._give_back(keys=[key])

    async def clear(self, key: str) -> None:
        await self.redis.delete(key)

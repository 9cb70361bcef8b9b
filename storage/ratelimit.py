"""Rate limiting in Redis: a token bucket per key (one Lua call, atomic) and
a fixed-window failure counter (login throttling)."""
from __future__ import annotations

import time
from dataclasses import dataclass

import redis.asyncio as aioredis

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


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after: float


class TokenBucket:
    def __init__(self, redis: aioredis.Redis, capacity: float, per_second: float) -> None:
        self.redis = redis
        self.capacity = capacity
        self.per_second = per_second
        self._script = redis.register_script(_BUCKET)

    async def take(self, key: str, cost: float = 1.0) -> Decision:
        allowed, retry = await self._script(
            keys=[key], args=[self.capacity, self.per_second, time.time(), cost])
        return Decision(bool(int(allowed)), float(retry))


async def count_failure(redis: aioredis.Redis, key: str, window: int) -> int:
    async with redis.pipeline(transaction=True) as pipe:
        pipe.set(key, 0, ex=window, nx=True)  # the window starts at the first failure
        pipe.incr(key)
        _, count = await pipe.execute()
    return int(count)


async def failures(redis: aioredis.Redis, key: str) -> tuple[int, int]:
    """(count, seconds until the window ends)."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.get(key)
        pipe.ttl(key)
        count, ttl = await pipe.execute()
    return int(count or 0), max(int(ttl), 1)

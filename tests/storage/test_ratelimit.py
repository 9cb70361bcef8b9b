"""The Redis token bucket, batched: takes made together share one pipeline
and still count exactly, per key."""
from __future__ import annotations

import asyncio
import uuid

import redis.asyncio as aioredis

from storage.ratelimit import TokenBucket


async def test_a_burst_gets_exactly_the_capacity(redis: aioredis.Redis) -> None:
    bucket = TokenBucket(redis, capacity=5, per_second=0.01)
    key, other = f"test:bucket:{uuid.uuid4()}", f"test:bucket:{uuid.uuid4()}"
    decisions = await asyncio.gather(*(bucket.take(key) for _ in range(12)),
                                     *(bucket.take(other) for _ in range(3)))
    mine, theirs = decisions[:12], decisions[12:]
    assert sum(d.allowed for d in mine) == 5
    assert all(d.allowed for d in theirs)  # another key, same pipeline, its own bucket
    refused = [d for d in mine if not d.allowed]
    assert all(90 <= d.retry_after <= 100 for d in refused)  # one token per 100 s
    assert all(d.retry_after == 0 for d in mine if d.allowed)


async def test_takes_survive_a_flushed_script_cache(redis: aioredis.Redis) -> None:
    bucket = TokenBucket(redis, capacity=2, per_second=0.01)
    key = f"test:bucket:{uuid.uuid4()}"
    assert (await bucket.take(key)).allowed
    await redis.script_flush()  # as after a Redis restart: EVALSHA answers NOSCRIPT
    first, second = await asyncio.gather(bucket.take(key), bucket.take(key))
    assert first.allowed and not second.allowed


async def test_a_cancelled_take_does_not_break_the_batch(redis: aioredis.Redis) -> None:
    bucket = TokenBucket(redis, capacity=3, per_second=0.01)
    key = f"test:bucket:{uuid.uuid4()}"
    gone = asyncio.ensure_future(bucket.take(key))
    kept = asyncio.ensure_future(bucket.take(key))
    # Runs after both takes have queued and before their batch is sent (the
    # loop runs callbacks in order): the caller goes away mid-batch.
    asyncio.get_running_loop().call_soon(gone.cancel)
    assert (await kept).allowed
    assert gone.cancelled()
    # the cancelled caller's token was still taken in Redis: 3 - 2 = 1 left
    assert [(await bucket.take(key)).allowed for _ in range(2)] == [True, False]

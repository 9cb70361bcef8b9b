"""Redis client factory; keys, pub/sub and streams helpers join it later."""
from __future__ import annotations

import redis.asyncio as aioredis


def open_redis(url: str) -> aioredis.Redis:
    return aioredis.Redis.from_url(url, decode_responses=False, health_check_interval=30)

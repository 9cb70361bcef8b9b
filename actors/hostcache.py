"""What a host keeps for a few seconds because many turns ask for it and it
rarely changes (an org's model keys, an integration's default agent): one
dict per name in the host's context, values with their expiry."""
from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")

MAX_ENTRIES = 10_000  # a cache this full is dropped whole (the next asks refill it)


async def cached(ctx: Any, name: str, key: Hashable, ttl: float,
                 load: Callable[[], Awaitable[T]]) -> T:
    """`load()`'s value for `key`, kept in this host's `name` cache for `ttl` seconds."""
    cache: dict[Hashable, tuple[float, T]] = ctx.loader(name, dict)
    now = time.monotonic()
    hit = cache.get(key)
    if hit is not None and hit[0] > now:
        return hit[1]
    value = await load()
    if len(cache) >= MAX_ENTRIES:
        cache.clear()
    cache[key] = (now + ttl, value)
    return value

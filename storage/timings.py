"""Each process's hop histograms (`core.timings`) in Redis, so that one
reader sees the whole engine: every process writes its snapshot under
`bidi:timings:{role}:{pid}` about once a second (expiring a minute after
its last write), and `collect()` merges what is there."""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from typing import Any

from core.timings import TIMINGS, Snapshot, Timings, merge

log = logging.getLogger(__name__)

PREFIX = "bidi:timings:"
TTL = 60
EVERY = 1.0


def key(role: str, pid: int | None = None) -> str:
    return f"{PREFIX}{role}:{pid if pid is not None else os.getpid()}"


async def push(redis: Any, role: str, timings: Timings = TIMINGS) -> None:
    await redis.set(key(role), json.dumps(timings.snapshot()), ex=TTL)


def _load(raw: bytes | str) -> dict[str, Snapshot]:
    data = json.loads(raw)
    return {hop: {"count": int(s["count"]), "sum": float(s["sum"]),
                  "buckets": {int(i): int(n) for i, n in s["buckets"].items()}}
            for hop, s in data.items()}


async def collect(redis: Any) -> dict[str, Snapshot]:
    """The merged histograms of every process that wrote in the last minute."""
    keys = [k async for k in redis.scan_iter(match=PREFIX + "*", count=1000)]
    values = await redis.mget(keys) if keys else []
    return merge(_load(v) for v in values if v)


async def pushing(redis: Any, role: str, timings: Timings = TIMINGS,
                  every: float = EVERY) -> None:
    """Push this process's snapshot every `every` seconds until cancelled
    (a failed push is retried at the next tick: timings are never worth a crash)."""
    while True:
        await asyncio.sleep(every)
        try:
            await push(redis, role, timings)
        except Exception as exc:
            log.debug("timings push failed: %s", exc)


@contextlib.asynccontextmanager
async def publishing(redis: Any, role: str, timings: Timings = TIMINGS) -> Any:
    """Run `pushing` for the duration of a block; one last push on the way out."""
    task = asyncio.create_task(pushing(redis, role, timings), name=f"timings {role}")
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        with contextlib.suppress(Exception):
            await push(redis, role, timings)

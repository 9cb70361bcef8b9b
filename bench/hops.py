"""The engine's hop histograms (core.timings) as bench/realtime.py reads
and prints them: every process's snapshot from Redis, the interval between
two, a table of p50 / p99 / mean per hop."""
from __future__ import annotations

import asyncio
import time
from typing import Any

from storage.timings import EVERY


async def _timings(redis_url: str) -> dict[str, Any]:
    from storage.redis import open_redis
    from storage.timings import collect

    client = open_redis(redis_url)
    try:
        return await collect(client)
    finally:
        await client.aclose()


def timings_now(redis_url: str) -> dict[str, Any]:
    """Every process's hop histograms, after their next push."""
    time.sleep(EVERY * 1.5)  # every process has pushed since
    return asyncio.run(_timings(redis_url))


def hop_table(before: dict[str, Any], after: dict[str, Any]) -> dict[str, dict[str, float]]:
    """p50 / p99 / mean in ms and the count of each hop between two snapshots."""
    from core.timings import HOPS, diff, mean, quantile

    table: dict[str, dict[str, float]] = {}
    for hop, snap in sorted(diff(after, before).items(),
                            key=lambda kv: HOPS.index(kv[0]) if kv[0] in HOPS else 99):
        if snap["count"] <= 0:
            continue
        table[hop] = {"p50_ms": (quantile(snap, 0.5) or 0) * 1000,
                      "p99_ms": (quantile(snap, 0.99) or 0) * 1000,
                      "mean_ms": (mean(snap) or 0) * 1000, "count": snap["count"]}
    return table


def print_hops(title: str, table: dict[str, dict[str, float]]) -> None:
    print(f"{title} (engine's own histograms; p50/p99 are bucket upper bounds, <=8% high):")
    for hop, row in table.items():
        print(f"  {hop:<13} p50 {row['p50_ms']:8.2f} ms  p99 {row['p99_ms']:8.2f} ms"
              f"  mean {row['mean_ms']:8.2f} ms  n={row['count']:,.0f}", flush=True)

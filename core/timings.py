"""Latency histograms of the engine's hops, kept by each process.

An inbound message crosses several processes (the API replica, an actor
host, Postgres, the event relay, a replica's hub) before it reaches a
WebSocket; each hop times itself into this process's `TIMINGS`
(`TIMINGS.observe("commit", seconds)`). A histogram has log-spaced buckets
(each 8% wider than the one before, from 1 µs), so observing costs a
logarithm and a dict increment, and histograms from many processes add up
bucket by bucket (`merge`), and two snapshots subtract (`diff`) to give
the hops of one interval. `storage.timings` publishes each process's
snapshot to Redis; `bench/realtime.py` and operators read them back.

The hops, in the order a message crosses them:

- `verify`: the replica checks the signature and parses the body;
- `actor_call`: the replica's whole wait for the chat actor's answer
  (everything from `queue` to `reply`);
- `queue`: the call waits in the replica for its batch to leave;
- `transport`: the batch travels to the host (Ray);
- `mailbox`: the message waits for its actor's earlier turns;
- `turn`: the actor's turn, its commit included;
- `commit_queue`: the turn's writes wait for a transaction;
- `commit`: the transaction that holds them, COMMIT included;
- `reply`: the batch's answer travels back (Ray);
- `handler`: the replica's whole handling of the request;
- `relay`: from the NOTIFY sent at COMMIT to the events published in Redis;
- `hub`: a replica's hub, from the event read off Redis to the last
  WebSocket frame written for it.

A polled channel's round (actors.poller), per `getUpdates`:

- `poll_fetch`: the provider's answer, parsed into a batch;
- `poll_deliver`: the batch handed to its chat actors, until committed;
- `poll_cursor`: the new position stored.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import TypedDict

HOPS = ("verify", "actor_call", "queue", "transport", "mailbox", "turn", "commit_queue",
        "commit", "reply", "handler", "relay", "hub", "poll_fetch", "poll_deliver",
        "poll_cursor")
GROWTH = 1.08
_LOG_GROWTH = math.log(GROWTH)
FLOOR = 1e-6  # seconds: the first bucket holds everything shorter


class Snapshot(TypedDict):
    count: int
    sum: float  # seconds
    buckets: dict[int, int]  # bucket index -> observations


def bucket_of(seconds: float) -> int:
    if seconds <= FLOOR:
        return 0
    return int(math.log(seconds / FLOOR) / _LOG_GROWTH) + 1


def bucket_upper(index: int) -> float:
    """The upper bound of bucket `index`, in seconds."""
    return FLOOR * GROWTH ** index


class Histogram:
    __slots__ = ("buckets", "count", "total")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.count = 0
        self.total = 0.0

    def observe(self, seconds: float, n: int = 1) -> None:
        """`n` observations of `seconds` (a batch that waited as one)."""
        index = bucket_of(seconds)
        self.buckets[index] = self.buckets.get(index, 0) + n
        self.count += n
        self.total += seconds * n

    def snapshot(self) -> Snapshot:
        return {"count": self.count, "sum": self.total, "buckets": dict(self.buckets)}


class Timings:
    """One process's histograms, by hop name."""

    def __init__(self) -> None:
        self.histograms: dict[str, Histogram] = {}

    def observe(self, hop: str, seconds: float, n: int = 1) -> None:
        histogram = self.histograms.get(hop)
        if histogram is None:
            histogram = self.histograms[hop] = Histogram()
        histogram.observe(seconds, n)

    def snapshot(self) -> dict[str, Snapshot]:
        return {hop: h.snapshot() for hop, h in self.histograms.items()}


TIMINGS = Timings()


def _empty() -> Snapshot:
    return {"count": 0, "sum": 0.0, "buckets": {}}


def merge(snapshots: Iterable[Mapping[str, Snapshot]]) -> dict[str, Snapshot]:
    """The sum of several processes' snapshots, hop by hop."""
    total: dict[str, Snapshot] = {}
    for snapshot in snapshots:
        for hop, part in snapshot.items():
            into = total.setdefault(hop, _empty())
            into["count"] += part["count"]
            into["sum"] += part["sum"]
            for index, n in part["buckets"].items():
                into["buckets"][int(index)] = into["buckets"].get(int(index), 0) + n
    return total


def diff(after: Mapping[str, Snapshot], before: Mapping[str, Snapshot]) -> dict[str, Snapshot]:
    """What was observed between two snapshots (of the same processes)."""
    out: dict[str, Snapshot] = {}
    for hop, now in after.items():
        then = before.get(hop, _empty())
        buckets = {int(i): n - then["buckets"].get(int(i), 0) for i, n in now["buckets"].items()}
        out[hop] = {"count": now["count"] - then["count"], "sum": now["sum"] - then["sum"],
                    "buckets": {i: n for i, n in buckets.items() if n > 0}}
    return out


def quantile(snapshot: Snapshot, q: float) -> float | None:
    """The `q` quantile in seconds (the upper bound of the bucket it falls
    in: at most 8% high), or None when nothing was observed."""
    if snapshot["count"] <= 0:
        return None
    rank = max(1, math.ceil(q * snapshot["count"]))
    seen = 0
    for index in sorted(snapshot["buckets"]):
        seen += snapshot["buckets"][index]
        if seen >= rank:
            return bucket_upper(index)
    return bucket_upper(max(snapshot["buckets"]))


def mean(snapshot: Snapshot) -> float | None:
    return snapshot["sum"] / snapshot["count"] if snapshot["count"] > 0 else None

"""Python's garbage collector, set for the engine's long-lived processes
(the API replicas, the actor hosts, the event relay).

A request or a turn allocates thousands of short-lived objects; at the
default threshold (700) the young generation was collected several times
per request, and the objects that outlive one collection (futures, tasks,
buffers waiting on a commit) kept triggering full passes: a host long
polling Telegram ran a full collection every 0.6 s, 55-75 ms each,
freeing nothing (gc.callbacks, bench/telegram.py). Everything loaded at
start-up lives as long as the process, so it is frozen out of those
passes, and the generations are collected less often."""
from __future__ import annotations

import gc

# bench/api.py, one run each: API CPU per contact list 0.378 -> 0.358 ms.
THRESHOLDS = (20_000, 20, 100)


def settle() -> None:
    """Once start-up is done: keep what exists now out of the collector's
    passes and collect the generations less often."""
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)

"""Rendezvous (highest random weight) hashing of `(kind, key)` over hosts:
every caller computes the same owner with no shared table, and changing the
host count moves only the keys of the hosts that changed."""
from __future__ import annotations

from functools import lru_cache

import mmh3


def _weight(host: int, kind: str, key: str) -> int:
    return mmh3.hash64(f"{host}\x00{kind}\x00{key}", signed=False)[0]


@lru_cache(maxsize=262_144)
def owner(kind: str, key: str, hosts: int) -> int:
    """The index of the host that owns actor `(kind, key)` among `hosts`."""
    best, best_weight = 0, -1
    for host in range(hosts):
        weight = _weight(host, kind, key)
        if weight > best_weight:
            best, best_weight = host, weight
    return best

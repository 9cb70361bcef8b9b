"""A token bucket in process memory, for limits that belong to one object
(a WebSocket connection's frames): no I/O, no lock, monotonic time."""
from __future__ import annotations

import time


class Pace:
    def __init__(self, per_second: float, burst: float) -> None:
        self.per_second = per_second
        self.burst = burst
        self.tokens = burst
        self.at = time.monotonic()

    def take(self, cost: float = 1.0) -> float:
        """0.0 when allowed (and taken); else the seconds until it would be."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.per_second)
        self.at = now
        if self.tokens >= cost:
            self.tokens -= cost
            return 0.0
        return (cost - self.tokens) / self.per_second

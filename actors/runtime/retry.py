"""How a typed reference retries a call: one policy for every call site.

A call is tried again only when its error says "not now" (`Unavailable`:
the owning host died or is restarting, the actor's mailbox is full, the
turn did not answer in time, the host is not started yet), never for an
answer (not found, invalid, conflict, rate limited, a turn's own error).

Whether it may run twice decides the rest. An idempotent call (an inbound
message with its dedup key, a send with an idempotency key, marking read)
is retried on any of those errors; another call only on `MailboxFull`,
which refuses a message before the actor ever sees it. Every other error
may come from a call that did run, so it is raised to the caller.

Pauses grow exponentially with jitter, so callers that failed together do
not come back together, and the whole call ends within `budget` seconds
(each attempt's turn timeout is what is left of it, plus the client's one
second of grace for the reply to travel).
"""
from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from actors.runtime.client import DEFAULT_TIMEOUT, ActorRef
from actors.runtime.protocol import MailboxFull
from core.errors import Unavailable

T = TypeVar("T")

MIN_ATTEMPT = 0.05  # seconds: a turn given less could not answer in time


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    budget: float = DEFAULT_TIMEOUT
    first_delay: float = 0.05
    max_delay: float = 1.0
    jitter: float = 0.5  # each pause is drawn from [(1 - jitter) * d, d]

    def pause(self, retry: int, rng: random.Random | None = None) -> float:
        """The pause before retry number `retry` (0 for the first)."""
        ceiling = min(self.first_delay * 2.0 ** retry, self.max_delay)
        return ceiling * (1.0 - self.jitter * (rng or random).random())

    def may_retry(self, exc: BaseException, *, idempotent: bool) -> bool:
        if isinstance(exc, MailboxFull):
            return True
        return idempotent and isinstance(exc, Unavailable)

    async def run(self, attempt: Callable[[float], Awaitable[T]], *, idempotent: bool,
                  rng: random.Random | None = None) -> T:
        """`attempt(timeout)` until it succeeds, fails for good, or the budget
        is spent (then its last error is raised)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.budget
        retry = 0
        while True:
            timeout = max(min(deadline - loop.time(), DEFAULT_TIMEOUT), MIN_ATTEMPT)
            try:
                return await attempt(timeout)
            except Exception as exc:
                if not self.may_retry(exc, idempotent=idempotent):
                    raise
                pause = self.pause(retry, rng)
                retry += 1
                if loop.time() + pause + MIN_ATTEMPT > deadline:
                    raise
            await asyncio.sleep(pause)

    async def ask(self, ref: ActorRef, message: Any, *, idempotent: bool) -> Any:
        """Ask `ref` under this policy."""
        return await self.run(lambda timeout: ref.ask(message, timeout), idempotent=idempotent)


DEFAULT_POLICY = RetryPolicy()

"""Starting a long-lived part (an actor host, the event relay) until it is up.

Ray restarts a crashed actor at once, often while what it needs (Postgres,
Redis) is still down. So a start is not tried once: `Startup` runs the start
function again and again, with an exponential backoff up to a cap, logging
each failure, until it succeeds. The start function must leave nothing
half-open when it fails (what it opened, it closes), so each attempt begins
from nothing.

Callers either wait until the part is up (`until_up()`), or learn at once
that it is not (`ready()` raises `Unavailable` when the attempt under way,
or the last one, failed), so that requests fail fast and are retried.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from core.errors import Unavailable

log = logging.getLogger(__name__)

FIRST_DELAY = 0.5
MAX_DELAY = 15.0


class NotStarted(Unavailable):
    """The part is not started yet (its start is being retried)."""


class Startup:
    def __init__(self, name: str, start: Callable[[], Awaitable[None]], *,
                 first_delay: float = FIRST_DELAY, max_delay: float = MAX_DELAY) -> None:
        self.name = name
        self._start = start
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.attempts = 0
        self.error: str | None = None
        self._up = asyncio.Event()
        self._outcome: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def up(self) -> bool:
        return self._up.is_set()

    @property
    def state(self) -> str:
        return "running" if self.up else "starting"

    def begin(self) -> None:
        """Start trying (once; later calls do nothing)."""
        if self._task is None:
            self._outcome = asyncio.get_running_loop().create_future()
            self._task = asyncio.create_task(self._keep_trying(), name=f"start {self.name}")

    async def _keep_trying(self) -> None:
        delay = self.first_delay
        while True:
            if self._outcome is None or self._outcome.done():
                self._outcome = asyncio.get_running_loop().create_future()
            self.attempts += 1
            try:
                await self._start()
            except Exception as exc:
                self.error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                log.warning("%s: start attempt %d failed (%s); next in %.1f s",
                            self.name, self.attempts, self.error, delay)
                self._outcome.set_result(None)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_delay)
                continue
            self.error = None
            self._up.set()
            self._outcome.set_result(None)
            if self.attempts > 1:
                log.warning("%s: started after %d attempts", self.name, self.attempts)
            return

    async def ready(self) -> None:
        """Return when up; raise `NotStarted` if the attempt under way fails,
        or at once between attempts."""
        self.begin()
        if self.up:
            return
        assert self._outcome is not None
        await asyncio.shield(self._outcome)
        if not self.up:
            raise NotStarted(f"{self.name} is not started (attempt {self.attempts}: "
                             f"{self.error}); retrying")

    async def until_up(self) -> None:
        """Wait, through any number of failed attempts, until the part is up."""
        self.begin()
        await self._up.wait()

    def status(self) -> dict[str, Any]:
        return {"state": self.state, "attempts": self.attempts, "error": self.error}

    async def cancel(self) -> None:
        """Stop trying (shutdown); a start under way is cancelled."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

"""Waiting for what the engine does in the background: poll a condition
until it holds or its deadline passes (never a bare sleep in a test)."""
from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any

POLL = 0.02
# Polls back off to this: a check that calls the API stays under its rate
# limit (10 requests a second per caller and route) however long it waits.
POLL_MAX = 0.1


async def eventually(check: Callable[[], Any], *, timeout: float = 20.0,
                     what: str = "the condition") -> Any:
    """`check()`'s first truthy value (awaited when it is a coroutine);
    AssertionError if none comes within `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    pause = POLL
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout:.0f} s")
        await asyncio.sleep(pause)
        pause = min(pause * 1.5, POLL_MAX)


def until(check: Callable[[], Any], *, timeout: float, what: str = "the condition",
          poll: float = 0.05) -> Any:
    """`eventually` for code outside an event loop (a test peer's start and
    stop): `check()`'s first truthy value, polled every `poll` seconds;
    AssertionError if none comes within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(poll)

"""Batch loading: concurrent `load(key)` calls made in the same moment are
answered by one query (`WHERE id = ANY($1)`), so activating thousands of
actors costs tens of queries, not thousands."""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass
class BatchLoader(Generic[K, V]):
    """`fetch(keys)` returns {key: value}; missing keys load as None."""

    fetch: Callable[[Sequence[K]], Awaitable[dict[K, V]]]
    max_batch: int = 1000
    _waiting: dict[K, list[asyncio.Future[V | None]]] = field(default_factory=dict)
    _scheduled: bool = False

    async def load(self, key: K) -> V | None:
        future: asyncio.Future[V | None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, []).append(future)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._dispatch)
        return await future

    def _dispatch(self) -> None:
        self._scheduled = False
        waiting, self._waiting = self._waiting, {}
        keys = list(waiting)
        for start in range(0, len(keys), self.max_batch):
            chunk = keys[start:start + self.max_batch]
            asyncio.ensure_future(self._run(chunk, {k: waiting[k] for k in chunk}))

    async def _run(self, keys: list[K], waiting: dict[K, list[asyncio.Future[V | None]]]) -> None:
        try:
            found = await self.fetch(keys)
        except Exception as exc:  # every waiter gets the fetch's error
            for futures in waiting.values():
                for f in futures:
                    if not f.done():
                        f.set_exception(exc)
            return
        for key, futures in waiting.items():
            value = found.get(key)
            for f in futures:
                if not f.done():
                    f.set_result(value)

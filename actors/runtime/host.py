"""The host: many virtual actors in one process.

`Host.accept()` takes a batch of envelopes from one caller (in the order of
its connection, `actors.runtime.wire`), puts each message in its actor's
mailbox in that order, and gives back what to answer: a future of each
ask's result, or why a message was refused. Actors are created on first
message, activated by their consumer, passivated after `idle_ttl` or when
more than `max_resident` are resident (least recently used first).

A host is built with its context complete (every resource a turn may use is
open before the first actor activates) and is an async context manager:
leaving it flushes and drops every resident actor, while those resources
are still open.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from actors.runtime.actor import VirtualActor
from actors.runtime.metrics import SAMPLE_EVERY, HostMetrics
from actors.runtime.protocol import (
    ASK,
    MAILBOX_FULL,
    Envelope,
    MailboxFull,
)
from core.timings import TIMINGS

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from actors.runtime.client import ActorSystem
    from core.settings import Settings
    from storage.committer import GroupCommitter
    from storage.db import Database

log = logging.getLogger(__name__)

_PASSIVATE = object()
Refusal = tuple[str, str]  # (error code, text): a message the host did not take


@dataclass(frozen=True)
class HostConfig:
    idle_ttl: float = 600.0
    max_resident: int = 250_000
    mailbox_limit: int = 1_000
    scan_interval: float = 1.0


@dataclass(frozen=True)
class HostContext:
    """What a turn may use, all of it open (`actors.runtime.remote.open_context`).
    `loaders` holds what the host shares between its actors, by name: batch
    loaders, and senders opened with the host (their clients closed with it)."""

    index: int
    settings: Settings
    db: Database
    redis: aioredis.Redis
    committer: GroupCommitter
    system: ActorSystem
    loaders: dict[str, Any] = field(default_factory=dict)

    def loader(self, name: str, factory: Callable[[], Any]) -> Any:
        """One shared loader per name per host (see storage.loader)."""
        found = self.loaders.get(name)
        if found is None:
            found = self.loaders[name] = factory()
        return found


def by_kind(kinds: Iterable[type[VirtualActor]]) -> dict[str, type[VirtualActor]]:
    """The actor classes a host runs, by their `kind` (each named once)."""
    found: dict[str, type[VirtualActor]] = {}
    for cls in kinds:
        if not (isinstance(cls, type) and issubclass(cls, VirtualActor)):
            raise TypeError(f"{cls!r} is not a VirtualActor class")
        if not cls.kind:
            raise TypeError(f"{cls.__qualname__} has no kind")
        if found.setdefault(cls.kind, cls) is not cls:
            raise TypeError(f"kind {cls.kind!r} is named by {found[cls.kind].__qualname__}"
                            f" and {cls.__qualname__}")
    return found


class Host:
    def __init__(self, ctx: HostContext, kinds: Iterable[type[VirtualActor]],
                 config: HostConfig | None = None) -> None:
        self.ctx = ctx
        self.config = config or HostConfig()
        self.kinds = by_kind(kinds)
        # An actor's identity includes its org: the same key named by another
        # org is another (empty) actor, never this one's state.
        self.residents: OrderedDict[tuple[str, str, str], VirtualActor] = OrderedDict()
        self.resident_by_kind: dict[str, int] = dict.fromkeys(self.kinds, 0)
        self.queued = 0
        self.metrics = HostMetrics(host=str(ctx.index))
        self._tasks: set[asyncio.Task[Any]] = set()
        self._turns = 0
        self._batches = 0

    async def __aenter__(self) -> Host:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.passivate_all()

    # -- delivery ---------------------------------------------------------

    def accept(self, envelopes: list[Envelope]) -> list[asyncio.Future[Any] | Refusal | None]:
        """Put each envelope in its actor's mailbox, in order: a future of its
        turn's result for an ask, None for a tell taken, or why it was refused."""
        now = time.monotonic()
        slots: list[asyncio.Future[Any] | Refusal | None] = []
        for kind, org_id, key, message, mode, _ in envelopes:
            try:
                slots.append(self.enqueue(kind, org_id, key, message, mode == ASK, now))
            except MailboxFull as exc:
                slots.append((MAILBOX_FULL, exc.message))
            except KeyError:
                slots.append(("unknown_kind", f"no actor kind {kind!r}"))
        self._batches += 1
        if self._batches % SAMPLE_EVERY == 0:  # sampled, as turn latency is
            self.metrics.batch(len(envelopes))
        return slots

    def enqueue(self, kind: str, org_id: str, key: str, message: Any, want_reply: bool,
                now: float | None = None) -> asyncio.Future[Any] | None:
        ident = (kind, org_id, key)
        actor = self.residents.get(ident)
        if actor is None:
            actor = self.kinds[kind](org_id, key, self.ctx)
            self.residents[ident] = actor
            self.resident_by_kind[kind] += 1
        else:
            self.residents.move_to_end(ident)
        actor._last_used = now if now is not None else time.monotonic()
        future = asyncio.get_running_loop().create_future() if want_reply else None
        if actor._active and not actor._running and not actor._mailbox:
            TIMINGS.observe("mailbox", 0.0)
            self._run_inline(actor, message, future)
            return future
        if actor._mailbox is None:
            actor._mailbox = deque()
        elif len(actor._mailbox) >= self.config.mailbox_limit:
            raise MailboxFull(f"{kind} {key} has {len(actor._mailbox)} messages queued; "
                              "retry later")
        actor._mailbox.append((message, future, time.perf_counter()))
        self.queued += 1
        if not actor._running:
            self._start(actor, None)
        return future

    def _run_inline(self, actor: VirtualActor, message: Any,
                    future: asyncio.Future[Any] | None) -> None:
        """The fast path: an idle, active actor runs a plain handler at once."""
        pending = self._begin_turn(actor, message, future)
        if pending is not None:
            self._start(actor, (pending[0], future, pending[1]))

    def _begin_turn(self, actor: VirtualActor, message: Any,
                    future: asyncio.Future[Any] | None) -> tuple[Awaitable[Any], float] | None:
        """Run a turn up to its first suspension: settle it if it finished,
        else hand back the awaitable that completes it."""
        self._turns += 1
        started = time.perf_counter()
        try:
            result = actor.receive(message)
        except Exception as exc:
            _settle(future, exc=exc, actor=actor)
            return None
        if inspect.isawaitable(result):
            return result, started
        _settle(future, result)
        self._timed(started)
        return None

    def _timed(self, started: float) -> None:
        took = time.perf_counter() - started
        TIMINGS.observe("turn", took)
        if self._turns % SAMPLE_EVERY == 0:
            self.metrics.turn(took)

    def _start(self, actor: VirtualActor, first: tuple[Awaitable[Any], Any, float] | None) -> None:
        actor._running = True
        task = asyncio.create_task(self._consume(actor, first))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _consume(self, actor: VirtualActor,
                       first: tuple[Awaitable[Any], Any, float] | None) -> None:
        try:
            if first is not None:
                awaitable, future, started = first
                await self._finish(actor, awaitable, future, started)
            while True:
                if (not actor._active and actor._mailbox
                        and not await self._activate(actor)):
                    return
                if not actor._mailbox:
                    return
                message, future, queued_at = actor._mailbox.popleft()
                self.queued -= 1
                if message is _PASSIVATE:
                    if not actor._mailbox:
                        await self._deactivate(actor)
                    continue
                TIMINGS.observe("mailbox", time.perf_counter() - queued_at)
                pending = self._begin_turn(actor, message, future)
                if pending is not None:
                    await self._finish(actor, pending[0], future, pending[1])
        finally:
            actor._running = False
            if actor._mailbox is not None and not actor._mailbox:
                actor._mailbox = None

    async def _finish(self, actor: VirtualActor, awaitable: Awaitable[Any],
                      future: asyncio.Future[Any] | None, started: float) -> None:
        try:
            result = await awaitable
        except Exception as exc:
            _settle(future, exc=exc, actor=actor)
        else:
            _settle(future, result)
        self._timed(started)

    async def _activate(self, actor: VirtualActor) -> bool:
        try:
            await actor.on_activate()
        except Exception as exc:
            log.warning("activation of %s %s failed: %s", actor.kind, actor.key, exc)
            while actor._mailbox:
                _, future, _ = actor._mailbox.popleft()
                self.queued -= 1
                _settle(future, exc=exc)
            self._drop(actor)
            return False
        actor._active = True
        self.metrics.activations[actor.kind] += 1
        return True

    async def _deactivate(self, actor: VirtualActor) -> None:
        if actor._active:
            try:
                await actor.on_deactivate()
            except Exception as exc:  # keep it resident: its state is not flushed
                log.warning("deactivation of %s %s failed: %s", actor.kind, actor.key, exc)
                return
            actor._active = False
        if not actor._mailbox:
            self._drop(actor)
            self.metrics.passivations[actor.kind] += 1

    def _drop(self, actor: VirtualActor) -> None:
        ident = (actor.kind, actor.org_id, actor.key)
        if self.residents.get(ident) is actor:
            del self.residents[ident]
            self.resident_by_kind[actor.kind] -= 1
        actor._retired = True

    # -- maintenance ------------------------------------------------------

    def passivate_idle(self, now: float | None = None) -> int:
        """Queue passivation for idle actors past their TTL and beyond the cap."""
        now = time.monotonic() if now is None else now
        excess = len(self.residents) - self.config.max_resident
        chosen = []
        for actor in self.residents.values():
            expired = now - actor._last_used >= self.config.idle_ttl
            if not expired and excess <= 0:
                break  # LRU order: everything after is more recent
            if actor._running or actor._mailbox or (actor._active and not actor.can_passivate()):
                continue
            chosen.append(actor)
            excess -= 1
        for actor in chosen:
            self._request_passivation(actor)
        return len(chosen)

    def _request_passivation(self, actor: VirtualActor) -> None:
        if not actor._active and not actor._running:
            self._drop(actor)
            return
        if actor._mailbox is None:
            actor._mailbox = deque()
        actor._mailbox.append((_PASSIVATE, None, 0.0))
        self.queued += 1
        if not actor._running:
            self._start(actor, None)

    async def passivate_all(self) -> None:
        """Flush and drop every resident actor (graceful shutdown)."""
        for actor in list(self.residents.values()):
            self._request_passivation(actor)
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def push_metrics(self) -> None:
        self.metrics.push(self.resident_by_kind, self.queued)

    def stats(self) -> dict[str, Any]:
        return {
            "index": self.ctx.index,
            "resident": dict(self.resident_by_kind),
            "queued": self.queued,
            "turns": self._turns,
            "activations": dict(self.metrics.activations),
            "passivations": dict(self.metrics.passivations),
        }


def _settle(future: asyncio.Future[Any] | None, result: Any = None, *,
            exc: BaseException | None = None, actor: VirtualActor | None = None) -> None:
    if future is None:
        if exc is not None:
            log.warning("tell to %s %s failed: %s", getattr(actor, "kind", "?"),
                        getattr(actor, "key", "?"), exc)
        return
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)

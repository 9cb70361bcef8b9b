"""Actor kinds used only by the tests: they record what they receive, so the
tests can check order, concurrency and durability through the real runtime."""
from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from typing import Any

import msgspec

from actors.runtime.actor import VirtualActor, on
from actors.runtime.client import ActorSystem
from actors.runtime.protocol import MailboxFull
from actors.runtime.retry import DEFAULT_POLICY, RetryPolicy
from core.errors import BidiError, Invalid, NotFound, Unavailable
from storage.committer import Write

EVENT_INSERT = ("INSERT INTO events (organization_id, event_type, entity_type, payload)"
                " VALUES ($1::uuid, 'test.persisted', 'recorder', $2::jsonb)")


class Append(msgspec.Struct, frozen=True):
    sender: str
    n: int


class SlowAppend(msgspec.Struct, frozen=True):
    """Yields to the loop before recording: other actors' turns interleave."""

    sender: str
    n: int


class GetLog(msgspec.Struct, frozen=True):
    pass


class Boom(msgspec.Struct, frozen=True):
    text: str


class Rendezvous(msgspec.Struct, frozen=True):
    """Meet `n` turns of other actors; only possible if turns run in parallel."""

    name: str
    n: int


class Persist(msgspec.Struct, frozen=True):
    value: str


class _Logging(VirtualActor):
    """Records what it receives; starts empty on every activation."""

    __slots__ = ("log",)

    async def on_activate(self) -> None:
        self.log: list[tuple[str, int]] = []

    @on(Append)
    def append(self, message: Append) -> int:
        self.log.append((message.sender, message.n))
        return len(self.log)

    @on(SlowAppend)
    async def slow_append(self, message: SlowAppend) -> int:
        await asyncio.sleep(0)  # a turn that suspends
        self.log.append((message.sender, message.n))
        return len(self.log)

    @on(GetLog)
    def get_log(self, _: GetLog) -> list[tuple[str, int]]:
        return list(self.log)

    @on(Boom)
    def boom(self, message: Boom) -> Any:
        raise ValueError(message.text)


class Recorder(_Logging):
    """On the real hosts: also meets other turns and persists through the committer."""

    kind = "recorder"
    __slots__ = ()

    @on(Rendezvous)
    async def rendezvous(self, message: Rendezvous) -> bool:
        redis = self.ctx.redis
        arrived = await redis.incr(f"test:rv:{message.name}:count")
        if arrived == message.n:
            await redis.rpush(f"test:rv:{message.name}:go", *["go"] * message.n)
        got = await redis.blpop([f"test:rv:{message.name}:go"], timeout=10)
        return got is not None

    @on(Persist)
    async def persist(self, message: Persist) -> str:
        await self.ctx.committer.commit(self.org_id, [
            Write(EVENT_INSERT, (self.org_id, {"key": self.key, "value": message.value}))])
        return message.value


class Plain(_Logging):
    """No I/O at all: for in-process host tests."""

    kind = "plain"
    __slots__ = ("deactivated",)

    async def on_activate(self) -> None:
        await super().on_activate()
        self.deactivated = False

    async def on_deactivate(self) -> None:
        self.deactivated = True


class Flake(msgspec.Struct, frozen=True):
    """Fail the first `times` attempts of call `token` with `error`, then answer
    the number of the attempt that succeeded."""

    token: str
    times: int
    error: str


class Attempts(msgspec.Struct, frozen=True):
    token: str


FLAKES: dict[str, type[BidiError]] = {
    "mailbox_full": MailboxFull, "unavailable": Unavailable, "invalid": Invalid,
    "not_found": NotFound}


class Flaky(VirtualActor):
    """Fails on purpose, with errors that cross the wire as the runtime's own."""

    kind = "flaky"
    __slots__ = ("attempts",)

    async def on_activate(self) -> None:
        self.attempts: Counter[str] = Counter()

    @on(Flake)
    def flake(self, message: Flake) -> int:
        self.attempts[message.token] += 1
        if self.attempts[message.token] <= message.times:
            raise FLAKES[message.error](f"attempt {self.attempts[message.token]} fails")
        return self.attempts[message.token]

    @on(Attempts)
    def count(self, message: Attempts) -> int:
        return self.attempts[message.token]


@dataclass(frozen=True, slots=True)
class FlakyRef:
    """The typed reference of `Flaky`, as `actors.refs` writes them."""

    system: ActorSystem
    org_id: str
    key: str
    policy: RetryPolicy = DEFAULT_POLICY

    async def flake(self, token: str, times: int, error: str, *, idempotent: bool) -> int:
        actor = self.system.ref(Flaky.kind, self.org_id, self.key)
        return await self.policy.ask(  # type: ignore[no-any-return]
            actor, Flake(token, times, error), idempotent=idempotent)

    async def attempts(self, token: str) -> int:
        actor = self.system.ref(Flaky.kind, self.org_id, self.key)
        return await actor.ask(Attempts(token))  # type: ignore[no-any-return]


TEST_KINDS: tuple[type[VirtualActor], ...] = (Recorder, Plain, Flaky)

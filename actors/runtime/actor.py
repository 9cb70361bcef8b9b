"""The virtual actor: a key, hot state, and a mailbox with one consumer.

Turns are serial per actor and concurrent across actors. A handler may be a
plain function (the host runs it inline when the actor is idle: no task, no
queue) or a coroutine function (the host runs the mailbox in a task that
exists only while there is work). `on_activate()` loads state before the
first message; `on_deactivate()` flushes it when the host passivates the
actor.
"""
from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from actors.runtime.host import HostContext


def on(message_type: type) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a method as the handler of `message_type`."""

    def mark(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn._bidi_handles = message_type  # type: ignore[attr-defined]
        return fn

    return mark


class UnknownMessage(Exception):
    pass


class VirtualActor:
    kind: ClassVar[str] = ""
    _dispatch: ClassVar[dict[type, Callable[..., Any]]] = {}

    __slots__ = ("org_id", "key", "ctx", "_mailbox", "_running", "_active", "_last_used",
                 "_retired")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        dispatch: dict[type, Callable[..., Any]] = {}
        for klass in reversed(cls.__mro__):
            for value in vars(klass).values():
                handles = getattr(value, "_bidi_handles", None)
                if handles is not None:
                    dispatch[handles] = value
        cls._dispatch = dispatch

    def __init__(self, org_id: str, key: str, ctx: HostContext) -> None:
        self.org_id = org_id
        self.key = key
        self.ctx = ctx
        # (message, reply future, when it was queued)
        self._mailbox: deque[tuple[Any, asyncio.Future[Any] | None, float]] | None = None
        self._running = False
        self._active = False
        self._retired = False
        self._last_used = 0.0

    async def on_activate(self) -> None:
        """Load state from Postgres before the first message."""

    async def on_deactivate(self) -> None:
        """Flush state before the host drops this actor."""

    def can_passivate(self) -> bool:
        """False while the actor has work outside its turns (e.g. sends in flight)."""
        return True

    def tell_self(self, message: Any) -> asyncio.Future[Any]:
        """A later turn of this actor (a timer's, say), in its mailbox's order."""
        return self.ctx.system.tell(self.kind, self.org_id, self.key, message)

    def receive(self, message: Any) -> Any:
        handler = self._dispatch.get(type(message))
        if handler is None:
            raise UnknownMessage(f"{self.kind} does not handle {type(message).__name__}")
        return handler(self, message)

    def pending(self) -> int:
        return len(self._mailbox) if self._mailbox else 0

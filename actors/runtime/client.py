"""The caller's side: `ActorSystem.tell()` / `ask()`.

Each host gets one connection from this process (`actors.runtime.wire`):
the calls made in one loop tick travel in one frame, and each is answered
as soon as its turn ends. The connection's order is the order the host
applies the calls in, which keeps every actor's messages from one caller
in the order sent.

Calls lost with their host's connection fail with `HostUnavailable` (never
a silent drop); the caller's typed reference retries
(`actors.runtime.retry`), and dedup keys make that safe; the next call
connects to the restarted host, found through Ray.

A system is an async context manager: leaving it waits for the calls on
the wire. Inside an actor host it also serves the host's own actors
directly (`serve_locally()`), without the wire.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import ray

from actors.runtime.placement import owner
from actors.runtime.protocol import ASK, TELL, Envelope
from actors.runtime.wire import Address, Link
from core.errors import Unavailable

if TYPE_CHECKING:
    from actors.runtime.host import Host

NAMESPACE = "bidi"
DEFAULT_TIMEOUT = 10.0


def host_name(index: int) -> str:
    return f"bidi-host-{index}"


@dataclass(frozen=True, slots=True)
class ActorRef:
    """A handle on one virtual actor; cheap to make, safe to keep."""

    system: ActorSystem
    kind: str
    org_id: str
    key: str

    def tell(self, message: Any) -> asyncio.Future[Any]:
        return self.system.tell(self.kind, self.org_id, self.key, message)

    async def ask(self, message: Any, timeout: float = DEFAULT_TIMEOUT) -> Any:
        return await self.system.ask(self.kind, self.org_id, self.key, message, timeout)


class ActorSystem:
    def __init__(self, hosts: int, *, namespace: str = NAMESPACE) -> None:
        self.hosts = hosts
        self.namespace = namespace
        self._handles: dict[int, Any] = {}
        self._links: dict[int, Link] = {}
        self._local: tuple[int, Host] | None = None

    async def __aenter__(self) -> ActorSystem:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def serve_locally(self, index: int, host: Host) -> None:
        """Calls to actors that `host` (host number `index`) owns skip the wire."""
        self._local = (index, host)

    def ref(self, kind: str, org_id: Any, key: Any) -> ActorRef:
        return ActorRef(self, kind, str(org_id), str(key))

    def owner(self, kind: str, key: str) -> int:
        return owner(kind, key, self.hosts)

    def tell(self, kind: str, org_id: str, key: str, message: Any) -> asyncio.Future[Any]:
        """Send without waiting for the turn; the future resolves when the host
        has the message (or fails when it cannot take it)."""
        return self._submit((kind, org_id, key, message, TELL, 0.0))

    async def ask(self, kind: str, org_id: str, key: str, message: Any,
                  timeout: float = DEFAULT_TIMEOUT) -> Any:
        """Run a turn and return its result, or raise its error."""
        future = self._submit((kind, org_id, key, message, ASK, timeout))
        # A timer that fails the future, not asyncio.wait_for, which costs
        # almost four times as much per call (bench/overheads.py); either way the turn runs on, and
        # whoever settles the future later finds it done.
        late = future.get_loop().call_later(timeout + 1.0, _expire, future, kind, key, timeout)
        try:
            return await future
        finally:
            late.cancel()

    def _submit(self, envelope: Envelope) -> asyncio.Future[Any]:
        index = self.owner(envelope[0], envelope[2])
        if self._local is not None and index == self._local[0]:
            return _local_call(self._local[1], envelope)
        link = self._links.get(index)
        if link is None or link.dead:
            link = self._links[index] = Link(index, lambda: self._locate(index))
        return link.call(envelope)

    async def _locate(self, index: int) -> tuple[Address, bytes]:
        """Host `index`'s endpoint, asked through Ray (which waits while it restarts)."""
        try:
            address, token = await self._handle(index).endpoint.remote()
        except (ray.exceptions.RayError, ValueError):
            self._handles.pop(index, None)
            raise
        return tuple(address), token

    def _handle(self, index: int) -> Any:
        handle = self._handles.get(index)
        if handle is None:
            handle = ray.get_actor(host_name(index), namespace=self.namespace)
            self._handles[index] = handle
        return handle

    async def ping(self, index: int) -> int:
        """Round trip to host `index` (readiness checks)."""
        return int(await self._handle(index).ping.remote())

    async def close(self) -> None:
        links, self._links = list(self._links.values()), {}
        await asyncio.gather(*(link.close() for link in links), return_exceptions=True)


def _expire(future: asyncio.Future[Any], kind: str, key: str, timeout: float) -> None:
    if not future.done():
        future.set_exception(Unavailable(f"{kind} {key} did not answer within {timeout:.1f} s"))


def _local_call(host: Host, envelope: Envelope) -> asyncio.Future[Any]:
    """A host calling an actor it owns skips Ray altogether."""
    kind, org_id, key, message, mode, _ = envelope
    loop = asyncio.get_running_loop()
    try:
        future = host.enqueue(kind, org_id, key, message, mode == ASK)
    except Exception as exc:  # MailboxFull, unknown kind
        failed: asyncio.Future[Any] = loop.create_future()
        failed.set_exception(exc)
        return failed
    if future is None:
        done: asyncio.Future[Any] = loop.create_future()
        done.set_result(None)
        return done
    return future

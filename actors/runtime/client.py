"""The caller's side: `ActorSystem.tell()` / `ask()` with per-host batching.

Each host gets one ordered stream from this process. The calls made in one
loop tick (or within `linger` seconds, when set; up to `max_batch` of them)
travel in one Ray call; while `max_inflight` batches are on the wire, new
calls gather into the next, so batches grow with the load and a lone call
leaves at once. Batches carry a sequence number so the host applies them in order,
which keeps every actor's messages from one caller in the order sent.

A batch lost with its host fails every call in it with `HostUnavailable`
(never a silent drop); the caller's typed reference retries
(`actors.runtime.retry`), and dedup keys make that safe.

A system is an async context manager: leaving it waits for the batches on
the wire. Inside an actor host it also serves the host's own actors
directly (`serve_locally()`), without a Ray call.
"""
from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import ray

from actors.runtime.placement import owner
from actors.runtime.protocol import ASK, TELL, Envelope, HostUnavailable, decode_error
from core.errors import Unavailable
from core.timings import TIMINGS

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


@dataclass
class _Stream:
    index: int
    name: str
    pending: list[tuple[Envelope, asyncio.Future[Any], float]] = field(default_factory=list)
    seq: itertools.count[int] = field(default_factory=itertools.count)
    flusher: asyncio.Task[None] | None = None
    inflight: int = 0
    slot_free: asyncio.Event = field(default_factory=asyncio.Event)


class ActorSystem:
    def __init__(self, hosts: int, *, namespace: str = NAMESPACE, linger: float = 0.0,
                 max_batch: int = 5000, max_inflight: int = 4) -> None:
        self.hosts = hosts
        self.namespace = namespace
        self.linger = linger
        self.max_batch = max_batch
        self.max_inflight = max_inflight
        self._id = uuid.uuid4().hex[:12]
        self._epoch = 0
        self._handles: dict[int, Any] = {}
        self._streams: dict[int, _Stream] = {}
        self._local: tuple[int, Host] | None = None
        self._background: set[asyncio.Task[Any]] = set()

    async def __aenter__(self) -> ActorSystem:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def serve_locally(self, index: int, host: Host) -> None:
        """Calls to actors that `host` (host number `index`) owns skip Ray."""
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
        try:
            return await asyncio.wait_for(future, timeout + 1.0)
        except TimeoutError:
            raise Unavailable(f"{kind} {key} did not answer within {timeout:.1f} s") from None

    def _submit(self, envelope: Envelope) -> asyncio.Future[Any]:
        index = self.owner(envelope[0], envelope[2])
        loop = asyncio.get_running_loop()
        if self._local is not None and index == self._local[0]:
            return _local_call(self._local[1], envelope)
        stream = self._streams.get(index)
        if stream is None:
            stream = self._streams[index] = _Stream(index, self._stream_name(index))
        future: asyncio.Future[Any] = loop.create_future()
        stream.pending.append((envelope, future, time.perf_counter()))
        if stream.flusher is None or stream.flusher.done():
            stream.flusher = loop.create_task(self._flush_loop(stream))
        return future

    def _stream_name(self, index: int) -> str:
        return f"{self._id}.{self._epoch}.{index}"

    async def _flush_loop(self, stream: _Stream) -> None:
        while stream.pending:
            # The calls of this loop tick travel together (and those of
            # `linger` seconds, when set); while `max_inflight` batches are
            # out, the next one grows.
            await asyncio.sleep(self.linger if len(stream.pending) < self.max_batch else 0.0)
            while stream.inflight >= self.max_inflight:
                stream.slot_free.clear()
                await stream.slot_free.wait()
            batch = stream.pending[: self.max_batch]
            del stream.pending[: self.max_batch]
            now = time.perf_counter()
            for _, _, submitted in batch:
                TIMINGS.observe("queue", now - submitted)
            stream.inflight += 1
            task = asyncio.create_task(self._send(stream, next(stream.seq), batch))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _send(self, stream: _Stream, seq: int,
                    batch: list[tuple[Envelope, asyncio.Future[Any], float]]) -> None:
        try:
            handle = self._handle(stream.index)
            failures, results, replied_at = await handle.deliver.remote(
                stream.name, seq, [envelope for envelope, _, _ in batch], time.time())
            TIMINGS.observe("reply", time.time() - replied_at, len(batch))
        except (ray.exceptions.RayError, ValueError) as exc:
            self._reset(stream)
            error = HostUnavailable(f"host {stream.index} unavailable: {type(exc).__name__}")
            for _, future, _ in batch:
                if not future.done():
                    future.set_exception(error)
            return
        finally:
            stream.inflight -= 1
            stream.slot_free.set()
        failed = {i: (code, text) for i, code, text in failures}
        for i, (_, future, _) in enumerate(batch):
            if future.done():
                continue
            if i in failed:
                future.set_exception(decode_error(*failed[i]))
            else:
                future.set_result(results.get(i))

    def _reset(self, stream: _Stream) -> None:
        """After a failure the host may have restarted: start a fresh stream."""
        self._handles.pop(stream.index, None)
        self._epoch += 1
        stream.name = self._stream_name(stream.index)
        stream.seq = itertools.count()

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
        for stream in self._streams.values():
            if stream.flusher is not None:
                await stream.flusher
        if self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)



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

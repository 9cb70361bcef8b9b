"""The data path between callers and hosts: one TCP connection per caller
process and host, carrying length-prefixed pickled frames.

Ray places, names, restarts and watches the hosts; their calls do not go
through Ray's actor calls. A Ray call cost about a millisecond of CPU on
each side on a 2-core machine (a quarter of a replica's time at 300
inbound messages/s, bench/realtime.py), and its reply waited for every call
of its batch. On the wire a batch is one frame, each call is answered as
soon as its turn ends (the answers of one loop tick share a frame), and the
connection's order is the order the host applies the calls in.

A host's `Endpoint` listens on its node's address with a random token; a
caller learns both from the host through Ray (`ActorHost.endpoint()`), so
only a process that may call the cluster's actors can connect: the first
bytes of a connection must be the token, compared in constant time, before
anything is unpickled. A `Link` is one caller's connection to one host: when
it breaks (the host died), every call on it fails with `HostUnavailable`
and the next call opens a new one, to the restarted host.

Frames, after the token: caller -> host `(sent_at, [(call_id, envelope)])`;
host -> caller `(replied_at, [(call_id, error_code | None, value | message)],
[call_id of each tell taken])`. A tell is answered once its actor has it
(by its id alone), an ask when its turn ends.
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import itertools
import logging
import pickle
import secrets
import struct
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from actors.runtime.protocol import ASK, Envelope, HostUnavailable, decode_error, encode_error
from core.timings import TIMINGS

if TYPE_CHECKING:
    from actors.runtime.host import Host

log = logging.getLogger(__name__)

HEADER = struct.Struct("!I")
TOKEN_BYTES = 32
MAX_FRAME = 256 * 1024 * 1024
CONNECT_TIMEOUT = 10.0
HANDSHAKE_TIMEOUT = 5.0

Address = tuple[str, int]


def pack(obj: Any) -> bytes:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(data)) + data


async def read_frame(reader: asyncio.StreamReader) -> Any:
    (size,) = HEADER.unpack(await reader.readexactly(HEADER.size))
    if size > MAX_FRAME:
        raise ConnectionError(f"a frame of {size} bytes is beyond the limit")
    return pickle.loads(await reader.readexactly(size))


class _Replies:
    """A connection's answers, written once per loop tick."""

    __slots__ = ("writer", "items", "taken", "scheduled")

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.items: list[tuple[int, str | None, Any]] = []
        self.taken: list[int] = []  # tells in their mailboxes: acknowledged by id alone
        self.scheduled = False

    def add(self, item: tuple[int, str | None, Any]) -> None:
        self.items.append(item)
        self._schedule()

    def take(self, call_id: int) -> None:
        self.taken.append(call_id)
        self._schedule()

    def _schedule(self) -> None:
        if not self.scheduled:
            self.scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def answer(self, call_id: int, future: asyncio.Future[Any]) -> None:
        if future.cancelled():
            self.add((call_id, "unavailable", "the call was cancelled"))
        elif future.exception() is not None:
            self.add((call_id, *encode_error(future.exception())))  # type: ignore[arg-type]
        else:
            self.add((call_id, None, future.result()))

    def flush(self) -> None:
        self.scheduled = False
        items, self.items = self.items, []
        taken, self.taken = self.taken, []
        if not (items or taken) or self.writer.is_closing():
            return
        try:
            frame = pack((time.time(), items, taken))
        except Exception:  # one answer that does not pickle fails alone
            frame = pack((time.time(), [_sendable_answer(item) for item in items], taken))
        self.writer.write(frame)


def _unpicklable(value: Any) -> Exception | None:
    """Why `value` cannot travel, or None when it can."""
    try:
        pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        return exc
    return None


def _sendable_answer(item: tuple[int, str | None, Any]) -> tuple[int, str | None, Any]:
    why = _unpicklable(item[2])
    return item if why is None else (item[0], "turn_error", f"the result cannot be sent: {why}")


class Endpoint:
    """A host's listening socket (an async context manager)."""

    def __init__(self, host: Host, bind: str) -> None:
        self.host = host
        self.bind = bind
        self.token = secrets.token_bytes(TOKEN_BYTES)
        self.address: Address | None = None
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> Endpoint:
        self._server = await asyncio.start_server(self._serve, self.bind, 0)
        self.address = self._server.sockets[0].getsockname()[:2]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._connections):
            writer.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5.0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.add(writer)
        try:
            token = await asyncio.wait_for(reader.readexactly(TOKEN_BYTES), HANDSHAKE_TIMEOUT)
            if not hmac.compare_digest(token, self.token):
                log.warning("a connection to the actor host offered a wrong token")
                return
            replies = _Replies(writer)
            while True:
                sent_at, calls = await read_frame(reader)
                TIMINGS.observe("transport", time.time() - sent_at, len(calls))
                self._accept(calls, replies)
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            pass
        except Exception:
            log.exception("actor host connection failed")
        finally:
            self._connections.discard(writer)
            writer.close()

    def _accept(self, calls: list[tuple[int, Envelope]], replies: _Replies) -> None:
        slots = self.host.accept([envelope for _, envelope in calls])
        for (call_id, _), slot in zip(calls, slots, strict=True):
            if slot is None:
                replies.take(call_id)
            elif isinstance(slot, tuple):
                replies.add((call_id, *slot))
            elif slot.done():
                replies.answer(call_id, slot)
            else:
                slot.add_done_callback(functools.partial(replies.answer, call_id))


Locate = Callable[[], Awaitable[tuple[Address, bytes]]]


class Link:
    """One caller's connection to one host; calls made before it is open
    wait for it (bounded by the connect timeout)."""

    def __init__(self, index: int, locate: Locate) -> None:
        self.index = index
        self.dead = False
        self._locate = locate
        self._ids = itertools.count()
        self._calls: dict[int, asyncio.Future[Any]] = {}
        self._outbox: list[tuple[int, Envelope, float]] = []
        self._writer: asyncio.StreamWriter | None = None
        self._scheduled = False
        self._task = asyncio.get_running_loop().create_task(self._run())

    def call(self, envelope: Envelope) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if self.dead:  # callers open a new link; this one takes nothing more
            future.set_exception(HostUnavailable(f"host {self.index}: the connection is closed"))
            return future
        call_id = next(self._ids)
        self._calls[call_id] = future
        if envelope[4] == ASK:  # an ask may time out first; a tell is answered at once
            future.add_done_callback(functools.partial(self._forget, call_id))
        self._outbox.append((call_id, envelope, time.perf_counter()))
        if self._writer is not None and not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return future

    def _forget(self, call_id: int, _: asyncio.Future[Any]) -> None:
        self._calls.pop(call_id, None)

    def _flush(self) -> None:
        self._scheduled = False
        batch, self._outbox = self._outbox, []
        if not batch or self._writer is None:
            return
        now = time.perf_counter()
        calls = []
        for call_id, envelope, queued in batch:
            TIMINGS.observe("queue", now - queued)
            calls.append((call_id, envelope))
        try:
            frame = pack((time.time(), calls))
        except Exception:  # a message that does not pickle fails alone
            frame = pack((time.time(), self._sendable(calls)))
        self._writer.write(frame)

    def _sendable(self, calls: list[tuple[int, Envelope]]) -> list[tuple[int, Envelope]]:
        kept = []
        for call_id, envelope in calls:
            why = _unpicklable(envelope)
            if why is None:
                kept.append((call_id, envelope))
                continue
            future = self._calls.get(call_id)
            if future is not None and not future.done():
                future.set_exception(TypeError(f"the message cannot be sent: {why}"))
        return kept

    async def _run(self) -> None:
        error: HostUnavailable | None = None
        try:
            address, token = await asyncio.wait_for(self._locate(), CONNECT_TIMEOUT)
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(*address), CONNECT_TIMEOUT)
            writer.write(token)
            self._writer = writer
            self._flush()
            while True:
                replied_at, answers, taken = await read_frame(reader)
                TIMINGS.observe("reply", time.time() - replied_at, len(answers) + len(taken))
                calls = self._calls
                for call_id in taken:
                    future = calls.pop(call_id, None)
                    if future is not None and not future.done():
                        future.set_result(None)
                for call_id, code, value in answers:
                    future = calls.get(call_id)
                    if future is None or future.done():
                        continue
                    if code is None:
                        future.set_result(value)
                    else:
                        future.set_exception(decode_error(code, value))
        except asyncio.CancelledError:
            error = HostUnavailable(f"host {self.index}: the connection was closed")
            raise
        except Exception as exc:
            error = HostUnavailable(f"host {self.index} unavailable: {type(exc).__name__}")
        finally:
            self.dead = True
            if self._writer is not None:
                self._writer.close()
            self._fail(error or HostUnavailable(f"host {self.index} unavailable"))

    def _fail(self, error: HostUnavailable) -> None:
        futures = list(self._calls.values())
        self._calls.clear()
        self._outbox.clear()
        for future in futures:
            if not future.done():
                future.set_exception(HostUnavailable(error.message))

    async def close(self) -> None:
        """Close once the calls on the wire are answered (or failed)."""
        if self._calls:
            with contextlib.suppress(Exception):
                await asyncio.wait(list(self._calls.values()), timeout=CONNECT_TIMEOUT)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task

"""The WebSocket side of the event bus, one per Serve replica.

`Hub` holds one Redis pub/sub connection for the whole replica and
subscribes a Redis topic while any local connection needs it. Each event
arrives once per topic, is parsed once, and is offered to every connection
on that topic; the frame bytes are the relay's, sent as they are.

`Live` is one WebSocket connection's event stream: eager sends with a
bounded backlog, and a position `(xid, seq)` — the last event it was
sent. Events reach a connection in commit order, so an event at or before
the position is a duplicate (the same event through a second topic, or one
already sent by a replay) and is dropped. A replay (`since`) reads the gap
from Postgres while live events are held back, then lets through only the
held ones after what the replay sent: none missing, none twice.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import msgspec
from redis.exceptions import RedisError

from core.errors import Unavailable
from core.timings import TIMINGS
from serve.errors import Close
from serve.wsraw import RawSocket, text_frame
from storage.events import Position
from storage.pubsub import Lost, Subscriber

log = logging.getLogger(__name__)

QUEUE_LIMIT = 2000  # frames a connection may have unsent before it is closed


@dataclass(slots=True)
class Frame:
    """An incoming pub/sub message: an event (with a position) or an ephemeral frame."""

    text: str
    position: Position | None
    chat_id: str | None
    family: str | None = None  # an event's family (`contact` of `contact.created`)
    wire: bytes = b""  # the WebSocket text frame carrying `text`, encoded once for everyone


class _Head(msgspec.Struct):
    """The routing fields of a frame; the rest (its payload) is skipped unread."""

    xid: int | None = None
    seq: int | None = None
    chat_id: str | None = None
    event_type: str | None = None


_head = msgspec.json.Decoder(_Head)
_batch = msgspec.json.Decoder(list[msgspec.Raw])


def parse_many(raw: bytes) -> list[Frame]:
    """A pub/sub message: one frame, or (from the relay) a JSON array of them."""
    if raw[:1] != b"[":
        frame = parse(raw)
        return [frame] if frame is not None else []
    try:
        items = _batch.decode(raw)
    except msgspec.DecodeError:
        return []
    return [f for f in (parse(bytes(item)) for item in items) if f is not None]


def parse(raw: bytes) -> Frame | None:
    try:
        head = _head.decode(raw)
    except msgspec.ValidationError:
        return _parse_any(raw)  # not shaped like ours: read it all
    except msgspec.DecodeError:
        return None
    position = (head.xid, head.seq) if head.xid is not None and head.seq is not None else None
    family = head.event_type.partition(".")[0] if head.event_type is not None else None
    return Frame(raw.decode(), position, head.chat_id, family, text_frame(raw))


def _parse_any(raw: bytes) -> Frame | None:
    try:
        data = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return None
    if not isinstance(data, dict):
        return None
    position = None
    if "xid" in data and "seq" in data:
        position = (int(data["xid"]), int(data["seq"]))
    event_type = data.get("event_type")
    family = event_type.partition(".")[0] if isinstance(event_type, str) else None
    return Frame(raw.decode(), position, data.get("chat_id"), family, text_frame(raw))


@dataclass(eq=False)
class Live:
    """One connection's outgoing event stream.

    Sending is eager: when nothing is waiting for this connection, a frame
    is sent at once, in the caller's turn (an ASGI WebSocket send completes
    without suspending while the socket is writable). Only when the socket
    pushes back does a task take over, draining a bounded backlog; a client
    that lets the backlog fill up is closed (4008) and resumes with `since`.
    Fan-out to thousands of connections then costs no task switch per frame.

    With a `raw` socket (serve.wsraw) a frame the socket takes at once is
    written ready-made, the event's frame encoded once for every
    connection; anything else (the socket pushing back, a frame queued
    behind one that waits) goes the ASGI way above, in order.
    """

    send: Callable[[str], Coroutine[Any, Any, None]]  # a coroutine: `send_now` steps it
    close: Callable[[int, str], Awaitable[None]]
    org_id: str
    families: frozenset[str] | None = None  # event families it may see; None: all
    chats: set[str] = field(default_factory=set)
    topics: set[str] = field(default_factory=set)  # Redis topics this connection is on
    position: Position = (0, 0)
    replaying: int = 0
    held: list[Frame] = field(default_factory=list)
    held_dropped: bool = False  # held events were dropped: replay again to cover them
    backlog: deque[tuple[str, int]] = field(default_factory=deque)
    closed: bool = False
    last_seq: int = 0  # the last event handed to the socket: where to resume
    writer: asyncio.Task[None] | None = None
    raw: RawSocket | None = None

    @property
    def busy(self) -> bool:
        return self.writer is not None and not self.writer.done()

    def offer(self, frame: Frame) -> None:
        if self.closed:
            return
        if self.replaying:
            if len(self.held) >= QUEUE_LIMIT:
                # They are in Postgres: the replay reads on past them instead.
                self.held.clear()
                self.held_dropped = True
            self.held.append(frame)
            return
        self.push(frame)

    def offer_all(self, frames: list[Frame]) -> None:
        """`offer` each; what goes straight to the raw socket leaves in one write."""
        if self.raw is None or len(frames) == 1:
            for frame in frames:
                self.offer(frame)
            return
        self.raw.cork()
        try:
            for frame in frames:
                self.offer(frame)
        finally:
            try:
                self.raw.uncork()
            except Exception:  # the socket is gone; the reader side notices
                self.closed = True

    def push(self, frame: Frame) -> None:
        if (self.families is not None and frame.family is not None
                and frame.family not in self.families):
            return  # data this caller may not read
        seq = 0
        if frame.position is not None:
            if frame.position <= self.position:
                return
            self.position = frame.position
            seq = frame.position[1]
        self.send_now(frame.text, seq, frame.wire)

    def send_now(self, text: str, seq: int = 0, wire: bytes = b"") -> None:
        """Send `text` after everything before it (events, acks, errors);
        `wire` is its encoded frame when the caller has it."""
        if self.closed:
            return
        if self.raw is not None and not self.busy and self.raw.writable():
            try:
                self.raw.write(wire or text_frame(text.encode()))
            except Exception:  # the socket is gone; the reader side notices
                self.closed = True
                return
            self._sent(seq)
            return
        if self.busy:
            if len(self.backlog) >= QUEUE_LIMIT:
                self.overflow()
            else:
                self.backlog.append((text, seq))
            return
        coro = self.send(text)
        try:
            blocked = coro.send(None)  # runs until the send completes or must wait
        except StopIteration:
            self._sent(seq)
            return
        except Exception:  # the socket is gone; the reader side notices
            self.closed = True
            return
        self.writer = asyncio.create_task(self._finish(coro, blocked, seq))

    def _sent(self, seq: int) -> None:
        if seq:
            self.last_seq = seq

    async def _finish(self, coro: Any, blocked: Any, seq: int) -> None:
        """Drive a send that had to wait, then drain the backlog in order."""
        try:
            while True:
                if blocked is None:
                    await asyncio.sleep(0)
                else:
                    blocked._asyncio_future_blocking = False
                    await asyncio.wait([blocked])
                try:
                    blocked = coro.send(None)
                except StopIteration:
                    break
            self._sent(seq)
            while self.backlog and not self.closed:
                text, seq = self.backlog.popleft()
                await self.send(text)
                self._sent(seq)
        except Exception:
            self.closed = True

    def overflow(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.backlog.clear()
        asyncio.ensure_future(self.shut(Close.SLOW_CLIENT, "slow consumer"))

    async def shut(self, code: int, why: str) -> None:
        """Close after the frame in flight, naming the last event sent."""
        self.closed = True
        if self.writer is not None and not self.writer.done():
            with contextlib.suppress(Exception):
                await self.writer
        await self.close(code, f"{why}; resume with since={self.last_seq}")

    async def stop(self) -> None:
        self.closed = True
        self.backlog.clear()
        if self.writer is not None and not self.writer.done():
            self.writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.writer


class Hub:
    """The replica's event topics on one Redis pub/sub connection
    (storage.pubsub: read by one task, never silently replaced)."""

    def __init__(self, redis: Any, confirm_within: float = 10.0) -> None:
        self.redis = redis
        self.confirm_within = confirm_within
        self.listeners: dict[str, set[Live]] = {}
        self._confirm: dict[str, asyncio.Future[None]] = {}
        self._sub: Subscriber | None = None
        self._lock = asyncio.Lock()
        self.received = 0
        self.delivered = 0  # frames offered to connections
        self.connections = 0
        self.resets = 0  # connections to Redis lost (each closed every live connection)
        self._metrics = _HubMetrics.create()
        self._pushed = (0, 0.0)

    async def join(self, live: Live, topic: str) -> None:
        """Put `live` on `topic`; returns once Redis confirmed the subscription.
        Raises `Unavailable` when Redis does not (the connection is then reset)."""
        async with self._lock:
            listeners = self.listeners.get(topic)
            if listeners is None:
                confirmed = asyncio.get_running_loop().create_future()
                try:
                    sub = await self._subscriber()
                    self._confirm[topic] = confirmed
                    await sub.subscribe(topic)
                except (Lost, OSError, RedisError) as exc:
                    if self._confirm.get(topic) is confirmed:
                        del self._confirm[topic]
                    raise Unavailable("the event stream is unavailable; subscribe again",
                                      retry_after=1) from exc
                listeners = self.listeners[topic] = set()
            else:
                confirmed = self._confirm.get(topic) or _done()
            listeners.add(live)
            live.topics.add(topic)
        try:
            await asyncio.wait_for(asyncio.shield(confirmed), self.confirm_within)
        except (TimeoutError, ConnectionError) as exc:
            if not confirmed.done() and self._sub is not None:
                # Redis took the command and never answered: the line is dead.
                self._sub.fail(Lost(f"no subscribe confirmation in {self.confirm_within} s"))
            await self.leave(live, topic)
            raise Unavailable("the event stream is unavailable; subscribe again",
                              retry_after=1) from exc

    async def _subscriber(self) -> Subscriber:
        if self._sub is None or not self._sub.alive:
            self._sub = await Subscriber.open(self.redis, self._message, self._lost)
        return self._sub

    async def leave(self, live: Live, topic: str | None = None) -> None:
        async with self._lock:
            for name in [topic] if topic else list(live.topics):
                listeners = self.listeners.get(name)
                live.topics.discard(name)
                if listeners is None:
                    continue
                listeners.discard(live)
                if not listeners:
                    del self.listeners[name]
                    self._confirm.pop(name, None)
                    if self._sub is not None and self._sub.alive:
                        with contextlib.suppress(Lost):
                            await self._sub.unsubscribe(name)

    def _message(self, kind: str, channel: bytes, data: Any) -> None:
        topic = channel.decode()
        if kind == "subscribe":
            future = self._confirm.get(topic)
            if future is not None and not future.done():
                future.set_result(None)
            return
        if kind != "message":
            return
        started = time.perf_counter()
        frames = parse_many(data)
        if not frames:
            return
        self.received += len(frames)
        listeners = tuple(self.listeners.get(topic, ()))
        for live in listeners:
            live.offer_all(frames)
        self.delivered += len(listeners) * len(frames)
        TIMINGS.observe("hub", time.perf_counter() - started, len(frames))
        self._push_metrics()

    def _push_metrics(self) -> None:
        """At most once a second, to the Ray dashboard (when running in Ray)."""
        now = time.monotonic()
        delivered, at = self._pushed
        if self._metrics is None or now - at < 1.0:
            return
        self._metrics.frames.inc(self.delivered - delivered)
        self._metrics.connections.set(self.connections)
        self._pushed = (self.delivered, now)

    def _lost(self, exc: Exception) -> None:
        """Events published while we were cut off are lost to pub/sub: every
        connection is closed (1012) so that its client resumes with `since`;
        the next subscribe opens a new connection."""
        self.resets += 1
        everyone = {live for group in self.listeners.values() for live in group}
        self.listeners.clear()
        for future in self._confirm.values():
            if not future.done():
                future.set_exception(ConnectionError("pub/sub connection lost"))
                future.exception()  # retrieved: a subscribe waiting on it is told anyway
        self._confirm.clear()
        for live in everyone:
            live.topics.clear()
            asyncio.ensure_future(live.shut(Close.RESTARTING, "event stream restarting"))

    async def close(self) -> None:
        if self._sub is not None:
            await self._sub.close()


@dataclass
class _HubMetrics:
    frames: Any
    connections: Any

    @classmethod
    def create(cls) -> _HubMetrics | None:
        import ray
        from ray.util import metrics

        if not ray.is_initialized():
            return None
        return cls(metrics.Counter("bidi_ws_frames_total", "event frames sent to WebSockets"),
                   metrics.Gauge("bidi_ws_connections", "open WebSockets on this replica"))


def _done() -> asyncio.Future[None]:
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    future.set_result(None)
    return future

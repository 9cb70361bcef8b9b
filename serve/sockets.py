"""What the team's WebSocket (serve.routers.ws) and a web chat visitor's
(serve.routers.webchat_ws) share: the gate every client frame passes
(pace, size, shape), the read loop, `since` and the replay of committed
events before the live ones, and the replica's hub."""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import msgspec
from fastapi import WebSocket, WebSocketDisconnect

from core.errors import Invalid, RateLimited
from core.pacing import Pace
from serve.app import Runtime
from serve.errors import Close
from serve.hub import QUEUE_LIMIT, Hub, Live
from serve.replica import kept
from storage import events

REPLAY_BATCH = 1000


class Closing(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


def since_of(frame: dict[str, Any]) -> int | None:
    """A subscribe frame's `since` (an event seq), checked."""
    since = frame.get("since")
    if since is not None and (not isinstance(since, int) or isinstance(since, bool)
                              or since < 0):
        raise Invalid("since is a non-negative integer (an event seq)")
    return since


async def joined_with_replay(live: Live, join: Callable[[], Awaitable[None]],
                             start: events.Position | None,
                             replay: Callable[[events.Position], Awaitable[None]]) -> None:
    """Join the live topics, then replay from `start` (if any) what was
    committed before: live events arriving meanwhile are held and sent after
    the replay, only those past what it sent; if more came than can be held,
    the replay reads on from Postgres where it stopped."""
    live.replaying += 1
    try:
        await join()
        if start is not None:
            await replay(start)
            while live.held_dropped and not live.closed:
                live.held_dropped = False  # live ones came faster: read on
                live.held.clear()
                await replay(live.position)
    finally:
        live.replaying -= 1
        if not live.replaying:
            held, live.held = live.held, []
            for item in held:
                live.push(item)


async def replay_into(live: Live, runtime: Runtime, org_id: str, start: events.Position,
                      chat_ids: list[str] | None, families: list[str] | None, *,
                      user_id: str | None = None,
                      skip: Callable[[events.Event], bool] | None = None,
                      most: int | None = None) -> None:
    """The org's committed events after `start` (of `chat_ids`, None: all;
    of `families`, None: all) onto `live`, in commit order, at the client's
    pace; `skip` leaves some out, `most` caps how many are read."""
    cursor, read = start, 0
    while most is None or read < most:
        async with runtime.db.tenant_tx(org_id, user_id) as conn:
            batch = await events.read_tenant(conn, cursor, REPLAY_BATCH, chat_ids, families)
        for event in batch:
            if skip is not None and skip(event):
                continue
            if event.position > live.position:
                live.position = event.position
            if len(live.backlog) >= QUEUE_LIMIT // 2 and live.writer is not None:
                # At the client's pace: the writer ends when the backlog is sent.
                await asyncio.wait([live.writer])
            if live.closed:
                return
            live.send_now(event.frame.decode(), event.seq)
        read += len(batch)
        if len(batch) < REPLAY_BATCH:
            return
        cursor = batch[-1].position


class FrameGate:
    """What every frame a client sends passes first (the team's socket and a
    web chat visitor's): its pace (past it an error frame `rate_limited`; so
    many refusals in a row close the socket 4029), its size, and its shape
    (a JSON object)."""

    def __init__(self, per_second: float, burst: float, refused_max: int,
                 max_bytes: int) -> None:
        self.pace = Pace(per_second, burst)
        self.refused = 0
        self.refused_max = refused_max
        self.max_bytes = max_bytes

    def read(self, text: str) -> dict[str, Any]:
        wait = self.pace.take()
        if wait:
            self.refused += 1
            if self.refused > self.refused_max:
                raise Closing(Close.TOO_MANY_FRAMES, "too many frames")
            raise RateLimited("too many frames; slow down", retry_after=wait)
        self.refused = 0
        if len(text) > self.max_bytes:
            raise Invalid(f"frames are at most {self.max_bytes} bytes")
        try:
            frame = msgspec.json.decode(text)
        except msgspec.DecodeError:
            raise Invalid("a frame is a JSON object") from None
        if not isinstance(frame, dict):
            raise Invalid("a frame is a JSON object")
        return frame


def hub_of(websocket: WebSocket) -> Hub:
    state = websocket.app.state
    return kept(state, "hub", lambda: Hub(state.runtime.redis))


class FrameReader(Protocol):
    live: Live

    async def handle(self, text: str) -> None: ...

    async def _close(self, code: int, reason: str) -> None: ...


async def read_frames(websocket: WebSocket, socket: FrameReader) -> None:
    """Each frame the client sends to `socket.handle`, until the client goes
    or the socket closes (a `Closing` raised on the way closes it with its
    code); shared by the team's and the web chat visitors' sockets."""
    try:
        while not socket.live.closed:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                text = (message.get("bytes") or b"").decode("utf-8", errors="replace")
            await socket.handle(text)
    except Closing as exc:
        await socket._close(exc.code, exc.reason)
    except (WebSocketDisconnect, RuntimeError):
        pass

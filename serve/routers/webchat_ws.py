"""The web chat visitor's WebSocket: `/v1/webchat/ws?token=<visitor token>`.

Client frames: `{"type":"subscribe","since"?:<seq>}` (the visitor's chat:
the events after `since` from Postgres, then live), `{"type":"typing"}`,
`{"type":"ping"}`. Server frames: `{"type":"subscribed","position"}`,
`{"type":"message","seq","message":{id, content, is_incoming, sender_type,
status, created_at}}`, `{"type":"status","seq","message_id","status"}`,
`{"type":"typing"}` (someone of the team types), `{"type":"pong"}` and the
team WebSocket's error frames. Close codes as there: 4401 bad or expired
token, 4403 an origin the integration does not allow, 4008 too slow, 4029
far too many frames, 1012 the event stream restarted; resume with `since`.

It rides the team WebSocket's machinery (serve.hub): one `Live` stream on
the chat's topic, whose position drops what a replay already sent, so a
resume neither skips nor repeats. What a visitor may see is decided per
frame on the way out (`visitor_frame`): the chat's message events become
visitor frames, and nothing else passes: no agent draft until approved, no
metadata, no event of another family. The integration (its origins) comes
from the replica's cache when the socket opens, never per frame."""
from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import msgspec
from fastapi import APIRouter, WebSocket

from actors.relay import chat_topic
from channels import webchat
from channels.webchat import VisitorClaims
from core.errors import BidiError, Invalid, RateLimited
from core.pacing import Pace
from serve.app import Runtime
from serve.errors import Close
from serve.hub import Live
from serve.routers.webchat import integration_of, token_secret
from serve.sockets import (
    Closing,
    FrameGate,
    hub_of,
    joined_with_replay,
    read_frames,
    replay_into,
    since_of,
)
from storage import events

router = APIRouter(tags=["webchat"])

MAX_FRAME = 4096
FRAMES_PER_SECOND, FRAME_BURST = 5.0, 30.0
REFUSED_IN_A_ROW = 50
TYPING_EVERY = 2.0  # seconds between two typing frames relayed to the team
REPLAY_MAX = 10_000
REPLAYS_PER_MINUTE = 10
FAMILIES = frozenset({"message"})
HIDDEN = frozenset({"draft", "rejected"})

_encode = msgspec.json.Encoder().encode


def _text(frame: dict[str, Any]) -> str:
    return _encode(frame).decode()


def _message(payload: dict[str, Any], **override: Any) -> dict[str, Any]:
    shown = {"id": payload.get("id"), "content": payload.get("content"),
             "is_incoming": bool(payload.get("is_incoming")),
             "sender_type": payload.get("sender_type"), "status": payload.get("status"),
             "created_at": payload.get("created_at")}
    if shown["is_incoming"] and payload.get("external_id"):
        # The visitor's own message: the `client_id` it was sent with, so the
        # widget replaces its pending copy even when this frame beats the 202.
        shown["client_id"] = payload["external_id"]
    return {**shown, **override}


def visitor_frame(text: str, chat_id: str) -> str | None:
    """What the visitor sees of a frame bound for their socket (None: nothing)."""
    try:
        data = msgspec.json.decode(text)
    except msgspec.DecodeError:
        return None
    if not isinstance(data, dict):
        return None
    kind = data.get("type")
    if kind == "typing":
        if data.get("visitor") or data.get("chat_id") != chat_id:
            return None  # a visitor's own, echoed back
        return _text({"type": "typing"})
    if kind != "event":
        return text  # our own replies: subscribed, pong, errors
    if data.get("chat_id") != chat_id:
        return None
    event, seq = data.get("event_type"), data.get("seq")
    payload = data.get("data") or {}
    if event in ("message.received", "message.created"):
        if payload.get("status") in HIDDEN:
            return None
        return _text({"type": "message", "seq": seq, "message": _message(payload)})
    if event == "message.draft.approved":  # an agent's reply, now on its way
        return _text({"type": "message", "seq": seq, "message": _message(
            payload, is_incoming=False, sender_type="agent", status="pending",
            created_at=data.get("created_at"))})
    if event == "message.status.updated":
        return _text({"type": "status", "seq": seq, "message_id": payload.get("id"),
                      "status": payload.get("status")})
    return None


def _error(exc: BidiError) -> str:
    return _text({"type": "error", "error": {"code": exc.code, "message": exc.message}})


class VisitorSocket:
    """One visitor connection: its chat's live stream and its frame handlers."""

    def __init__(self, websocket: WebSocket, runtime: Runtime, claims: VisitorClaims) -> None:
        self.ws = websocket
        self.runtime = runtime
        self.claims = claims
        self.hub = hub_of(websocket)
        self.live = Live(send=self._send, close=self._close, org_id=claims.org_id,
                         families=FAMILIES)
        self.live.chats = {claims.chat_id}
        self.frames = FrameGate(FRAMES_PER_SECOND, FRAME_BURST, REFUSED_IN_A_ROW, MAX_FRAME)
        self.replays = Pace(REPLAYS_PER_MINUTE / 60, REPLAYS_PER_MINUTE)
        self.typing_at = 0.0
        self.subscribed = False
        delay = max(0.0, claims.expires_at - time.time())
        self._expiry = asyncio.get_running_loop().call_later(delay, self._expired)

    async def _send(self, text: str) -> None:
        shown = visitor_frame(text, self.claims.chat_id)
        if shown is not None:
            await self.ws.send_text(shown)

    async def _close(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close(code, reason)

    def _expired(self) -> None:
        if not self.live.closed:
            asyncio.ensure_future(self.live.shut(Close.BAD_TOKEN, "visitor session expired"))

    async def subscribe(self, frame: dict[str, Any]) -> None:
        if self.subscribed:
            raise Invalid("already subscribed; reconnect to resume from another seq")
        since = since_of(frame)
        start = None
        if since is not None:
            wait = self.replays.take()
            if wait:
                raise RateLimited("too many replays on this connection", retry_after=wait)
            async with self.runtime.db.tenant_tx(self.claims.org_id) as conn:
                start = await events.position_of(conn, since)
            if start is None:
                raise Invalid(f"since={since} is not an event of this chat")

        async def join() -> None:
            await self.hub.join(self.live, chat_topic(self.claims.chat_id))
            self.subscribed = True

        await joined_with_replay(self.live, join, start, lambda at: replay_into(
            self.live, self.runtime, self.claims.org_id, at, [self.claims.chat_id],
            sorted(FAMILIES), most=REPLAY_MAX))
        self.live.send_now(_text({"type": "subscribed", "position": self.live.position[1]}))

    async def typing(self, _: dict[str, Any]) -> None:
        now = time.monotonic()
        if now - self.typing_at < TYPING_EVERY:
            return  # the team was told a moment ago
        self.typing_at = now
        await self.runtime.redis.publish(chat_topic(self.claims.chat_id), _text({
            "type": "typing", "chat_id": self.claims.chat_id, "user_id": None,
            "visitor": True, "organization_id": self.claims.org_id}))

    async def handle(self, text: str) -> None:
        try:
            frame = self.frames.read(text)
            kind = frame.get("type")
            if kind == "ping":
                self.live.send_now(_text({"type": "pong"}))
            elif kind == "subscribe":
                await self.subscribe(frame)
            elif kind == "typing":
                await self.typing(frame)
            else:
                raise Invalid(f"unknown frame type {kind!r}")
        except Closing:
            raise
        except BidiError as exc:
            self.live.send_now(_error(exc))

    async def release(self) -> None:
        self._expiry.cancel()
        await self.hub.leave(self.live)
        await self.live.stop()


async def _visitor(websocket: WebSocket) -> VisitorClaims | None:
    """The connection's visitor, or None after closing it (4401 / 4403)."""
    state = websocket.app.state
    try:
        claims = webchat.decode_token(token_secret(state),
                                      websocket.query_params.get("token", ""))
        integration = await integration_of(state, claims.integration_id)
    except BidiError as exc:
        await websocket.close(Close.BAD_TOKEN, exc.message[:120])
        return None
    if not webchat.origin_allowed(integration, websocket.headers.get("origin")):
        await websocket.close(Close.FORBIDDEN_TOPIC, "origin not allowed")
        return None
    return claims


@router.websocket("/v1/webchat/ws")
async def visitor_websocket(websocket: WebSocket) -> None:
    runtime: Runtime = websocket.app.state.runtime
    await websocket.accept()
    claims = await _visitor(websocket)
    if claims is None:
        return
    socket = VisitorSocket(websocket, runtime, claims)
    socket.hub.connections += 1
    try:
        await read_frames(websocket, socket)
    finally:
        socket.hub.connections -= 1
        await socket.release()

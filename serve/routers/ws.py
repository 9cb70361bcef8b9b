"""WebSocket live chat: `/v1/ws?token=<access JWT>`.

Client frames (JSON objects with a `type`; an optional `ref` is echoed back):
- `{"type":"subscribe","topics":["org"|"chat:<id>"|"user"],"since":<seq>?}`
  -> `{"type":"subscribed","topics":[...],"position":<seq>}`; with `since`, the
  events after that seq are replayed from Postgres first, then live ones.
- `{"type":"unsubscribe","topics":[...]}`
- `{"type":"message.send","chat_id":...,"content":...,"idempotency_key"?}`
  -> `{"type":"message.ack","message":{...}}`
- `{"type":"typing","chat_id":...}` (ephemeral: to the chat's subscribers, and
  to a Telegram contact as sendChatAction, at most every 4 s)
- `{"type":"mark_read","chat_id":...}` -> `{"type":"read.ack",...}` and `chat.read`
- `{"type":"draft.approve","message_id":...,"content"?}` / `{"type":"draft.reject",
  "message_id":...}` an agent's draft decided -> `{"type":"draft.ack","message":{...}}`
- `{"type":"auth","token":...}` a fresh access token of the same user and org
  (from `/v1/auth/refresh`) before the current one expires -> `{"type":"authed"}`
- `{"type":"ping"}` -> `{"type":"pong"}`

A connection is the session that opened it: it closes (4401) when the access
token expires without an `auth` frame, and at once when the member is removed
or their role changes (`storage.revocations`). It only carries events whose
data its role may read (`core.rbac.event_permission`). Frames are paced per
connection, `message.send` shares the REST route's rate limit, and a replay
(`since`) covers at most `REPLAY_MAX` events (page the rest from
`GET /v1/events`), a few times a minute.

Server frames: `{"type":"event","seq":N,"event_type":...,"data":{...},...}`
in commit order; `{"type":"error","error":{"code","message"}}` for a bad frame
(the connection stays open). Close codes: 4401 bad, expired or revoked token,
4403 a topic of another organization, 4008 too slow (the backlog is bounded;
resume with `since`), 4029 far too many frames, 1012 the event stream
restarted (resume with `since`).
"""
from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Set as AbstractSet
from typing import Any

import msgspec
from fastapi import APIRouter, WebSocket

from actors.refs import ChatRef
from actors.relay import chat_topic, org_topic, user_topic
from core.errors import BidiError, Forbidden, Invalid, RateLimited, Unauthorized
from core.pacing import Pace
from core.rbac import event_families, permissions_of
from core.security import AccessClaims
from serve.app import Runtime
from serve.auth import Principal, session_claims
from serve.errors import Close
from serve.hub import Live
from serve.routers.chats import send
from serve.routers.drafts import decide
from serve.sockets import (
    Closing,
    FrameGate,
    hub_of,
    joined_with_replay,
    read_frames,
    replay_into,
    since_of,
)
from serve.wsraw import install, raw_socket
from storage import events, identity, messages
from storage.chats import owned as owned_chats

router = APIRouter(tags=["websocket"])

# Before Serve starts its uvicorn server (after building the app): its
# WebSockets then offer ready-made frame writes to the hub (serve.wsraw).
install()

REPLAY_MAX = 10_000  # events one subscribe may replay
MAX_FRAME = 128 * 1024
FRAMES_PER_SECOND, FRAME_BURST = 20.0, 100.0
REFUSED_IN_A_ROW = 200  # paced-out frames before the connection is closed
REPLAYS_PER_MINUTE = 10
SEND_ROUTE = "/v1/chats/{chat_id}/messages"  # message.send shares its rate limit


def _encode(frame: dict[str, Any]) -> str:
    return msgspec.json.encode(frame).decode()


def _error(code: str, message: str, ref: Any = None) -> str:
    frame: dict[str, Any] = {"type": "error", "error": {"code": code, "message": message}}
    if ref is not None:
        frame["ref"] = ref
    return _encode(frame)


class Session:
    """One connection: its principal, its live stream, its frame handlers."""

    def __init__(self, websocket: WebSocket, runtime: Runtime, principal: Principal,
                 expires_at: float) -> None:
        self.ws = websocket
        self.runtime = runtime
        self.principal = principal
        self.hub = hub_of(websocket)
        self.live = Live(send=websocket.send_text, close=self._close,
                         org_id=principal.org_id, families=_families(principal),
                         raw=raw_socket(websocket.scope))
        self.own_chats: set[str] = set()  # chats seen to be this org's (they stay so)
        self.frames = FrameGate(FRAMES_PER_SECOND, FRAME_BURST, REFUSED_IN_A_ROW, MAX_FRAME)
        self.replays = Pace(REPLAYS_PER_MINUTE / 60, REPLAYS_PER_MINUTE)
        self._expiry: asyncio.TimerHandle | None = None
        self._unwatch = None
        if runtime.revocations is not None and principal.user_id is not None:
            self._unwatch = runtime.revocations.watch(principal.org_id, principal.user_id,
                                                      self._revoked)
        self._expire_at(expires_at)

    async def _close(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close(code, reason)

    def _end(self, code: int, why: str) -> None:
        """Close from a callback: after the frame in flight, naming where to resume."""
        if not self.live.closed:
            asyncio.ensure_future(self.live.shut(code, why))

    def _expire_at(self, expires_at: float) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
        loop = asyncio.get_running_loop()
        delay = max(0.0, expires_at - time.time())
        self._expiry = loop.call_later(delay, self._end, Close.BAD_TOKEN, "access token expired")

    def _revoked(self, at: float, reason: str) -> None:
        if self.principal.issued_at <= at:
            self._end(Close.BAD_TOKEN, f"session revoked ({reason})"[:80])

    def release(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
        if self._unwatch is not None:
            self._unwatch()

    def _uuid(self, value: Any, name: str) -> str:
        try:
            return str(uuid.UUID(str(value)))
        except ValueError:
            raise Invalid(f"{name} is not a UUID") from None

    def _need(self, permission: str) -> None:
        if permission not in self.principal.permissions:
            raise Forbidden(f"this needs the {permission!r} permission")

    # -- topics -----------------------------------------------------------

    async def _resolve(self, topics: Any) -> tuple[list[str], set[str]]:
        """Redis topics for the client's names, each checked against the caller's org."""
        if not isinstance(topics, list) or not topics or len(topics) > 100:
            raise Invalid("topics must be a non-empty list (at most 100)")
        org = self.principal.org_id
        wanted: list[str] = []
        chats: set[str] = set()
        for name in topics:
            if not isinstance(name, str):
                raise Invalid("a topic is a string")
            kind, _, ident = name.partition(":")
            if kind == "org" and ident in ("", org):
                wanted.append(org_topic(org))
            elif kind == "user" and ident in ("", self.principal.user_id or "-"):
                if self.principal.user_id is None:
                    raise Closing(Close.FORBIDDEN_TOPIC, "no user to notify")
                wanted.append(user_topic(self.principal.user_id))
            elif kind == "chat" and ident:
                try:
                    chats.add(str(uuid.UUID(ident)))
                except ValueError:
                    raise Closing(Close.FORBIDDEN_TOPIC, f"forbidden topic {name!r}") from None
            else:
                raise Closing(Close.FORBIDDEN_TOPIC, f"forbidden topic {name!r}")
        if chats:
            if not await self._own(chats):
                raise Closing(Close.FORBIDDEN_TOPIC,
                              "forbidden topic: no such chat in this organization")
            wanted.extend(chat_topic(c) for c in sorted(chats))
        return wanted, chats

    async def _own(self, chats: set[str]) -> bool:
        """Whether all of `chats` belong to the caller's org (RLS decides; asked once)."""
        unknown = chats - self.own_chats
        if unknown:
            async with self.runtime.db.tenant_tx(self.principal.org_id,
                                                 self.principal.user_id) as conn:
                self.own_chats |= await owned_chats(conn, unknown)
        return chats <= self.own_chats

    async def subscribe(self, frame: dict[str, Any]) -> None:
        self._need("chats:read")
        since = since_of(frame)
        if since is not None:
            wait = self.replays.take()
            if wait:
                raise RateLimited("too many replays on this connection", retry_after=wait)
        topics, chats = await self._resolve(frame.get("topics"))
        start = None
        if since is not None:  # checked before joining: a refused replay joins nothing
            async with self.runtime.db.tenant_tx(self.principal.org_id,
                                                 self.principal.user_id) as conn:
                start = await events.position_of(conn, since)
                if start is None:
                    raise Invalid(f"since={since} is not an event of this organization")
                await self._bounded(conn, start, topics, chats)
        new = [t for t in topics if t not in self.live.topics]
        before_org = org_topic(self.principal.org_id) in self.live.topics
        before_chats = set(self.live.chats)
        joined_at = [self.live.position]  # where this connection was once joined

        async def join() -> None:
            for topic in new:
                await self.hub.join(self.live, topic)
            self.live.chats |= chats
            joined_at[0] = self.live.position

        await joined_with_replay(self.live, join, start, lambda at: self._replay(
            at, topics, joined_at[0], before_org, before_chats))
        self.live.send_now(_encode({"type": "subscribed", "topics": frame.get("topics"),
                                    "position": self.live.position[1], "ref": frame.get("ref")}))

    def _scope(self, topics: list[str],
               chats: AbstractSet[str] = frozenset()) -> list[str] | None:
        """The chats a replay of `topics` covers (None: the whole org)."""
        if org_topic(self.principal.org_id) in topics:
            return None
        return sorted(self.live.chats | chats)

    def _families(self) -> list[str] | None:
        return None if self.live.families is None else sorted(self.live.families)

    async def _bounded(self, conn: Any, start: events.Position, topics: list[str],
                       chats: set[str]) -> None:
        behind = await events.count_tenant(conn, start, REPLAY_MAX + 1,
                                           self._scope(topics, chats), self._families())
        if behind > REPLAY_MAX:
            raise Invalid(f"since is more than {REPLAY_MAX} events behind: page through"
                          " GET /v1/events, then subscribe from a recent seq",
                          field="since", details={"max_replay": REPLAY_MAX})

    async def _replay(self, start: events.Position, topics: list[str],
                      old_position: events.Position, before_org: bool,
                      before_chats: set[str]) -> None:
        """Events after `start` on `topics`, from Postgres, in commit order
        (skipping those this connection already had live before)."""
        chat_ids = self._scope(topics)
        families = self._families()

        def seen_live(event: events.Event) -> bool:  # sent live before this subscribe
            return event.position <= old_position and (before_org
                                                       or event.chat_id in before_chats)

        await replay_into(self.live, self.runtime, self.principal.org_id, start, chat_ids,
                          families, user_id=self.principal.user_id, skip=seen_live)

    async def unsubscribe(self, frame: dict[str, Any]) -> None:
        topics, chats = await self._resolve(frame.get("topics"))
        for topic in topics:
            await self.hub.leave(self.live, topic)
        self.live.chats -= chats
        self.live.send_now(_encode({"type": "unsubscribed", "topics": frame.get("topics"),
                                    "ref": frame.get("ref")}))

    # -- actions ----------------------------------------------------------

    async def message_send(self, frame: dict[str, Any]) -> None:
        self._need("chats:write")
        chat_id = self._uuid(frame.get("chat_id"), "chat_id")
        content = frame.get("content")
        if not isinstance(content, str) or not content.strip() or len(content) > 65_536 \
                or "\x00" in content:
            raise Invalid("content must be non-empty text (at most 65,536 characters)")
        key = frame.get("idempotency_key")
        if key is not None and (not isinstance(key, str) or not 0 < len(key) <= 255
                                or "\x00" in key):
            raise Invalid("idempotency_key must be a string of 1-255 characters")
        decision = await self.runtime.bucket.take(
            f"rate_limit:api:{self.principal.rate_key}:POST:{SEND_ROUTE}")
        if not decision.allowed:
            raise RateLimited("too many messages", retry_after=decision.retry_after)
        reply_to = None
        if frame.get("reply_to") is not None:
            reply_to = uuid.UUID(self._uuid(frame.get("reply_to"), "reply_to"))
        message = await send(self.runtime.actors, self.principal, chat_id, content, key,
                             reply_to)
        self.live.send_now(_encode({"type": "message.ack", "ref": frame.get("ref"),
                                    "message": message}))

    async def typing(self, frame: dict[str, Any]) -> None:
        self._need("chats:write")
        chat_id = self._uuid(frame.get("chat_id"), "chat_id")
        if not await self._own({chat_id}):
            raise Invalid("no such chat")
        await self.runtime.redis.publish(chat_topic(chat_id), _encode({
            "type": "typing", "chat_id": chat_id, "user_id": self.principal.user_id,
            "organization_id": self.principal.org_id}))
        # The contact sees it too, on channels that show it (Telegram's chat action).
        await ChatRef(self.runtime.actors, self.principal.org_id, chat_id).typing(
            self.principal.user_id)

    async def mark_read(self, frame: dict[str, Any]) -> None:
        self._need("chats:write")
        chat_id = self._uuid(frame.get("chat_id"), "chat_id")
        if not await self._own({chat_id}):  # an unknown id must not wake an actor
            raise Invalid("no such chat")
        chat = ChatRef(self.runtime.actors, self.principal.org_id, chat_id)
        result = await chat.mark_read(self.principal.user_id)
        self.live.send_now(_encode({"type": "read.ack", "ref": frame.get("ref"), **result}))

    async def draft_decision(self, frame: dict[str, Any]) -> None:
        """`draft.approve` (with `content`: edited) or `draft.reject` of an
        agent's draft, as the REST routes do it."""
        self._need("chats:write")
        message_id = self._uuid(frame.get("message_id"), "message_id")
        approve = frame.get("type") == "draft.approve"
        content = frame.get("content") if approve else None
        if content is not None and (not isinstance(content, str) or not content.strip()
                                    or len(content) > 20_000 or "\x00" in content):
            raise Invalid("content must be non-empty text (at most 20,000 characters)")
        async with self.runtime.db.tenant_tx(self.principal.org_id,
                                             self.principal.user_id) as conn:
            chat_id = await messages.chat_of(conn, message_id)
        decided = await decide(self.runtime.actors, self.principal, chat_id, message_id,
                               approve=approve, content=content)
        self.live.send_now(_encode({"type": "draft.ack", "ref": frame.get("ref"),
                                    "message": decided}))

    async def auth(self, frame: dict[str, Any]) -> None:
        token = frame.get("token")
        if not isinstance(token, str) or not token:
            raise Invalid("token is an access token")
        claims = await verify(self.runtime, token)
        if (claims.user_id, claims.org_id) != (self.principal.user_id, self.principal.org_id):
            raise Forbidden("the token is of another user or organization")
        self.principal = _principal(claims)
        self.live.families = _families(self.principal)
        self._expire_at(claims.expires_at)
        self.live.send_now(_encode({"type": "authed", "ref": frame.get("ref"),
                                    "expires_at": claims.expires_at}))

    async def handle(self, text: str) -> None:
        ref = None
        try:
            frame = self.frames.read(text)
            ref = frame.get("ref")
            kind = frame.get("type")
            handler = HANDLERS.get(kind) if isinstance(kind, str) else None
            if kind == "ping":
                self.live.send_now(_encode({"type": "pong", "ref": ref}))
                return
            if handler is None:
                raise Invalid(f"unknown frame type {kind!r}")
            await handler(self, frame)
        except Closing:
            raise
        except BidiError as exc:
            self.live.send_now(_error(exc.code, exc.message, ref))


HANDLERS = {
    "subscribe": Session.subscribe,
    "unsubscribe": Session.unsubscribe,
    "message.send": Session.message_send,
    "typing": Session.typing,
    "mark_read": Session.mark_read,
    "draft.approve": Session.draft_decision,
    "draft.reject": Session.draft_decision,
    "auth": Session.auth,
}


def _principal(claims: AccessClaims) -> Principal:
    return Principal(claims.org_id, claims.user_id, claims.role, permissions_of(claims.role),
                     issued_at=claims.issued_at)


def _families(principal: Principal) -> frozenset[str] | None:
    families = event_families(principal.permissions)
    return None if families is None else frozenset(families)


async def verify(runtime: Runtime, token: str) -> AccessClaims:
    """The claims of a token still good for a connection: valid, not revoked,
    and its user still a member with the role it names."""
    claims = session_claims(runtime, token)
    async with runtime.db.system_tx() as conn:
        role = await identity.membership(conn, uuid.UUID(claims.user_id),
                                         uuid.UUID(claims.org_id))
    if role != claims.role:
        raise Unauthorized("no longer a member with this role; refresh the token")
    return claims



@router.websocket("/v1/ws")
async def websocket_endpoint(websocket: WebSocket) -> None:
    runtime: Runtime = websocket.app.state.runtime
    await websocket.accept()
    token = websocket.query_params.get("token", "")
    try:
        claims = await verify(runtime, token)
    except BidiError as exc:
        await websocket.close(Close.BAD_TOKEN, exc.message[:120])
        return
    session = Session(websocket, runtime, _principal(claims), claims.expires_at)
    session.hub.connections += 1
    try:
        await read_frames(websocket, session)
    finally:
        session.release()
        session.hub.connections -= 1
        await session.hub.leave(session.live)
        await session.live.stop()

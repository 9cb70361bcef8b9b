"""Helpers for the messaging tests: an API-channel integration, signed
inbound posts, and WebSocket clients."""
from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import websockets

from channels import signing
from tests.conftest import Account


@dataclass(frozen=True)
class Inbox:
    id: str
    secret: str

    @property
    def path(self) -> str:
        return f"/v1/channels/api/{self.id}/messages"


async def make_inbox(api: httpx.AsyncClient, account: Account,
                     callback_url: str | None = None) -> Inbox:
    body: dict[str, Any] = {"type": "api", "name": "Inbox"}
    if callback_url:
        body["callback_url"] = callback_url
    resp = await api.post("/v1/integrations", json=body, headers=account.headers)
    assert resp.status_code == 201, resp.text
    data = resp.json()
    assert data["secret"].startswith("whsec_") and "secrets" not in data["config"]
    return Inbox(data["id"], data["secret"])


def message(thread: str = "t-1", external: str | None = None, text: str = "hello",
            sender: str = "s-1", **extra: Any) -> dict[str, Any]:
    return {"external_message_id": external or uuid.uuid4().hex, "thread_id": thread,
            "sender": {"id": sender, "name": "Grace Hopper", **extra}, "text": text}


async def post_inbound(api: httpx.AsyncClient, inbox: Inbox, body: dict[str, Any] | bytes,
                       secret: str | None = None) -> httpx.Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = signing.headers(secret or inbox.secret, "msg_" + uuid.uuid4().hex, raw)
    headers["content-type"] = "application/json"
    return await api.post(inbox.path, content=raw, headers=headers)


class Client:
    """A WebSocket client that collects frames in the background."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []
        self.closed: tuple[int | None, str] | None = None
        self._new = asyncio.Event()
        self._task = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, ws_url: str, token: str) -> Client:
        ws = await websockets.connect(f"{ws_url}?token={token}", max_queue=None,
                                      open_timeout=20)
        return cls(ws)

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                self.frames.append(json.loads(raw))
                self._new.set()
        except websockets.ConnectionClosed:
            pass
        self.closed = (self.ws.close_code, self.ws.close_reason or "")
        self._new.set()

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(frame))

    async def wait_for(self, predicate: Any, timeout: float = 20.0) -> dict[str, Any]:
        """The first frame (seen so far or to come) matching `predicate`."""
        async with asyncio.timeout(timeout):
            while True:
                for frame in self.frames:
                    if predicate(frame):
                        return frame
                if self.closed is not None:
                    raise AssertionError(f"closed {self.closed} before the frame came")
                self._new.clear()
                await self._new.wait()

    async def wait_count(self, predicate: Any, count: int,
                         timeout: float = 60.0) -> list[dict[str, Any]]:
        async with asyncio.timeout(timeout):
            while True:
                found = [f for f in self.frames if predicate(f)]
                if len(found) >= count or self.closed is not None:
                    return found
                self._new.clear()
                await self._new.wait()

    async def subscribe(self, topics: list[str], since: int | None = None) -> dict[str, Any]:
        ref = uuid.uuid4().hex
        frame: dict[str, Any] = {"type": "subscribe", "topics": topics, "ref": ref}
        if since is not None:
            frame["since"] = since
        await self.send(frame)
        return await self.wait_for(lambda f: f.get("ref") == ref)

    async def wait_closed(self, timeout: float = 20.0) -> tuple[int | None, str]:
        async with asyncio.timeout(timeout):
            await self._task
        assert self.closed is not None
        return self.closed

    async def close(self) -> None:
        await self.ws.close()
        await self._task

    def events(self, event_type: str | None = None) -> list[dict[str, Any]]:
        return [f for f in self.frames if f.get("type") == "event"
                and (event_type is None or f["event_type"] == event_type)]

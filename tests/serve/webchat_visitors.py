"""What the web chat tests share: a webchat integration, a visitor session, the
visitor's calls and WebSocket, and a team reply."""
from __future__ import annotations

import uuid
from typing import Any

import httpx
import websockets

from serve.stack import Stack
from tests.conftest import Account
from tests.serve.messaging import Client

ORIGIN = "https://shop.example"


OTHER = "https://evil.example"


async def make_webchat(api: httpx.AsyncClient, account: Account,
                       origins: list[str] | None = None,
                       verify: bool = False) -> dict[str, Any]:
    resp = await api.post("/v1/integrations", headers=account.headers, json={
        "type": "webchat", "name": "Website",
        "config": {"allowed_origins": origins or [ORIGIN], "identity_verification": verify}})
    assert resp.status_code == 201, resp.text
    return resp.json()  # type: ignore[no-any-return]


async def session(api: httpx.AsyncClient, integration_id: str, origin: str | None = ORIGIN,
                  **body: Any) -> httpx.Response:
    headers = {"Origin": origin} if origin else {}
    return await api.post(f"/v1/webchat/{integration_id}/sessions", json=body, headers=headers)


async def visitor(api: httpx.AsyncClient, integration_id: str, **body: Any) -> dict[str, Any]:
    resp = await session(api, integration_id, **body)
    assert resp.status_code == 201, resp.text
    return resp.json()  # type: ignore[no-any-return]


def auth(token: str, origin: str = ORIGIN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Origin": origin}


async def say(api: httpx.AsyncClient, token: str, content: str,
              client_id: str | None = None) -> httpx.Response:
    return await api.post("/v1/webchat/messages", headers=auth(token), json={
        "content": content, "client_id": client_id or uuid.uuid4().hex})


async def transcript(api: httpx.AsyncClient, token: str, **params: Any) -> dict[str, Any]:
    resp = await api.get("/v1/webchat/messages", headers=auth(token), params=params)
    assert resp.status_code == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]


def ws_url(stack: Stack) -> str:
    return stack.ws_url.replace("/v1/ws", "/v1/webchat/ws")


async def visitor_ws(stack: Stack, token: str, origin: str = ORIGIN) -> Client:
    ws = await websockets.connect(f"{ws_url(stack)}?token={token}", origin=origin,
                                  max_queue=None, open_timeout=20)
    return Client(ws)


async def talking(api: httpx.AsyncClient, owner: Account, stack: Stack,
                  first: str) -> tuple[dict[str, Any], Client]:
    """A visitor of a new web chat who has written `first`, and their
    WebSocket (not yet subscribed)."""
    chat = await make_webchat(api, owner)
    me = await visitor(api, chat["id"])
    assert (await say(api, me["token"], first)).status_code == 202
    return me, await visitor_ws(stack, me["token"])


async def subscribed(client: Client, since: int | None = None) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "subscribe"}
    if since is not None:
        frame["since"] = since
    await client.send(frame)
    return await client.wait_for(lambda f: f["type"] == "subscribed")


async def reply(api: httpx.AsyncClient, owner: Account, chat_id: str,
                content: str) -> dict[str, Any]:
    resp = await api.post(f"/v1/chats/{chat_id}/messages", headers=owner.headers,
                          json={"content": content})
    assert resp.status_code == 202, resp.text
    return resp.json()  # type: ignore[no-any-return]


def messages_of(client: Client) -> list[dict[str, Any]]:
    return [f for f in client.frames if f["type"] == "message"]

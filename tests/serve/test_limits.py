"""Request bodies past their route's cap are refused (413, the error envelope)
before they are read, through the real ingress; deeply nested JSON is a
client error, never a 500."""
from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlsplit

import httpx

from core.settings import Settings
from serve.limits import MAX_JSON_DEPTH, BodyLimit
from serve.routers.channels_api import MAX_BODY
from serve.stack import Stack
from tests.conftest import Account
from tests.serve.messaging import make_inbox, message, post_inbound

ANSWER_WITHIN = 10.0  # seconds; a server that waited for 20 MB would never answer


async def _raw(stack: Stack, head: str, body: bytes = b"", *,
               chunks: list[bytes] | None = None) -> tuple[int, dict[str, Any]]:
    """Send a request head and part of a body, never the rest; the status
    and JSON body of the answer, which must come while the body is unfinished."""
    url = urlsplit(stack.api_url)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    try:
        writer.write(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        for chunk in chunks or []:
            writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), ANSWER_WITHIN)
        headers = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), ANSWER_WITHIN)
        length = next(int(line.split(b":")[1]) for line in headers.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        payload = await asyncio.wait_for(reader.readexactly(length), ANSWER_WITHIN)
        return int(status_line.split()[1]), json.loads(payload)
    finally:
        writer.close()


def _head(path: str, length: int | None, extra: str = "") -> str:
    framing = (f"Content-Length: {length}" if length is not None
               else "Transfer-Encoding: chunked")
    return (f"POST {path} HTTP/1.1\nHost: bidi\nContent-Type: application/json\n"
            f"{extra}{framing}\n")


def _too_large(status: int, body: dict[str, Any], cap: int) -> None:
    assert status == 413, body
    assert body["error"]["code"] == "payload_too_large"
    assert body["error"]["details"] == {"limit": cap}


async def test_declared_20_mb_is_refused_before_the_body_is_sent(
        stack: Stack, settings: Settings) -> None:
    cap = settings.max_body_bytes
    for path in ("/v1/auth/register", "/v1/contacts"):  # neither authenticated
        status, body = await _raw(stack, _head(path, 20_000_000), b"{" * 65_536)
        _too_large(status, body, cap)


async def test_20_mb_sent_is_cut_off_long_before_its_end(
        stack: Stack, settings: Settings) -> None:
    url = urlsplit(stack.api_url)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    sent = 0

    async def push() -> None:
        nonlocal sent
        block = b"x" * 65_536
        while sent < 20_000_000:
            writer.write(block)
            await writer.drain()
            sent += len(block)

    writer.write(_head("/v1/auth/register", 20_000_000).replace("\n", "\r\n").encode()
                 + b"\r\n")
    pusher = asyncio.create_task(push())
    try:
        # The server answers and closes with most of the body unread; the
        # close can reset the connection before the client reads the 413.
        try:
            status_line = await asyncio.wait_for(reader.readline(), ANSWER_WITHIN)
            rest = await asyncio.wait_for(reader.read(2000), ANSWER_WITHIN)
            assert int(status_line.split()[1]) == 413, status_line + rest
        except ConnectionError:
            pass
        assert sent < 20_000_000  # the client was still sending
    finally:
        pusher.cancel()
        await asyncio.gather(pusher, return_exceptions=True)
        writer.close()


async def test_chunked_body_is_refused_once_past_the_cap(
        stack: Stack, settings: Settings) -> None:
    cap = settings.max_body_bytes
    # The cap plus a little, and no final chunk: only a server that stops
    # counting at the cap answers at all.
    chunks = [b"[" * 65_536] * (cap // 65_536 + 2)
    status, body = await _raw(stack, _head("/v1/contacts", None), chunks=chunks)
    _too_large(status, body, cap)


async def test_routes_have_their_own_caps(api: httpx.AsyncClient, stack: Stack,
                                          settings: Settings, owner: Account) -> None:
    # The CSV import takes more than the default cap ...
    rows = "first_name,email\n" + "".join(
        f"Person{i},p{i}@example.com\n" for i in range(40_000))
    assert settings.max_body_bytes < len(rows) < settings.max_import_bytes
    resp = await api.post("/v1/contacts/import", content=rows.encode(),
                          headers={**owner.headers, "content-type": "text/csv"})
    assert resp.status_code == 422 and "rows per import" in resp.json()["error"]["message"]
    # ... but not more than its own.
    status, body = await _raw(stack, _head("/v1/contacts/import",
                                           settings.max_import_bytes + 1))
    _too_large(status, body, settings.max_import_bytes)
    # The API channel's webhook takes less, signed or not.
    inbox = await make_inbox(api, owner)
    big = message(text="x" * 60_000)
    big["sender"]["name"] = "y" * (MAX_BODY - 60_000)
    resp = await post_inbound(api, inbox, big)
    _too_large(resp.status_code, resp.json(), MAX_BODY)
    assert (await post_inbound(api, inbox, message())).status_code == 202


def _nested(depth: int, opening: str, leaf: str, closing: str) -> bytes:
    return (opening * depth + leaf + closing * depth).encode()


DEEP = {
    "arrays": _nested(100_000, "[", "", "]"),
    "objects": _nested(100_000, '{"a":', "1", "}"),
    "metadata": b'{"first_name":"Deep","metadata":' + _nested(990, '{"a":', "1", "}") + b"}",
    # Parsed and stored, but pydantic cannot serialize it back (~255 levels).
    "stored": b'{"first_name":"Deep","metadata":' + _nested(300, '{"a":', "1", "}") + b"}",
    "brackets in strings": b'{"notes":"' + b"[" * 300 + b'"}',
}


async def test_deeply_nested_json_is_a_client_error(api: httpx.AsyncClient,
                                                    owner: Account) -> None:
    headers = {**owner.headers, "content-type": "application/json"}
    for name, raw in DEEP.items():
        resp = await api.post("/v1/contacts", content=raw, headers=headers)
        if name == "brackets in strings":
            assert resp.status_code == 201, resp.text[:300]
            continue
        assert resp.status_code == 400, (name, resp.status_code, resp.text[:300])
        assert resp.json()["error"]["code"] == "malformed_json", name
    listed = await api.get("/v1/contacts", headers=owner.headers)
    assert listed.json()["total"] == 1  # only the one with brackets in a string
    ok = _nested(MAX_JSON_DEPTH - 1, '{"a":', "1", "}")
    resp = await api.post("/v1/contacts", content=b'{"metadata":' + ok + b"}", headers=headers)
    assert resp.status_code == 201, resp.text[:300]


async def test_deeply_nested_json_to_the_webhook_is_a_client_error(
        api: httpx.AsyncClient, owner: Account) -> None:
    inbox = await make_inbox(api, owner)
    sender = b'{"id":"s-1","name":' + _nested(50_000, "[", "", "]") + b"}"
    for raw in (DEEP["arrays"], _nested(40_000, '{"a":', "1", "}"),
                b'{"external_message_id":"m","thread_id":"t","text":"hi","sender":'
                + sender + b"}"):
        resp = await post_inbound(api, inbox, raw)
        assert resp.status_code in (400, 422), resp.text[:300]
        assert "error" in resp.json()


async def test_a_counted_body_is_not_read_past_the_cap() -> None:
    seen: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            while (message := await receive())["type"] != "http.disconnect":
                seen.append(message["type"])
        else:
            seen.append(scope["type"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"too late"})

    pulled = 0

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b"x" * 1000, "more_body": True}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    limit = BodyLimit(app, default=2500, import_bytes=10_000, inbound_bytes=100)
    await limit({"type": "http", "method": "POST", "path": "/v1/contacts", "headers": []},
                receive, send)
    assert pulled == 3 and seen == ["http.request"] * 2  # the third went over
    assert sent[0]["status"] == 413 and b"too late" not in sent[-1]["body"]
    sent.clear()
    await limit({"type": "websocket", "path": "/v1/ws",
                 "headers": [(b"content-length", b"99999999")]}, receive, send)
    assert seen[-1] == "websocket" and sent[0]["status"] == 200

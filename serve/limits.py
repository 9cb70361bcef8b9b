"""Request body caps, applied before anything reads a body: the outermost
ASGI layer of the app, in front of the fast path and FastAPI.

A `Content-Length` over the route's cap is answered 413 at once, without
reading a byte of the body (and before authentication: nobody gets to make
a replica buffer megabytes). A body of unknown length (chunked) is counted as
it arrives; once past the cap the client gets the 413 and the app behind
sees the client go away, so nothing beyond the cap is ever buffered.
WebSockets and lifespan events pass through untouched.

JSON bodies are also capped in depth (`json_depth`, a dependency of every
FastAPI route): deeper than `MAX_JSON_DEPTH` is refused with 400 before the
route runs. Deeper bodies parse, but pydantic cannot serialize them back
(past ~255 levels): a contact with such `metadata` was stored and then
answered 500, and every later read of it too."""
from __future__ import annotations

import re
from typing import Any

from starlette.requests import HTTPConnection, Request

from core.errors import MalformedJSON
from serve.errors import envelope

IMPORT = "/v1/contacts/import"
CHANNELS_PREFIX = "/v1/channels/"  # every channel's inbound webhook


class BodyLimit:
    def __init__(self, app: Any, *, default: int, import_bytes: int, inbound_bytes: int) -> None:
        self.app = app
        self.default = default
        self.import_bytes = import_bytes
        self.inbound_bytes = inbound_bytes

    def cap(self, method: str, path: str) -> int:
        if method == "POST":
            if path == IMPORT:
                return self.import_bytes
            if path.startswith(CHANNELS_PREFIX):
                return self.inbound_bytes
        return self.default

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap = self.cap(scope["method"], scope["path"])
        length = _content_length(scope["headers"])
        if length is not None and length > cap:
            await _too_large(cap, scope, receive, send)
            return
        if length is not None:
            await self.app(scope, receive, send)  # the server stops at Content-Length
            return
        await _Counted(self.app, cap, scope, receive, send).run()


class _Counted:
    """One request of unknown length: counts what arrives, cuts it at the cap."""

    def __init__(self, app: Any, cap: int, scope: dict[str, Any], receive: Any,
                 send: Any) -> None:
        self.app, self.cap, self.scope = app, cap, scope
        self._receive, self._send = receive, send
        self.size = 0
        self.started = False  # the app began its response
        self.refused = False  # we answered 413: the app's answer is dropped

    async def run(self) -> None:
        await self.app(self.scope, self.receive, self.send)

    async def receive(self) -> dict[str, Any]:
        if self.refused:
            return {"type": "http.disconnect"}
        message: dict[str, Any] = await self._receive()
        if message["type"] == "http.request":
            self.size += len(message.get("body", b""))
            if self.size > self.cap:
                self.refused = True
                if not self.started:
                    await _too_large(self.cap, self.scope, self._receive, self._send)
                return {"type": "http.disconnect"}
        return message

    async def send(self, message: dict[str, Any]) -> None:
        if self.refused:
            return
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)


async def _too_large(cap: int, scope: dict[str, Any], receive: Any, send: Any) -> None:
    response = envelope(413, "payload_too_large",
                        f"the request body is larger than {cap} bytes", {"limit": cap},
                        headers={"Connection": "close"})  # the rest of the body is not read
    await response(scope, receive, send)


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    """The declared length, or None when unknown (chunked, or unreadable:
    the server frames such a request itself and we count it instead)."""
    for key, value in headers:
        if key.lower() == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isascii() and text.isdigit() else None
    return None


MAX_JSON_DEPTH = 64
# A JSON string (escapes included) or a bracket: strings are skipped whole,
# so brackets inside them do not count.
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def too_deep(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether the JSON in `body` nests arrays and objects deeper than `limit`."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False  # the common case, at the speed of bytes.count
    depth = 0
    for token in _TOKENS.finditer(body):
        first = token.group()[0]
        if first in b"[{":
            depth += 1
            if depth > limit:
                return True
        elif first in b"]}":
            depth -= 1
    return False


async def json_depth(connection: HTTPConnection) -> None:
    """Refuse a JSON body nested deeper than MAX_JSON_DEPTH. FastAPI has read
    (and kept) the body before dependencies run, so this reads nothing again."""
    if not isinstance(connection, Request) or connection.method not in ("POST", "PUT", "PATCH"):
        return
    if too_deep(await connection.body()):
        raise MalformedJSON(f"the JSON is nested deeper than {MAX_JSON_DEPTH} levels")

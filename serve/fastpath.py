"""A raw-ASGI fast path for the hottest route, the channels' inbound
webhooks: `POST /v1/channels/api/{integration_id}/messages` skips FastAPI's
routing, dependency and middleware layers (about a third of a request's
cost in this process) and runs the same `accept()` the documented route
runs. Anything it does not recognise goes on to the app unchanged."""
from __future__ import annotations

from typing import Any
from uuid import UUID

from core.errors import BidiError, Invalid
from serve.errors import error_response
from serve.routers.channels_api import MAX_BODY, accept

PREFIX = "/v1/channels/api/"
JSON = [(b"content-type", b"application/json")]


class FastPath:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if (scope["type"] != "http" or scope["method"] != "POST"
                or not path.startswith(PREFIX) or not path.endswith("/messages")):
            await self.app(scope, receive, send)
            return
        ident = path[len(PREFIX):-len("/messages")]
        try:
            integration_id = str(UUID(ident))
        except ValueError:
            await self.app(scope, receive, send)  # FastAPI's own 422
            return
        try:
            body = await _read(receive)
            headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                       for k, v in scope["headers"]}
            answer = await accept(scope["app"].state, integration_id, headers, body)
        except BidiError as exc:
            await error_response(exc)(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 202,
                    "headers": [*JSON, (b"content-length", str(len(answer)).encode())]})
        await send({"type": "http.response.body", "body": answer})


async def _read(receive: Any) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Invalid("the client went away")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise Invalid(f"the body is larger than {MAX_BODY} bytes")
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)

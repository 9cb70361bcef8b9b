"""A customer's callback endpoint for the API channel, on loopback: records
every signed POST it gets and answers with the status the test sets per
path (`/ok`, `/fail400`, `/flaky` fails with 503 once per message id)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.serving import serve_in_thread


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class CallbackServer:
    port: int
    received: list[Received] = field(default_factory=list)
    _failed_once: set[str] = field(default_factory=set)
    _server: uvicorn.Server | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    def for_path(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == f"/{path}"]

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        entry = Received(request.url.path, dict(request.headers), body)
        self.received.append(entry)
        path = request.url.path
        if path.startswith("/fail400"):
            return JSONResponse({"error": "rejected"}, status_code=400)
        if path.startswith("/flaky"):
            msg_id = entry.headers.get("webhook-id", "")
            if msg_id not in self._failed_once:
                self._failed_once.add(msg_id)
                return JSONResponse({"error": "try later"}, status_code=503)
        return JSONResponse({"external_message_id": f"ext-{entry.headers.get('webhook-id')}"})

    def start(self) -> CallbackServer:
        app = Starlette(routes=[Route("/{path:path}", self.handle, methods=["POST"])])
        self._server = serve_in_thread(app, self.port, "callback server")
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True

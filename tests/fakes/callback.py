"""A customer's callback endpoint for the API channel, on loopback: records
every signed POST it gets (with when it came) and answers with the status
the test sets per path: `/ok`, `/fail400`, `/flaky` fails with 503 once per
message id, `/busy2` answers 503 with `Retry-After: 1` twice per message id,
`/down` always 503, `/gone` 410, `/moved-<rest>` a 302 to `/ok-<rest>`."""
from __future__ import annotations

import json
import time
from collections import Counter
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
    at: float = field(default_factory=time.monotonic)

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class CallbackServer:
    port: int
    received: list[Received] = field(default_factory=list)
    _failed_once: set[str] = field(default_factory=set)
    _busy: Counter[str] = field(default_factory=Counter)
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
        msg_id = entry.headers.get("webhook-id", "")
        if path.startswith("/fail400"):
            return JSONResponse({"error": "rejected"}, status_code=400)
        if path.startswith("/gone"):
            return JSONResponse({"error": "no such endpoint"}, status_code=410)
        if path.startswith("/down"):
            return JSONResponse({"error": "down"}, status_code=503)
        if path.startswith("/moved-"):
            return Response(status_code=302,
                            headers={"location": self.url("ok-" + path[len("/moved-"):])})
        if path.startswith("/busy2"):
            self._busy[msg_id] += 1
            if self._busy[msg_id] <= 2:
                return JSONResponse({"error": "busy"}, status_code=503,
                                    headers={"retry-after": "1"})
        if path.startswith("/flaky") and msg_id not in self._failed_once:
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

"""What runs in front of Serve's own request handling in each replica's
HTTP server (and in Serve's Python proxy, without HAProxy).

Serve watches every HTTP request for the client going away: a task per
request reading the body stream to its end, another for the handler, and
an `asyncio.wait` on both, so that a handler whose client left is
cancelled. The engine's requests are short and a cancelled handler helps
no one (an inbound message is committed whether or not its sender still
listens); what the watch costs was about 6% of a replica's samples at full
ingest. Serve skips it for a request carrying
`x-request-disconnect-disabled: ?1`; HAProxy's configuration is Serve's,
so the header is added here, by an ASGI middleware Serve installs in the
replica's server (`RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH`, set by
serve.stack). WebSockets are untouched.

Kept apart from the app so that Serve's proxy imports only this.
"""
from __future__ import annotations

from typing import Any

from starlette.middleware import Middleware

IMPORT_PATH = "serve.direct:middlewares"
HEADER = (b"x-request-disconnect-disabled", b"?1")


class NoDisconnectWatch:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope["headers"] = [*scope["headers"], HEADER]
        await self.app(scope, receive, send)


def middlewares() -> list[Middleware]:
    return [Middleware(NoDisconnectWatch)]

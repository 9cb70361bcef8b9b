"""The middleware Serve installs in front of each replica's request handling
(serve.direct): HTTP requests carry the header that turns Serve's per-request
disconnect watch off, WebSockets are left as they are, and Serve finds the
middleware where serve.stack tells it to look."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ray.serve._private.http_util import (
    parse_disconnect_disabled_header,
    validate_http_proxy_callback_return,
)
from ray.serve._private.utils import call_function_from_import_path
from starlette.middleware import Middleware

from core.settings import load_settings
from serve.direct import NoDisconnectWatch
from serve.stack import serve_env


async def _seen(scope_type: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.update(scope)

    headers = [(b"host", b"example.com"), (b"x-request-disconnect-disabled", b"?0")]
    await NoDisconnectWatch(app)({"type": scope_type, "headers": headers}, None, None)
    return seen


async def test_http_requests_are_not_watched_for_disconnects() -> None:
    scope = await _seen("http")
    # A client's own ?0 comes first; Serve reads the last value of a header.
    assert parse_disconnect_disabled_header(dict(scope["headers"]))
    assert (b"host", b"example.com") in scope["headers"]


async def test_websockets_are_left_alone() -> None:
    scope = await _seen("websocket")
    assert not parse_disconnect_disabled_header(dict(scope["headers"]))


def test_serve_finds_the_middleware_where_the_stack_points_it(tmp_path: Path) -> None:
    env = serve_env(load_settings(data_dir=tmp_path), haproxy=True)
    found = validate_http_proxy_callback_return(
        call_function_from_import_path(env["RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"]))
    assert [m.cls for m in found] == [NoDisconnectWatch]
    assert all(isinstance(m, Middleware) for m in found)
    assert env["RAY_SERVE_HAPROXY_METRICS_ENABLED"] == "0"
    on = serve_env(load_settings(data_dir=tmp_path, ingress_metrics=True), haproxy=True)
    assert on["RAY_SERVE_HAPROXY_METRICS_ENABLED"] == "1"

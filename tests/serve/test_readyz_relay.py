"""`/readyz` reports the event relay: its state when it runs and keeps up,
503 naming it while it is not running (here: killed, and being restarted by
Ray), and ready again once it is back."""
from __future__ import annotations

from typing import Any

import httpx
import ray

from actors.relay import RELAY_NAME
from actors.runtime.client import NAMESPACE
from tests.waiting import eventually


async def _readyz(api: httpx.AsyncClient) -> tuple[int, dict[str, Any]]:
    resp = await api.get("/readyz")
    return resp.status_code, resp.json()


async def test_readyz_shows_the_relays_state(api: httpx.AsyncClient) -> None:
    status, body = await _readyz(api)
    assert status == 200, body
    assert body["checks"]["relay"] == "ok"
    relay = body["relay"]
    assert relay["state"] == "running" and relay["problem"] is None
    assert len(relay["cursor"]) == 2 and relay["behind_seconds"] < 30


async def test_readyz_names_the_relay_while_it_is_down(api: httpx.AsyncClient) -> None:
    handle = ray.get_actor(RELAY_NAME, namespace=NAMESPACE)
    before = ray.get(handle.pid.remote(), timeout=30)
    ray.kill(handle, no_restart=False)  # Ray starts it again

    async def down() -> dict[str, Any] | None:
        status, body = await _readyz(api)
        return body if status == 503 else None

    body = await eventually(down, what="readyz failing on the relay")
    assert body["error"]["code"] == "not_ready"
    assert "relay not ready" in body["error"]["message"]
    assert body["error"]["details"]["checks"]["relay"] != "ok"
    assert body["error"]["details"]["checks"]["postgres"] == "ok"

    async def up() -> dict[str, Any] | None:
        status, body = await _readyz(api)
        return body if status == 200 else None

    body = await eventually(up, timeout=60, what="readyz ready again")
    assert body["relay"]["state"] == "running"
    assert ray.get(handle.pid.remote(), timeout=30) != before

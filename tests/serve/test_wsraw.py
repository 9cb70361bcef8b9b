"""Ready-made frame writes (serve.wsraw) from the hub's `Live`, on a real
uvicorn server with the protocol `install()` selects: the event frame is
encoded once and written as is, in order, duplicates dropped by position
(one by one, or the relay's batch of an org's events, split and written in
one go), and a client that stops reading is still closed with 4008."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from bench.wsclient import connect
from serve.errors import Close
from serve.hub import Live, parse, parse_many
from serve.stack import free_port
from serve.wsraw import install, raw_socket
from tests.waiting import eventually

seen: dict[str, Any] = {}


def _event(seq: int) -> bytes:
    return (b'{"type":"event","event_type":"message.received","xid":1,"seq":%d,"pad":"%s"}'
            % (seq, b"x" * 300))


async def endpoint(ws: WebSocket) -> None:
    await ws.accept()

    async def close(code: int, reason: str) -> None:
        await ws.close(code, reason)

    live = Live(send=ws.send_text, close=close, org_id="o", raw=raw_socket(ws.scope))
    seen["live"] = live
    seqs = (1, 2, 2, 1, 3)  # the repeats are dropped by position
    if ws.query_params.get("batch"):
        frames = parse_many(b"[" + b",".join(_event(seq) for seq in seqs) + b"]")
        assert len(frames) == 5
        live.offer_all(frames)
    for seq in () if ws.query_params.get("batch") else seqs:
        frame = parse(_event(seq))
        assert frame is not None
        live.offer(frame)
    if ws.query_params.get("flood"):
        frame = parse(_event(4))
        assert frame is not None
        big = frame.text + "y" * 60_000
        for _ in range(5000):  # the client reads nothing: backlog, then 4008
            live.send_now(big)
            if live.closed:
                break
            await asyncio.sleep(0)
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return


@pytest.fixture
async def server() -> AsyncIterator[str]:
    assert install()
    port = free_port()
    config = uvicorn.Config(Starlette(routes=[WebSocketRoute("/ws", endpoint)]),
                            host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    srv = uvicorn.Server(config)
    task = asyncio.create_task(srv.serve())
    await eventually(lambda: srv.started, what="uvicorn starting")
    yield f"ws://127.0.0.1:{port}/ws"
    srv.should_exit = True
    await task


@pytest.mark.parametrize("query", ["", "?batch=1"])
async def test_events_go_out_ready_made_in_order_once(server: str, query: str) -> None:
    client = await connect(server + query)
    got = [await client.recv() for _ in range(3)]
    assert got == [_event(1).decode(), _event(2).decode(), _event(3).decode()]
    live = seen["live"]
    assert live.raw is not None and live.last_seq == 3 and not live.backlog
    await client.close()


async def test_a_client_that_stops_reading_is_closed_with_4008(server: str) -> None:
    client = await connect(server + "?flood=1")
    client.transport.pause_reading()  # type: ignore[union-attr]
    await eventually(lambda: seen["live"].closed, timeout=30, what="the overflow")
    client.keep = False
    client.transport.resume_reading()  # type: ignore[union-attr]
    assert await asyncio.wait_for(client.closed, 30) == Close.SLOW_CLIENT

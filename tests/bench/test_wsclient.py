"""The bench's lean WebSocket client (bench/wsclient.py) against a real
server (the `websockets` library's): handshake, every length encoding,
fragmentation, pings, masking of what it sends, the closing handshake, and
the frames it must refuse."""
from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from bench.wsclient import (
    CLOSE,
    PING,
    TEXT,
    FrameParser,
    ProtocolError,
    client_frame,
    connect,
    mask,
)
from tests.waiting import eventually

MARK = "message.received"


async def _server(handler: Callable[[ServerConnection], Any]) -> AsyncIterator[str]:
    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}/v1/ws?token=t"


@pytest.fixture
async def frames_server() -> AsyncIterator[str]:
    """Echoes the client's first message back, then sends frames of 7-, 16- and
    64-bit lengths, a fragmented message, a ping, and closes with 4008."""
    async def handler(ws: ServerConnection) -> None:
        first = await ws.recv()
        await ws.send(f"echo:{first}")
        await ws.send(f'{{"event_type":"{MARK}"}}')  # 7-bit length
        await ws.send(MARK + "x" * 300)  # 16-bit length
        await ws.send(MARK + "y" * 70_000)  # 64-bit length
        await ws.send("no marker here")
        await ws.send(["frag-", MARK, "-end"])  # three frames, one message
        pong = await ws.ping(b"hello")
        await asyncio.wait_for(pong, 5)
        await ws.send("pong seen")
        await ws.close(4008, "slow consumer")

    async for url in _server(handler):
        yield url


async def test_it_speaks_to_a_real_server(frames_server: str) -> None:
    client = await connect(frames_server)
    client.send_text("hi \u00e9" + "z" * 200)  # masked 16-bit-length frame, UTF-8
    assert await client.recv() == "echo:hi \u00e9" + "z" * 200
    assert await client.recv() == f'{{"event_type":"{MARK}"}}'
    assert await client.recv() == MARK + "x" * 300
    assert await client.recv() == MARK + "y" * 70_000
    assert await client.recv() == "no marker here"
    assert await client.recv() == f"frag-{MARK}-end"
    assert await client.recv() == "pong seen"  # the server got our pong
    assert await asyncio.wait_for(client.closed, 5) == 4008
    assert client.count == 4  # the messages with the marker, the fragmented one once


async def test_counting_without_keeping(frames_server: str) -> None:
    client = await connect(frames_server)
    client.keep = False
    client.send_text("go")
    await asyncio.wait_for(client.closed, 5)
    assert client.count == 4 and not client.inbox


async def test_its_close_is_answered() -> None:
    closed: list[int | None] = []

    async def handler(ws: ServerConnection) -> None:
        async for _ in ws:
            pass
        closed.append(ws.close_code)

    async for url in _server(handler):
        client = await connect(url)
        await client.close(1000)
        assert client.closed.result() == 1000
        await eventually(lambda: closed == [1000], what="the server seeing a clean close")


async def test_a_wrong_accept_key_is_refused() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Accept: bm90IHRoZSBrZXk=\r\n\r\n")
        await writer.drain()

    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(ProtocolError, match="Sec-WebSocket-Accept"):
            await connect(f"ws://127.0.0.1:{port}/")
    finally:
        server.close()
        await server.wait_closed()


def _server_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        return struct.pack("!BB", b0, n) + payload
    if n < 1 << 16:
        return struct.pack("!BBH", b0, 126, n) + payload
    return struct.pack("!BBQ", b0, 127, n) + payload


def test_the_parser_waits_for_whole_frames_byte_by_byte() -> None:
    stream = (_server_frame(TEXT, b"a" * 5) + _server_frame(TEXT, b"b" * 200)
              + _server_frame(TEXT, b"c" * 70_000) + _server_frame(TEXT, b"d", fin=False)
              + _server_frame(PING, b"p") + _server_frame(0, b"e"))
    parser = FrameParser()
    got: list[tuple[int, bytes]] = []
    step = 7
    for i in range(0, len(stream), step):
        got.extend(parser.feed(stream[i:i + step]))
    assert got == [(TEXT, b"a" * 5), (TEXT, b"b" * 200), (TEXT, b"c" * 70_000),
                   (PING, b"p"), (TEXT, b"de")]
    assert parser.buf == b""


@pytest.mark.parametrize("frame, why", [
    (bytes([0x81, 0x80 | 1]) + b"kkkk" + b"x", "masked"),
    (bytes([0xC1, 1]) + b"x", "reserved"),
    (bytes([0x09, 1]) + b"x", "fragmented"),
    (bytes([0x80, 1]) + b"x", "continuation"),
    (bytes([0x83, 1]) + b"x", "opcode"),
])
def test_the_parser_refuses_bad_frames(frame: bytes, why: str) -> None:
    with pytest.raises(ProtocolError, match=why):
        FrameParser().feed(frame)


def test_client_frames_are_masked() -> None:
    frame = client_frame(CLOSE, b"\x03\xe8", key=b"\x01\x02\x03\x04")
    assert frame[:2] == bytes([0x88, 0x82]) and frame[2:6] == b"\x01\x02\x03\x04"
    assert mask(frame[6:], b"\x01\x02\x03\x04") == b"\x03\xe8"

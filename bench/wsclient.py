"""A lean WebSocket client (RFC 6455) for the load generator.

The `websockets` library costs the fan-out bench more CPU per received
frame than the engine spends sending it, on the same cores; this client
does the least a correct client must: the opening handshake with its
`Sec-WebSocket-Accept` check, masked client frames, unmasked server frames
of any length (7, 16 or 64-bit), fragmented messages reassembled around
interleaved control frames, pings answered, the closing handshake. It
offers no extensions, so a frame with an RSV bit set is a protocol error.

`WsClient.count` is the number of complete text messages containing
`marker`: every one a whole frame (or whole fragmented message) received.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import struct
from collections import deque
from urllib.parse import urlsplit

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
MAX_HEAD = 64 * 1024  # handshake response bytes we wait for before giving up


class ProtocolError(Exception):
    pass


def accept_for(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def mask(payload: bytes, key: bytes) -> bytes:
    """XOR `payload` with the 4-byte masking `key` repeated (one big-int XOR)."""
    n = len(payload)
    if not n:
        return b""
    keys = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(keys, "little")).to_bytes(
        n, "little")


def client_frame(opcode: int, payload: bytes, key: bytes | None = None) -> bytes:
    """One final, masked frame (clients must mask every frame they send)."""
    key = os.urandom(4) if key is None else key
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + key + mask(payload, key)


class FrameParser:
    """Server frames from a byte stream, in order, as whole messages.

    `feed` returns the events completed by the new bytes: `(opcode, payload)`
    with opcode TEXT/BINARY for a whole (reassembled) message, or a control
    opcode (CLOSE/PING/PONG) with its payload.
    """

    def __init__(self) -> None:
        self.buf = b""
        self.parts: list[bytes] = []  # fragments of the message being received
        self.first = 0  # that message's opcode

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        buf = self.buf + data if self.buf else data
        out: list[tuple[int, bytes]] = []
        pos, end = 0, len(buf)
        while end - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            if b1 & 0x80:
                raise ProtocolError("a server frame is masked")
            if b0 & 0x70:
                raise ProtocolError("reserved bits set without an extension")
            n = b1 & 0x7F
            head = 2
            if n == 126:
                if end - pos < 4:
                    break
                n = (buf[pos + 2] << 8) | buf[pos + 3]
                head = 4
            elif n == 127:
                if end - pos < 10:
                    break
                n = struct.unpack_from("!Q", buf, pos + 2)[0]
                if n >> 63:
                    raise ProtocolError("64-bit length with the top bit set")
                head = 10
            if end - pos < head + n:
                break
            payload = buf[pos + head:pos + head + n]
            pos += head + n
            self._frame(b0 & 0x80, b0 & 0x0F, payload, out)
        self.buf = buf[pos:] if pos < end else b""
        return out

    def _frame(self, fin: int, opcode: int, payload: bytes,
               out: list[tuple[int, bytes]]) -> None:
        if opcode >= CLOSE:
            if opcode not in (CLOSE, PING, PONG):
                raise ProtocolError(f"unknown control opcode {opcode:#x}")
            if not fin or len(payload) > 125:
                raise ProtocolError("a control frame is fragmented or longer than 125 bytes")
            out.append((opcode, payload))
        elif opcode == CONTINUATION:
            if not self.parts:
                raise ProtocolError("a continuation frame without a message to continue")
            self.parts.append(payload)
            if fin:
                out.append((self.first, b"".join(self.parts)))
                self.parts = []
        elif opcode in (TEXT, BINARY):
            if self.parts:
                raise ProtocolError("a new message before the last one ended")
            if fin:
                out.append((opcode, payload))
            else:
                self.first, self.parts = opcode, [payload]
        else:
            raise ProtocolError(f"unknown data opcode {opcode:#x}")


class WsClient(asyncio.Protocol):
    """One client connection. Text messages are kept for `recv` until
    `keep` is turned off; they are counted against `marker` either way."""

    def __init__(self, marker: bytes = b"message.received") -> None:
        self.marker = marker
        self.count = 0
        self.keep = True
        self.inbox: deque[str] = deque()
        self.parser = FrameParser()
        self.transport: asyncio.Transport | None = None
        self.key = base64.b64encode(os.urandom(16))
        self.head = b""
        self.open = False
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiter: asyncio.Future[None] | None = None
        self.close_sent = False

    # -- asyncio.Protocol ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        if not self.open:
            data = self._handshake(data)
            if not data:
                return
        try:
            events = self.parser.feed(data)
        except ProtocolError as exc:
            self._fail(1002, str(exc))
            return
        for opcode, payload in events:
            if opcode == TEXT:
                if self.marker in payload:
                    self.count += 1
                if self.keep:
                    self.inbox.append(payload.decode())
                    self._wake()
            elif opcode == PING:
                self._write(client_frame(PONG, payload))
            elif opcode == CLOSE:
                self._closing(payload)
                return

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"closed during the handshake ({exc})"))
        if not self.closed.done():
            self.closed.set_result(1006)
        self._wake()

    # -- handshake ----------------------------------------------------------

    def _handshake(self, data: bytes) -> bytes:
        self.head += data
        end = self.head.find(b"\r\n\r\n")
        if end < 0:
            if len(self.head) > MAX_HEAD:
                self._refuse("handshake response too long")
            return b""
        lines = self.head[:end].split(b"\r\n")
        rest, self.head = self.head[end + 4:], b""
        status = lines[0].split(b" ", 2)
        if len(status) < 2 or status[1] != b"101":
            self._refuse(f"handshake refused: {lines[0]!r}")
            return b""
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        if headers.get(b"upgrade", b"").lower() != b"websocket" or \
                b"upgrade" not in headers.get(b"connection", b"").lower():
            self._refuse("the response is not a WebSocket upgrade")
            return b""
        if headers.get(b"sec-websocket-accept") != accept_for(self.key):
            self._refuse("Sec-WebSocket-Accept does not match the key")
            return b""
        if headers.get(b"sec-websocket-extensions"):
            self._refuse("the server chose an extension this client did not offer")
            return b""
        self.open = True
        self.opened.set_result(None)
        return rest

    def _refuse(self, why: str) -> None:
        if not self.opened.done():
            self.opened.set_exception(ProtocolError(why))
        if self.transport is not None:
            self.transport.close()

    # -- frames out ---------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def send_text(self, text: str) -> None:
        if not self.open or self.close_sent:
            raise ConnectionError("the connection is not open")
        self._write(client_frame(TEXT, text.encode()))

    def _closing(self, payload: bytes) -> None:
        code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
        if not self.close_sent:
            self.close_sent = True
            self._write(client_frame(CLOSE, payload[:2]))
        self.open = False
        if not self.closed.done():
            self.closed.set_result(code)
        if self.transport is not None:
            self.transport.close()

    def _fail(self, code: int, why: str) -> None:
        if not self.close_sent:
            self.close_sent = True
            self._write(client_frame(CLOSE, struct.pack("!H", code) + why.encode()[:100]))
        self.open = False
        if not self.closed.done():
            self.closed.set_result(code)
        if self.transport is not None:
            self.transport.close()

    async def close(self, code: int = 1000) -> None:
        """The closing handshake: our close frame, then the server's, or a timeout."""
        if self.open and not self.close_sent:
            self.close_sent = True
            self._write(client_frame(CLOSE, struct.pack("!H", code)))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.closed), 5.0)
        if self.transport is not None:
            self.transport.close()

    # -- messages in --------------------------------------------------------

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def recv(self) -> str:
        """The next text message (while `keep` is on)."""
        while not self.inbox:
            if self.closed.done():
                raise ConnectionError(f"closed ({self.closed.result()})")
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        return self.inbox.popleft()


async def connect(url: str, marker: bytes = b"message.received",
                  timeout: float = 60.0) -> WsClient:
    """Open `ws://host:port/path?query` and complete the handshake."""
    parts = urlsplit(url)
    if parts.scheme != "ws" or not parts.hostname:
        raise ValueError(f"not a ws:// URL: {url!r}")
    host, port = parts.hostname, parts.port or 80
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    loop = asyncio.get_running_loop()
    transport, client = await asyncio.wait_for(
        loop.create_connection(lambda: WsClient(marker), host, port), timeout)
    authority = host if port == 80 else f"{host}:{port}"
    transport.write(
        f"GET {target} HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {client.key.decode()}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode())
    try:
        await asyncio.wait_for(asyncio.shield(client.opened), timeout)
    except BaseException:
        transport.close()
        raise
    return client

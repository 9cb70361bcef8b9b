"""Writing ready-made WebSocket frames straight to a connection's socket.

An event fanned out to thousands of connections is the same server frame
for each (server frames are not masked), yet the ASGI path encodes it again
per connection and walks five layers of send wrappers (Starlette, Serve's
direct ingress, uvicorn, the websockets state machine) before one socket
write. uvicorn's sans-I/O WebSocket protocol is extended here to offer
its connection to the app as the ASGI extension `bidi.raw_websocket`:
`RawSocket.write` puts already encoded frames on the transport, several in
one write when the hub has several events for the connection at once.

It is used only while the connection is open both ways and the transport
takes data without pushing back; otherwise the app sends through ASGI as
before (which waits for the socket to drain). Serve builds its uvicorn
server with `ws="auto"`; `install()` makes "auto" resolve to this class. If
Serve or uvicorn resolve it otherwise, nothing offers the extension and
every frame takes the ASGI path: slower, never wrong.
"""
from __future__ import annotations

import asyncio
import struct
from collections.abc import Mapping
from typing import Any

EXTENSION = "bidi.raw_websocket"
HIGH_WATER = 64 * 1024  # bytes buffered in the transport past which we let ASGI wait


def text_frame(payload: bytes) -> bytes:
    """One final, unmasked text frame (RFC 6455 5.2) carrying `payload`."""
    n = len(payload)
    if n < 126:
        return struct.pack("!BB", 0x81, n) + payload
    if n < 1 << 16:
        return struct.pack("!BBH", 0x81, 126, n) + payload
    return struct.pack("!BBQ", 0x81, 127, n) + payload


class RawSocket:
    """One connection's transport, for frames the app encoded itself."""

    __slots__ = ("_protocol", "_open", "_corked")

    def __init__(self, protocol: Any, open_state: Any) -> None:
        self._protocol = protocol
        self._open = open_state
        self._corked: list[bytes] | None = None

    def writable(self) -> bool:
        """Open both ways, handshake done, and nothing waiting in the buffer."""
        p = self._protocol
        transport = p.transport
        return (p.handshake_complete and not p.close_sent and not p.disconnected
                and p.conn.state is self._open and not transport.is_closing()
                and transport.get_write_buffer_size() < HIGH_WATER)

    def write(self, data: bytes) -> None:
        if self._corked is not None:
            self._corked.append(data)
        else:
            self._protocol.transport.write(data)

    def cork(self) -> None:
        """Hold writes until `uncork`, which puts them on the transport at once."""
        if self._corked is None:
            self._corked = []

    def uncork(self) -> None:
        held, self._corked = self._corked, None
        if held:
            self._protocol.transport.write(b"".join(held))


def _protocol_class() -> type | None:
    try:
        from uvicorn.protocols.websockets.websockets_sansio_impl import (
            WebSocketsSansIOProtocol,
        )
        from websockets.protocol import State
    except ImportError:
        return None

    class RawWebSocketProtocol(WebSocketsSansIOProtocol):
        """uvicorn's protocol, announcing a `RawSocket` in the ASGI scope."""

        def handle_connect(self, event: Any) -> None:
            super().handle_connect(event)
            scope = getattr(self, "scope", None)
            if isinstance(scope, dict) and isinstance(scope.get("extensions"), dict):
                scope["extensions"][EXTENSION] = {"socket": RawSocket(self, State.OPEN),
                                                  "loop": self.loop}

    return RawWebSocketProtocol


def install() -> bool:
    """Make uvicorn's `ws="auto"` this protocol (when it is the sans-I/O one)."""
    try:
        from uvicorn.protocols.websockets import auto
        from uvicorn.protocols.websockets.websockets_sansio_impl import (
            WebSocketsSansIOProtocol,
        )
    except ImportError:
        return False
    current = getattr(auto, "AutoWebSocketsProtocol", None)
    if current is not None and getattr(current, "__name__", "") == "RawWebSocketProtocol":
        return True
    if current is not WebSocketsSansIOProtocol:
        return False
    cls = _protocol_class()
    if cls is None:
        return False
    auto.AutoWebSocketsProtocol = cls
    return True


def raw_socket(scope: Mapping[str, Any]) -> RawSocket | None:
    """The connection's `RawSocket`, when its server offers one on this loop."""
    offered = (scope.get("extensions") or {}).get(EXTENSION)
    if not offered:
        return None
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    if offered.get("loop") is not loop:
        return None  # another thread's loop: its transport is not ours to touch
    socket: RawSocket = offered["socket"]
    return socket

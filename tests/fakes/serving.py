"""Serving a fake provider's app on loopback, in a thread of the test process."""
from __future__ import annotations

import threading
from typing import Any

import uvicorn


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets=sockets)
        self.ready.set()


def serve_in_thread(app: Any, port: int, name: str, timeout: float = 10.0) -> uvicorn.Server:
    """Start `app` on 127.0.0.1:`port`; returns once it accepts connections.
    Stop it with `server.should_exit = True`."""
    server = _Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                    lifespan="off"))
    threading.Thread(target=server.run, daemon=True, name=name).start()
    if not server.ready.wait(timeout):
        raise RuntimeError(f"{name} did not start within {timeout:.0f} s")
    return server

"""The API app in the test process, on the session's Postgres and Redis,
with settings of its own (low limits, trusted proxies) and socket peers of
its own: every test request through Serve comes from 127.0.0.1, so per-IP
limits are tested here, each client from a fresh address that no other test
shares."""
from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
from fastapi import FastAPI

from core.settings import Settings
from serve.app import build_app, open_runtime


def fresh_ip() -> str:
    """An address of the documentation prefix (2001:db8::/32) used by no one else."""
    words = uuid.uuid4().hex
    return f"2001:db8:{words[:4]}:{words[4:8]}:{words[8:12]}:{words[12:16]}::1"


@dataclass(frozen=True)
class LocalApp:
    app: FastAPI

    @asynccontextmanager
    async def client(self, peer: str | None = None) -> AsyncIterator[httpx.AsyncClient]:
        """A browser of its own: its own address (fresh unless given) and cookies."""
        transport = httpx.ASGITransport(app=self.app, client=(peer or fresh_ip(), 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver",
                                     timeout=30) as client:
            yield client


@asynccontextmanager
async def local_app(settings: Settings, **overrides: object) -> AsyncIterator[LocalApp]:
    local = settings.model_copy(update={"pool_size": 2, **overrides})
    app = build_app(local)
    async with open_runtime(local) as runtime:
        app.state.runtime = runtime
        yield LocalApp(app)


@asynccontextmanager
async def local_api(settings: Settings, *, peer: str | None = None,
                    **overrides: object) -> AsyncIterator[httpx.AsyncClient]:
    """One client of a local app."""
    async with local_app(settings, **overrides) as app, app.client(peer) as client:
        yield client

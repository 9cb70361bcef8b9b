"""The inbox's files as the engine serves them: the page under its Content
Security Policy, ETags answered with 304, gzip when accepted, HEAD, nothing
outside `serve/web` or of an unknown type, and every module the page or
another module imports actually there (a broken import path would only show
as a blank page)."""
from __future__ import annotations

import asyncio
import gzip
import re
from pathlib import Path

import httpx
import pytest

from serve.stack import Stack

WEB = Path(__file__).resolve().parents[2] / "serve" / "web"
IMPORT = re.compile(r"""(?:import|from)\s*\(?\s*["'](\.{1,2}/[^"']+)["']""")


async def test_the_page_carries_its_policy_and_revalidates(api: httpx.AsyncClient) -> None:
    page = await api.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy
    assert page.headers["x-frame-options"] == "DENY"
    again = await api.get("/", headers={"If-None-Match": page.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    head = await api.head("/")
    assert head.status_code == 200 and head.headers["etag"] == page.headers["etag"]


async def test_modules_are_gzipped_when_accepted(api: httpx.AsyncClient) -> None:
    raw = await api.get("/static/js/app.js", headers={"Accept-Encoding": "identity"})
    assert raw.status_code == 200 and "content-encoding" not in raw.headers
    assert raw.headers["content-type"].startswith("text/javascript")
    assert raw.headers["x-content-type-options"] == "nosniff"
    async with api.stream("GET", "/static/js/app.js",
                          headers={"Accept-Encoding": "gzip"}) as packed:
        assert packed.headers["content-encoding"] == "gzip"
        body = b"".join([chunk async for chunk in packed.aiter_raw()])
    assert gzip.decompress(body) == raw.content == (WEB / "js" / "app.js").read_bytes()


async def raw_get(stack: Stack, path: str) -> int:
    """The status of a GET sent as written (clients remove `..` themselves)."""
    reader, writer = await asyncio.open_connection(stack.settings.host, stack.settings.port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: bidi\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    status = int((await reader.readline()).split()[1])
    writer.close()
    return status


@pytest.mark.parametrize("path", [
    "/static/../core/settings.py", "/static/%2e%2e/%2e%2e/core/settings.py",
    "/static/js/../../routers/web.py", "/static/js/%2e%2e/%2e%2e/routers/web.py",
    "/static/js/nothing.js", "/static/js/app.js.map", "/static/", "/static/..",
    "/static/index.html/x", "/static//etc/passwd"])
async def test_nothing_else_is_served(stack: Stack, api: httpx.AsyncClient, path: str) -> None:
    assert await raw_get(stack, "/static/js/app.js") == 200  # the same way, a real file
    assert await raw_get(stack, path) == 404, path


async def test_every_module_imported_is_served(api: httpx.AsyncClient) -> None:
    page = (await api.get("/")).text
    wanted = set(re.findall(r'(?:src|href)="(/static/[^"]+)"', page))
    files = sorted(p for p in WEB.rglob("*") if p.suffix in (".js", ".css"))
    assert any(p.name == "inbox.js" for p in files)
    for file in files:
        wanted.add("/static/" + file.relative_to(WEB).as_posix())
        for target in IMPORT.findall(file.read_text()):
            assert (file.parent / target).resolve().is_file(), (file.name, target)
    for path in sorted(wanted):
        resp = await api.get(path)
        assert resp.status_code == 200, (path, resp.status_code)

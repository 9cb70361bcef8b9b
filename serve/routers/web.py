"""The web inbox, served by the API itself at `/` (no second server).

The files under `serve/web/` are plain ES modules and CSS, shipped as they
are (no build step): read once per replica, gzip-compressed once, and served
with an ETag so a reload revalidates with a 304 instead of downloading them
again. Only files of known types under that directory are served; anything
else, including `..` tricks, is a 404. The page carries a strict Content
Security Policy (scripts and styles from this origin only, no inline code),
so even text that slipped past the DOM helper could not run."""
from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import Response

from core.errors import NotFound

router = APIRouter(include_in_schema=False)

ROOT = Path(__file__).resolve().parent.parent / "web"
TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
         ".html": "text/html; charset=utf-8", ".svg": "image/svg+xml",
         ".png": "image/png", ".ico": "image/x-icon"}
POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:;"
          " connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'none';"
          " form-action 'self'")


@dataclass(frozen=True)
class Asset:
    body: bytes
    gzipped: bytes
    etag: str
    media_type: str


def asset(relative: str) -> Asset:
    """One file of `serve/web`: the path resolved first, so `a/../b` and
    `./b` are the same cache entry as `b` and nothing outside is reachable."""
    path = (ROOT / relative).resolve()
    if ROOT not in path.parents or path.suffix not in TYPES or not path.is_file():
        raise NotFound("no such file")
    return _load(path)


@cache
def _load(path: Path) -> Asset:
    """Read and compressed once per process (the files ship with the code)."""
    body = path.read_bytes()
    return Asset(body, gzip.compress(body, 9, mtime=0),
                 '"' + hashlib.sha256(body).hexdigest()[:20] + '"', TYPES[path.suffix])


def serve_asset(request: Request, relative: str, headers: dict[str, str] | None = None,
                media_type: str | None = None) -> Response:
    """A file with its ETag (304 when the browser has it) and gzip when accepted."""
    found = asset(relative)
    common = {"ETag": found.etag, "Cache-Control": "no-cache", "Vary": "Accept-Encoding",
              "X-Content-Type-Options": "nosniff", **(headers or {})}
    wanted = request.headers.get("if-none-match", "")
    if found.etag in (tag.strip().removeprefix("W/") for tag in wanted.split(",")):
        return Response(status_code=304, headers=common)
    kind = media_type or found.media_type
    if accepts_gzip(request.headers.get("accept-encoding", "")):
        return Response(found.gzipped, media_type=kind,
                        headers={**common, "Content-Encoding": "gzip"})
    return Response(found.body, media_type=kind, headers=common)


def accepts_gzip(header: str) -> bool:
    """Whether an Accept-Encoding takes gzip (named or `*`, and not at q=0)."""
    for part in header.split(","):
        name, _, params = part.strip().partition(";")
        if name.strip().lower() in ("gzip", "*"):
            return params.replace(" ", "").lower() not in ("q=0", "q=0.0", "q=0.00")
    return False


PAGE_HEADERS = {"Content-Security-Policy": POLICY, "Referrer-Policy": "same-origin",
                "X-Frame-Options": "DENY"}


@router.api_route("/", methods=["GET", "HEAD"])
async def inbox(request: Request) -> Response:
    return serve_asset(request, "index.html", PAGE_HEADERS)


@router.get("/v1/auth/oauth/google/callback")
async def google_return(request: Request) -> Response:
    """Where Google sends the browser back (the redirect URI the start route
    names): the inbox page, which posts the code and state to the callback
    route and then goes back to `/`. `no-referrer`: the code in this address
    goes nowhere else."""
    return serve_asset(request, "index.html", {**PAGE_HEADERS, "Referrer-Policy": "no-referrer"})


@router.api_route("/static/{relative:path}", methods=["GET", "HEAD"])
async def static(relative: str, request: Request) -> Response:
    return serve_asset(request, relative)

"""The web chat widget's script (`GET /widget.js`) and a page to try it on
(`GET /widget/test?integration=<id>`; that page's origin, this engine's, must
then be one of the integration's allowed origins).

The script is read once per replica, with its gzip and its ETag (a hash of
its bytes): a browser revalidates with If-None-Match and gets a 304, and
any client that accepts gzip gets the smaller body."""
from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import HTMLResponse

from serve.replica import kept

router = APIRouter(tags=["webchat"])

WIDGET = Path(__file__).resolve().parent.parent / "web" / "widget.js"
JS = "application/javascript; charset=utf-8"
CACHE = "public, max-age=300"  # a new release reaches pages within minutes


@dataclass(frozen=True)
class Asset:
    body: bytes
    gzipped: bytes
    etag: str


def widget(state: object) -> Asset:
    def read() -> Asset:
        body = WIDGET.read_bytes()
        return Asset(body, gzip.compress(body, 9, mtime=0),
                     '"' + hashlib.sha256(body).hexdigest()[:32] + '"')

    return kept(state, "webchat_widget", read)


def _accepts_gzip(header: str) -> bool:
    for part in header.split(","):
        name, _, params = part.strip().partition(";")
        if name.strip().lower() in ("gzip", "*"):
            return params.replace(" ", "").lower() not in ("q=0", "q=0.0", "q=0.00")
    return False


@router.get("/widget.js", include_in_schema=False)
async def widget_js(request: Request) -> Response:
    asset = widget(request.app.state)
    headers = {"ETag": asset.etag, "Cache-Control": CACHE, "Vary": "Accept-Encoding",
               "X-Content-Type-Options": "nosniff"}
    wanted = request.headers.get("if-none-match", "")
    if asset.etag in (tag.strip().removeprefix("W/") for tag in wanted.split(",")):
        return Response(status_code=304, headers=headers)
    if _accepts_gzip(request.headers.get("accept-encoding", "")):
        headers["Content-Encoding"] = "gzip"
        return Response(asset.gzipped, media_type=JS, headers=headers)
    return Response(asset.body, media_type=JS, headers=headers)


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Bidi web chat: test page</title>
</head>
<body>
<main>
<h1>Web chat test page</h1>
<p>The chat button is at the bottom right. This page's origin must be one of
the integration's allowed origins.</p>
</main>
<script src="/widget.js" data-integration="{integration}" async></script>
</body>
</html>
"""


@router.get("/widget/test", include_in_schema=False, response_class=HTMLResponse)
async def widget_test(integration: UUID = Query(description="A web chat integration")) -> str:
    # A UUID: nothing of the caller's reaches the page but its canonical form.
    return PAGE.replace("{integration}", str(integration))

"""The web chat widget's script (`GET /widget.js`) and a page to try it on
(`GET /widget/test?integration=<id>`; that page's origin, this engine's, must
then be one of the integration's allowed origins).

The script is served like the inbox's files (serve.routers.web: read and
gzipped once per replica, an ETag to revalidate with), cached by pages for
a few minutes."""
from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import HTMLResponse

from serve.routers.web import serve_asset

router = APIRouter(tags=["webchat"])

JS = "application/javascript; charset=utf-8"
CACHE = "public, max-age=300"  # a new release reaches pages within minutes


@router.get("/widget.js", include_in_schema=False)
async def widget_js(request: Request) -> Response:
    return serve_asset(request, "widget.js", {"Cache-Control": CACHE}, media_type=JS)


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

"""A raw-ASGI fast path for the hottest routes. FastAPI's routing, dependency
and middleware layers cost about a third of a cheap request in this process;
these routes skip them and run the same functions their documented FastAPI
routes run:

- `GET /healthz` (liveness probes, often): the same constant answer;
- `POST /v1/channels/api/{integration_id}/messages` (channels' inbound
  webhooks): `serve.routers.channels_api.accept`;
- `POST /v1/channels/telegram/{integration_id}/webhook` (Telegram's updates):
  `serve.routers.channels_telegram.accept_update`;
- `POST /v1/channels/whatsapp/webhook` and
  `/v1/channels/whatsapp/{integration_id}/webhook` (Meta's notifications):
  `serve.routers.channels_whatsapp.accept_notification`;
- `GET /v1/contacts` (the CRM's list and search):
  `serve.auth.authenticate` / `authorize` and
  `serve.routers.contacts.contact_page` (`storage.contacts.read_page`, the
  page encoded from the rows).

It stands in front of FastAPI's own middleware (serve.app.App), whose
error, telemetry and body-size layers do nothing a fast route uses: it
answers its own errors, a bug's with the same 500 envelope.

A fast path only takes requests it can read without doubt: anything unusual
(an unknown or repeated query parameter, a value out of bounds, a non-canonical
UUID) goes on to the app unchanged, whose validation answers it. Errors are
answered with the same envelopes as the app's handlers (`serve.errors`)."""
from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl
from uuid import UUID

from starlette.responses import Response

from core.errors import Invalid
from core.timings import TIMINGS
from serve.auth import authenticate, authorize, bearer_of, forwarded_ip
from serve.errors import EXPECTED, expected_response, unexpected_response
from serve.pagination import DEFAULT_LIMIT, MAX_LIMIT, MAX_PAGE, PageParams
from serve.routers.channels_api import MAX_BODY, accept
from serve.routers.channels_telegram import accept_update
from serve.routers.channels_whatsapp import accept_notification
from serve.routers.contacts import Q_MAX, SOURCE_MAX, TAGS_MAX, contact_page
from storage.contacts import ContactFilters

INBOUND_PREFIX = "/v1/channels/api/"
TELEGRAM_PREFIX, TELEGRAM_SUFFIX = "/v1/channels/telegram/", "/webhook"
WHATSAPP_PREFIX = "/v1/channels/whatsapp/"
WHATSAPP_APP = "/v1/channels/whatsapp/webhook"
HEALTHZ = "/healthz"
HEALTHY = Response(b'{"status":"ok"}', media_type="application/json")
CONTACTS = "/v1/contacts"


class FastPath:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            path, method = scope["path"], scope["method"]
            if path == HEALTHZ and method == "GET":
                await HEALTHY(scope, receive, send)
                return
            if method == "GET" and path == CONTACTS:
                query = contact_query(scope["query_string"])
                if query is not None:
                    await _answer(_contacts(scope, *query), scope, receive, send)
                    return
            elif (method == "POST" and path.startswith(INBOUND_PREFIX)
                  and path.endswith("/messages")):
                integration_id = _canonical_uuid(path[len(INBOUND_PREFIX):-len("/messages")])
                if integration_id is not None:
                    await _answer(_inbound(scope, receive, integration_id), scope, receive, send)
                    return
            elif method == "POST" and path.endswith(TELEGRAM_SUFFIX):
                handle: Any = None
                if path.startswith(TELEGRAM_PREFIX):
                    handle = accept_update
                    integration_id = _canonical_uuid(
                        path[len(TELEGRAM_PREFIX):-len(TELEGRAM_SUFFIX)])
                elif path == WHATSAPP_APP:
                    handle, integration_id = _whatsapp_app, ""
                elif path.startswith(WHATSAPP_PREFIX):
                    handle = accept_notification
                    integration_id = _canonical_uuid(
                        path[len(WHATSAPP_PREFIX):-len(TELEGRAM_SUFFIX)])
                if handle is not None and integration_id is not None:
                    await _answer(_webhook(handle, 200, scope, receive, integration_id),
                                  scope, receive, send)
                    return
        await self.app(scope, receive, send)


async def _answer(work: Any, scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Run a fast route: its response, or the envelope of an expected error."""
    try:
        response = await work
    except EXPECTED as exc:
        response = expected_response(exc)
    except Exception as exc:  # FastAPI's error layer is behind the fast path (serve.app.App)
        response = unexpected_response(scope["method"], scope["path"], exc)
    await response(scope, receive, send)


def _headers(scope: dict[str, Any]) -> dict[str, str]:
    """Request headers by lower-case name; the first of repeated ones, as
    Starlette's `Request.headers.get` reads them."""
    found: dict[str, str] = {}
    for key, value in scope["headers"]:
        found.setdefault(key.decode("latin-1").lower(), value.decode("latin-1"))
    return found


def _canonical_uuid(text: str) -> str | None:
    if len(text) != 36:
        return None
    try:
        return str(UUID(text))
    except ValueError:
        return None


async def _inbound(scope: dict[str, Any], receive: Any, integration_id: str) -> Response:
    return await _webhook(accept, 202, scope, receive, integration_id)


async def _whatsapp_app(state: Any, _: str, headers: Mapping[str, str], body: bytes) -> bytes:
    return await accept_notification(state, None, headers, body)


async def _webhook(handle: Any, status: int, scope: dict[str, Any], receive: Any,
                   integration_id: str) -> Response:
    """A channel's webhook: its body to `handle` (verify, parse, commit)."""
    started = time.perf_counter()
    body = await _read(receive)
    try:
        answer = await handle(scope["app"].state, integration_id, _headers(scope), body)
    finally:
        TIMINGS.observe("handler", time.perf_counter() - started)
    return Response(answer, status_code=status, media_type="application/json")


async def _read(receive: Any) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Invalid("the client went away")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise Invalid(f"the body is larger than {MAX_BODY} bytes")
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def _contacts(scope: dict[str, Any], page: PageParams,
                    filters: ContactFilters) -> Response:
    runtime = scope["app"].state.runtime
    headers = _headers(scope)
    client = scope.get("client")
    principal = await authenticate(
        runtime, bearer_of(headers.get("authorization")), headers.get("x-api-key"),
        forwarded_ip(headers.get("x-forwarded-for"), client[0] if client else None,
                     runtime.settings.trusted_proxies),
        headers.get("user-agent"))
    await authorize(runtime, principal, "crm:read", "GET", CONTACTS)
    return await contact_page(runtime.db, principal, filters, page)


def _count(text: str, low: int, high: int) -> int | None:
    if not (text.isascii() and text.isdigit()):
        return None
    number = int(text)
    return number if low <= number <= high else None


def contact_query(query_string: bytes) -> tuple[PageParams, ContactFilters] | None:
    """`GET /v1/contacts`'s query when it is plainly valid (the bounds of
    `list_contacts` and `page_params`), else None."""
    single: dict[str, str] = {}
    tags: list[str] = []
    for key, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if key == "tag":
            tags.append(value)
        elif key in single:
            return None
        else:
            single[key] = value
    page = _count(single.pop("page", "1"), 1, MAX_PAGE)
    limit = _count(single.pop("limit", str(DEFAULT_LIMIT)), 1, MAX_LIMIT)
    q, source = single.pop("q", None), single.pop("source", None)
    company_id = single.pop("company_id", None)
    company = _canonical_uuid(company_id) if company_id is not None else None
    if (single or page is None or limit is None or len(tags) > TAGS_MAX
            or (q is not None and len(q) > Q_MAX)
            or (source is not None and len(source) > SOURCE_MAX)
            or (company_id is not None and company is None)):
        return None
    return PageParams(page, limit), ContactFilters(
        q, tags or None, UUID(company) if company else None, source)

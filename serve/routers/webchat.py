"""The web chat visitor's API (public: no team sign-in), `/v1/webchat/*`.

- `POST /v1/webchat/{integration_id}/sessions`: a visitor session, from a
  page on one of the integration's `allowed_origins` (the `Origin` header;
  none is refused). Anonymous visitors get a MAC-ed `visitor_id` to come
  back with; a visitor the website names (`identifier`, `identifier_hash`)
  is the same chat on every device. The answer carries a visitor token
  (channels.webchat), good for nothing else.
- `GET /v1/webchat/messages` and `POST /v1/webchat/messages` with the
  visitor token: the visitor's own chat only (storage.webchat), and a new
  message handed to its chat actor like every channel's, answered 202 after
  COMMIT (`client_id` is its dedup key).

CORS: every answer (errors too) names the caller's origin in
`Access-Control-Allow-Origin` only when the integration allows it (by path
id, or by the token's integration). A preflight carries no token, so the
token routes' preflight admits an origin some active web chat allows; the
request itself is then checked against the token's integration. The
integration (origins, secret) comes from the replica's short cache
(serve.inbound.IntegrationCache), as every channel's webhook does it.

Limits: sessions per client IP and per integration, messages per visitor
(BIDI_WEBCHAT_*), each a 429 with Retry-After past its bucket."""
from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field

from channels import webchat
from channels.webchat import CHANNEL, OriginNotAllowed, VisitorClaims
from core.crypto import Cipher
from core.errors import BidiError, Unauthorized
from core.messages import InboundMessage, Sender
from serve import errors
from serve.auth import bearer_of, client_ip, runtime_of
from serve.inbound import deliver
from serve.models import Strict
from serve.replica import kept
from serve.routers.channels_api import integration_cache
from serve.throttle import refuse
from storage import webchat as transcripts
from storage.chats import derived_id
from storage.integrations import Integration
from storage.ratelimit import TokenBucket

ALLOW_HEADERS = "Authorization, Content-Type"
PREFLIGHT_MAX_AGE = "600"
ORIGINS_TTL = 30.0  # a preflight's "some web chat allows this origin", per replica
ORIGINS_SIZE = 10_000


# -- what a replica keeps -------------------------------------------------------

@dataclass
class Buckets:
    sessions_ip: TokenBucket
    sessions: TokenBucket  # per integration
    messages: TokenBucket  # per visitor


@dataclass
class KnownOrigins:
    """Origins some active web chat allows, remembered briefly (found or not)."""

    load: Callable[[str], Awaitable[bool]]
    _seen: OrderedDict[str, tuple[float, bool]] = field(default_factory=OrderedDict)

    async def allowed(self, origin: str) -> bool:
        now = time.monotonic()
        seen = self._seen.get(origin)
        if seen is not None and now - seen[0] <= ORIGINS_TTL:
            return seen[1]
        found = await self.load(origin)
        self._seen[origin] = (now, found)
        while len(self._seen) > ORIGINS_SIZE:
            self._seen.popitem(last=False)
        return found


def buckets(state: Any) -> Buckets:
    runtime = state.runtime
    s, redis = runtime.settings, runtime.redis
    return kept(state, "webchat_buckets", lambda: Buckets(
        TokenBucket(redis, s.webchat_sessions_burst_ip, s.webchat_sessions_per_minute_ip / 60),
        TokenBucket(redis, s.webchat_sessions_burst, s.webchat_sessions_per_minute / 60),
        TokenBucket(redis, s.webchat_messages_burst, s.webchat_messages_per_minute / 60)))


def known_origins(state: Any) -> KnownOrigins:
    db = state.runtime.db

    async def load(origin: str) -> bool:
        async with db.system_tx() as conn:
            return await transcripts.origin_known(conn, origin)

    return kept(state, "webchat_origins", lambda: KnownOrigins(load))


def visitor_key(state: Any) -> bytes:
    """The key visitor ids are MAC-ed with (derived: one secret fewer to keep)."""
    settings = state.runtime.settings
    return kept(state, "webchat_key", lambda: Cipher(
        settings.encryption_key.get_secret_value()).derive(b"webchat-visitor"))


# -- who is calling ----------------------------------------------------------------

async def integration_of(state: Any, integration_id: str) -> Integration:
    """An active web chat integration (404 for anything else)."""
    return await integration_cache(state).get(integration_id, CHANNEL)


def check_origin(integration: Integration, origin: str | None) -> None:
    if not webchat.origin_allowed(integration, origin):
        raise OriginNotAllowed("this site is not one of the web chat's allowed origins")


def token_secret(state: Any) -> str:
    return str(state.runtime.settings.jwt_secret.get_secret_value())


async def visitor(request: Request) -> VisitorClaims:
    """The visitor of a token route: a valid visitor token, its integration
    still active, and the request, when it names an origin, from one of its
    origins. Browsers send no Origin on a same-origin GET; the token shows
    the session began on an allowed site, and a program can write any
    Origin it likes anyway: the header guards browsers, not the API."""
    token = bearer_of(request.headers.get("authorization"))
    if not token:
        raise Unauthorized("a visitor token is required: Authorization: Bearer <token>")
    claims = webchat.decode_token(token_secret(request.app.state), token)
    integration = await integration_of(request.app.state, claims.integration_id)
    request.state.webchat = integration
    origin = request.headers.get("origin")
    if origin is not None:
        check_origin(integration, origin)
    return claims


async def cors_integration(request: Request) -> Integration | None:
    """The integration whose origins an answer may name (None: none)."""
    found: Integration | None = getattr(request.state, "webchat", None)
    if found is not None:
        return found
    state = request.app.state
    try:
        named = request.path_params.get("integration_id")
        if named is not None:
            return await integration_of(state, str(named))
        token = bearer_of(request.headers.get("authorization"))
        if token:
            claims = webchat.decode_token(token_secret(state), token)
            return await integration_of(state, claims.integration_id)
    except BidiError:
        pass
    return None


def allow(response: Response, origin: str) -> None:
    response.headers["Access-Control-Allow-Origin"] = origin
    response.headers["Access-Control-Allow-Headers"] = ALLOW_HEADERS
    response.headers["Access-Control-Expose-Headers"] = "Retry-After"


class CorsRoute(APIRoute):
    """A route whose every answer, errors included, carries its CORS headers:
    the widget must read a 401 or a 429 to act on it."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def with_cors(request: Request) -> Response:
            response: Response
            try:
                response = await handler(request)
            except RequestValidationError as exc:
                response = errors.validation_response(exc)
            except errors.EXPECTED as exc:
                response = errors.expected_response(exc)
            response.headers["Vary"] = "Origin"
            origin = request.headers.get("origin")
            if origin and request.method != "OPTIONS":
                integration = await cors_integration(request)
                if integration is not None and webchat.origin_allowed(integration, origin):
                    allow(response, origin)
            return response

        return with_cors


router = APIRouter(prefix="/v1/webchat", tags=["webchat"], route_class=CorsRoute)


# -- sessions ------------------------------------------------------------------------

class SessionIn(Strict):
    visitor_id: str | None = Field(default=None, min_length=1, max_length=100,
                                   description="From an earlier session: resumes its chat")
    identifier: str | None = Field(default=None, min_length=1, max_length=255,
                                   description="The website's id for a signed-in visitor")
    identifier_hash: str | None = Field(default=None, min_length=1, max_length=128,
                                        description="hex HMAC-SHA256(secret, identifier)")
    name: str | None = Field(default=None, min_length=1, max_length=255)
    email: str | None = Field(default=None, min_length=3, max_length=255,
                              pattern=r"^[^@\s]+@[^@\s]+$")


class SessionOut(BaseModel):
    token: str = Field(description="Authorization: Bearer <token> on the visitor routes")
    expires_at: datetime
    visitor_id: str
    chat_id: UUID
    identified: bool


def identified(integration: Integration, body: SessionIn) -> bool:
    """Whether the visitor is who `identifier` says. A wrong hash, or none
    where verification is on, is refused; without verification an identifier
    without a hash names no one (anyone could claim anyone's chat), and the
    visitor stays anonymous."""
    if body.identifier is None:
        if body.identifier_hash is not None:
            raise Unauthorized("identifier_hash without an identifier")
        return False
    needed = bool(integration.config.get("identity_verification"))
    if body.identifier_hash is None and not needed:
        return False
    if not webchat.identity_ok(integration.secrets.get("secret"), body.identifier,
                               body.identifier_hash):
        raise Unauthorized("identifier_hash is not the identifier's HMAC")
    return True


@router.options("/{integration_id}/sessions", include_in_schema=False)
async def sessions_preflight(integration_id: UUID, request: Request) -> Response:
    integration = await integration_of(request.app.state, str(integration_id))
    origin = request.headers.get("origin")
    check_origin(integration, origin)
    return preflight(origin or "", "POST, OPTIONS")


def preflight(origin: str, methods: str) -> Response:
    response = Response(status_code=204)
    allow(response, origin)
    response.headers["Access-Control-Allow-Methods"] = methods
    response.headers["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE
    return response


@router.post("/{integration_id}/sessions", status_code=201, response_model=SessionOut)
async def start_session(integration_id: UUID, body: SessionIn, request: Request) -> Any:
    state = request.app.state
    integration = await integration_of(state, str(integration_id))
    request.state.webchat = integration
    check_origin(integration, request.headers.get("origin"))
    limits = buckets(state)
    refuse(await limits.sessions_ip.take(
        f"rate_limit:webchat:ip:{client_ip(request) or 'unknown'}"),
        "too many chat sessions from this address; try again later")
    refuse(await limits.sessions.take(f"rate_limit:webchat:integration:{integration.id}"),
           "too many chat sessions on this site; try again later")
    key = visitor_key(state)
    visitor_id = webchat.check_visitor_id(key, integration.id, body.visitor_id) \
        if body.visitor_id else webchat.issue_visitor_id(key, integration.id)
    known = identified(integration, body)
    thread = f"i:{body.identifier}" if known else f"v:{visitor_id}"
    chat_id = derived_id("chat", integration.org_id, CHANNEL, integration.id, thread)
    expires = int(time.time()) + runtime_of(request).settings.webchat_token_ttl
    claims = VisitorClaims(org_id=integration.org_id, integration_id=integration.id,
                           chat_id=chat_id, thread_id=thread, visitor_id=visitor_id,
                           identified=known, expires_at=expires, name=body.name,
                           email=body.email)
    return {"token": webchat.issue_token(token_secret(state), claims),
            "expires_at": datetime.fromtimestamp(expires, UTC), "visitor_id": visitor_id,
            "chat_id": chat_id, "identified": known}


# -- messages ----------------------------------------------------------------------

class AttachmentOut(BaseModel):
    id: UUID
    kind: str | None = None
    name: str | None = None
    mime_type: str | None = None
    size: int | None = None


class VisitorMessage(BaseModel):
    id: UUID
    content: str
    is_incoming: bool = Field(description="True: the visitor wrote it")
    sender_type: str
    status: str
    created_at: datetime | None
    attachments: list[AttachmentOut] = Field(default_factory=list)


class Transcript(BaseModel):
    limit: int
    next_cursor: str | None = Field(description="`before` for the next (older) page")
    data: list[VisitorMessage]


class MessageIn(Strict):
    content: str = Field(min_length=1, max_length=webchat.MAX_TEXT)
    client_id: str = Field(min_length=1, max_length=255,
                           description="The widget's id for this message: sent twice, stored once")


class Accepted(BaseModel):
    id: UUID
    chat_id: UUID
    duplicate: bool


@router.options("/messages", include_in_schema=False)
async def messages_preflight(request: Request) -> Response:
    origin = request.headers.get("origin")
    if not origin or not await known_origins(request.app.state).allowed(
            _normal(origin)):
        raise OriginNotAllowed("this site is not an allowed origin of any web chat")
    return preflight(origin, "GET, POST, OPTIONS")


def _normal(origin: str) -> str:
    try:
        return webchat.normalise_origin(origin)
    except BidiError:
        return ""


@router.get("/messages", response_model=Transcript)
async def list_messages(request: Request,
                        before: str | None = Query(None, max_length=512),
                        limit: int = Query(50, ge=1, le=100)) -> Any:
    """The visitor's chat, newest first (never an agent's unapproved draft)."""
    claims = await visitor(request)
    async with runtime_of(request).db.tenant_tx(claims.org_id) as conn:
        return await transcripts.transcript(conn, claims.chat_id, limit=limit, before=before)


@router.post("/messages", status_code=202, response_model=Accepted)
async def send_message(body: MessageIn, request: Request) -> Any:
    claims = await visitor(request)
    refuse(await buckets(request.app.state).messages.take(
        f"rate_limit:webchat:visitor:{claims.integration_id}:{claims.thread_id}"),
        "too many messages; slow down")
    message = InboundMessage(
        organization_id=claims.org_id, integration_id=claims.integration_id, channel=CHANNEL,
        thread_id=claims.thread_id, external_id=body.client_id,
        sender=Sender(id=claims.thread_id, name=webchat.display_name(claims),
                      email=claims.email),
        text=body.content, received_at=datetime.now(UTC))
    return await deliver(runtime_of(request).actors, message)

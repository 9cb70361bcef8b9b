"""The web chat channel (a website's live-chat widget): its protocol only.

A visitor has no account. The engine hands out two things and takes back
only what it made itself:

- a visitor id, `v1.<random>.<mac>`: the MAC (a key derived from the
  engine's encryption key) is what makes a guessed or forged id worthless,
  so a reload may send it back to resume its chat and nothing else can;
- a session token, a JWT of its own type and audience (`visitor`,
  `bidi-webchat`) naming org, integration, chat and thread. Team routes
  require `typ=access` and audience `bidi-api`, and this module requires
  the visitor's: neither kind of token opens the other's doors.

A visitor the website vouches for sends `identifier` and
`identifier_hash` = hex HMAC-SHA256(integration secret, identifier), as
Chatwoot and Intercom do; the thread is then the identifier (the same
person on any device), else the anonymous visitor id.

Origins are compared exactly, after normalising: scheme and host lowercase,
the default port dropped, no path. Replies need no provider: the visitor's
WebSocket carries them, so `WebchatSender.send` answers `sent` at once."""
from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import jwt

from core.errors import Forbidden, Invalid, Unauthorized
from core.messages import OutboundMessage, Receipt
from core.security import ALGORITHM, ISSUER, decode_jwt
from storage.integrations import Integration

CHANNEL = "webchat"
AUDIENCE = "bidi-webchat"
TOKEN_TYPE = "visitor"
MAX_ORIGINS = 20
MAX_TEXT = 4096
VISITOR_PREFIX = "v1"
DEFAULT_PORTS = {"http": 80, "https": 443}


def normalise_origin(value: str) -> str:
    """`scheme://host[:port]` lowercase, the default port dropped; `Invalid`
    for anything else (a path, a query, credentials, another scheme)."""
    text = value.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise Invalid(f"{value!r} is not an origin") from None
    if parts.scheme.lower() not in DEFAULT_PORTS or not parts.hostname or parts.path \
            or parts.query or parts.fragment or parts.username or parts.password \
            or "*" in text or text.endswith(":"):
        raise Invalid(f"{value!r} is not an origin: scheme://host[:port], no path")
    scheme, host = parts.scheme.lower(), parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is None or port == DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def parse_origins(values: list[str]) -> list[str]:
    """The allowed origins, normalised, duplicates dropped, 1..MAX_ORIGINS."""
    if not 1 <= len(values) <= MAX_ORIGINS:
        raise Invalid(f"allowed_origins needs 1 to {MAX_ORIGINS} origins",
                      field="config.allowed_origins")
    found: list[str] = []
    for value in values:
        try:
            origin = normalise_origin(value)
        except Invalid as exc:
            raise Invalid(exc.message, field="config.allowed_origins") from None
        if origin not in found:
            found.append(origin)
    return found


def origin_allowed(integration: Integration, origin: str | None) -> bool:
    """Whether a request from `origin` (its `Origin` header) may use `integration`."""
    if not origin:
        return False
    try:
        wanted = normalise_origin(origin)
    except Invalid:
        return False
    return wanted in (integration.config.get("allowed_origins") or ())


def new_secret() -> str:
    """The identity-verification key: the website's backend HMACs identifiers with it."""
    return secrets.token_hex(32)


def identifier_hash(secret: str, identifier: str) -> str:
    return hmac.new(secret.encode(), identifier.encode(), hashlib.sha256).hexdigest()


def identity_ok(secret: str | None, identifier: str, given: str | None) -> bool:
    if not secret or not given:
        return False
    return hmac.compare_digest(identifier_hash(secret, identifier), given.strip().lower())


# -- visitor ids ------------------------------------------------------------

def _mac(key: bytes, integration_id: str, nonce: str) -> str:
    text = f"{integration_id}:{nonce}".encode()
    return hmac.new(key, text, hashlib.sha256).hexdigest()[:32]


def issue_visitor_id(key: bytes, integration_id: str) -> str:
    """A fresh visitor id, valid for this integration only."""
    nonce = secrets.token_hex(16)
    return f"{VISITOR_PREFIX}.{nonce}.{_mac(key, integration_id, nonce)}"


def check_visitor_id(key: bytes, integration_id: str, visitor_id: str) -> str:
    """`visitor_id` if this engine issued it for this integration; else `Unauthorized`."""
    parts = visitor_id.split(".")
    if len(parts) != 3 or parts[0] != VISITOR_PREFIX or len(parts[1]) != 32 \
            or not hmac.compare_digest(parts[2], _mac(key, integration_id, parts[1])):
        raise Unauthorized("unknown visitor_id; start without one")
    return visitor_id


# -- session tokens -----------------------------------------------------------

@dataclass(frozen=True)
class VisitorClaims:
    org_id: str
    integration_id: str
    chat_id: str
    thread_id: str  # the visitor's conversation: `v:<visitor id>` or `i:<identifier>`
    visitor_id: str
    identified: bool
    expires_at: int
    name: str | None = None
    email: str | None = None


def display_name(claims: VisitorClaims) -> str:
    """What the inbox calls a visitor: the name the site gave, else the
    identifier it vouched for, else "Visitor" and a few characters of the
    anonymous id (enough to tell two apart in a list)."""
    if claims.name:
        return claims.name
    if claims.identified and claims.thread_id.startswith("i:"):
        return claims.thread_id[2:]
    nonce = claims.visitor_id.split(".")[1] if claims.visitor_id.count(".") == 2 else ""
    return f"Visitor {nonce[:6]}".rstrip()


def issue_token(secret: str, claims: VisitorClaims) -> str:
    body: dict[str, Any] = {
        "sub": claims.visitor_id, "org": claims.org_id, "int": claims.integration_id,
        "chat": claims.chat_id, "thr": claims.thread_id, "idn": claims.identified,
        "typ": TOKEN_TYPE, "aud": AUDIENCE, "iss": ISSUER, "iat": int(time.time()),
        "exp": claims.expires_at, "jti": uuid.uuid4().hex}
    if claims.name:
        body["name"] = claims.name
    if claims.email:
        body["email"] = claims.email
    return jwt.encode(body, secret, algorithm=ALGORITHM)


def decode_token(secret: str, token: str) -> VisitorClaims:
    """The claims of a valid visitor token, or `Unauthorized`."""
    data = decode_jwt(secret, token, audience=AUDIENCE, typ=TOKEN_TYPE, name="visitor token",
                      expired="visitor session expired; start a new one")
    try:
        return VisitorClaims(
            org_id=str(uuid.UUID(str(data["org"]))),
            integration_id=str(uuid.UUID(str(data["int"]))),
            chat_id=str(uuid.UUID(str(data["chat"]))), thread_id=str(data["thr"]),
            visitor_id=str(data["sub"]), identified=bool(data.get("idn")),
            expires_at=int(data["exp"]), name=data.get("name"), email=data.get("email"))
    except (KeyError, ValueError):
        raise Unauthorized("invalid visitor token") from None


class WebchatSender:
    """Outbound: nothing to call. The reply is in Postgres and on the event
    stream the visitor's WebSocket reads, so it is `sent` as soon as it is
    stored; its id stands for the provider's."""

    async def send(self, integration: Integration, message: OutboundMessage) -> Receipt:
        return Receipt(external_id=message.message_id, sent_at=datetime.now(UTC))


class OriginNotAllowed(Forbidden):
    """A request from a site the integration does not name."""

    code = "origin_not_allowed"

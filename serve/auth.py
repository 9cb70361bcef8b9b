"""Who is calling: a user session (a bearer access token naming one org and
a role) or an API key (`X-API-Key`, scoped). A key is not a user: its
principal has no `user_id` (its creator is kept only to attribute audit
rows), and its scopes are cut down to what its creator's current role still
allows — a key stops working when its creator leaves the organization.

`require(permission)` is the dependency every protected route uses: it
authenticates, authorizes against core.rbac, and applies the per-caller,
per-route rate limit. `session` guards what only a signed-in person may do
(their profile, sessions, second factor, org switch, invitations)."""
from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from typing import TYPE_CHECKING

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param

from core.errors import Forbidden, RateLimited, Unauthorized
from core.rbac import permissions_of
from core.security import AccessClaims, decode_access_token
from storage import api_keys
from storage.api_keys import KeyGrant
from storage.audit import Actor

if TYPE_CHECKING:
    from serve.app import Runtime

bearer_scheme = HTTPBearer(auto_error=False, scheme_name="bearer",
                           description="Access token from /v1/auth/login")
api_key_scheme = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="apiKey",
                              description="An API key from /v1/api-keys")
API_KEY_PREFIX = "bidi"


class Caller(StrEnum):
    """The kinds of caller a route may admit."""

    USER = "user"        # a person signed in: an access token
    API_KEY = "api_key"  # a program holding an organization's key


@dataclass(frozen=True)
class Principal:
    org_id: str
    user_id: str | None  # the signed-in user; None for an API key
    role: str
    permissions: frozenset[str]
    api_key_id: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    created_by: str | None = None  # an API key's creator, for audit rows only
    issued_at: float = 0.0  # when the access token was issued (revocation cut-off)

    @property
    def caller(self) -> Caller:
        return Caller.API_KEY if self.api_key_id is not None else Caller.USER

    @property
    def user(self) -> str:
        """The signed-in user's id (routes behind `session` always have one)."""
        if self.user_id is None:
            raise Forbidden("this needs a signed-in user; an API key is not a user")
        return self.user_id

    @property
    def actor(self) -> Actor:
        return Actor(self.org_id, self.user_id or self.created_by, self.ip, self.user_agent)

    @property
    def rate_key(self) -> str:
        return f"key:{self.api_key_id}" if self.api_key_id else f"user:{self.user_id}"


def runtime_of(request: Request) -> Runtime:
    return request.app.state.runtime  # type: ignore[no-any-return]


def _address(text: str) -> IPv4Address | IPv6Address | None:
    try:
        address = ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # a dual-stack socket's view of an IPv4 peer
    return address


def forwarded_ip(forwarded: str | None, peer: str | None,
                 trusted: Sequence[IPv4Network | IPv6Network] = ()) -> str | None:
    """The caller's address, normalised, or None. X-Forwarded-For counts only
    when the socket peer is a trusted proxy: walking it from the right (the
    hop nearest to us), trusted hops are skipped and the first untrusted
    address is the client. Anyone can write the left part of the header, so
    an entry that is not an address ends the walk at the last trusted hop."""
    nearest = _address(peer) if peer else None
    if nearest is None:
        return None
    if not forwarded or not any(nearest in net for net in trusted):
        return str(nearest)
    for hop in reversed(forwarded.split(",")):
        address = _address(hop)
        if address is None:
            break
        nearest = address
        if not any(address in net for net in trusted):
            break
    return str(nearest)


def client_ip(request: Request) -> str | None:
    forwarded = ",".join(request.headers.getlist("x-forwarded-for"))
    return forwarded_ip(forwarded, request.client.host if request.client else None,
                        runtime_of(request).settings.trusted_proxies)


def bearer_of(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, as `bearer_scheme` reads it."""
    scheme, credentials = get_authorization_scheme_param(authorization)
    if not (authorization and scheme and credentials) or scheme.lower() != "bearer":
        return None
    return credentials


async def _from_api_key(runtime: Runtime, raw: str) -> KeyGrant:
    parts = raw.split("_", 2)
    if len(parts) != 3 or parts[0] != API_KEY_PREFIX:
        raise Unauthorized("invalid API key")
    _, prefix, secret = parts
    async with runtime.db.system_tx() as conn:
        return await api_keys.authenticate(conn, prefix, secret)


def session_claims(runtime: Runtime, token: str) -> AccessClaims:
    """The claims of a valid access token whose session was not revoked."""
    claims = decode_access_token(runtime.settings.jwt_secret.get_secret_value(), token)
    revocations = runtime.revocations
    if revocations is not None and revocations.revoked(claims.org_id, claims.user_id,
                                                       claims.issued_at):
        raise Unauthorized("this session was revoked; sign in again")
    return claims


async def authenticate(runtime: Runtime, bearer: str | None, api_key: str | None,
                       ip: str | None, agent: str | None) -> Principal:
    """The caller named by a bearer token or an API key, or Unauthorized."""
    if bearer:
        claims = session_claims(runtime, bearer)
        return Principal(claims.org_id, claims.user_id, claims.role,
                         permissions_of(claims.role), ip=ip, user_agent=agent,
                         issued_at=claims.issued_at)
    if api_key:
        grant = await _from_api_key(runtime, api_key)
        return Principal(grant.org_id, None, Caller.API_KEY.value, grant.scopes,
                         api_key_id=grant.key_id, ip=ip, user_agent=agent,
                         created_by=grant.created_by)
    raise Unauthorized("authentication required: a bearer token or an X-API-Key")


async def authorize(runtime: Runtime, principal: Principal, permission: str,
                    method: str, route: str) -> None:
    """Forbidden without the permission; RateLimited past the caller's bucket
    for this route (its template, e.g. `/v1/contacts/{contact_id}`)."""
    if permission not in principal.permissions:
        raise Forbidden(f"this action needs the {permission!r} permission")
    decision = await runtime.bucket.take(
        f"rate_limit:api:{principal.rate_key}:{method}:{route}")
    if not decision.allowed:
        raise RateLimited("too many requests", retry_after=decision.retry_after)


async def current_principal(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(bearer_scheme),
    api_key: str | None = Depends(api_key_scheme),
) -> Principal:
    return await authenticate(runtime_of(request),
                              credentials.credentials if credentials is not None else None,
                              api_key, client_ip(request), request.headers.get("user-agent"))


async def session(principal: Principal = Depends(current_principal)) -> Principal:
    """A signed-in user, never an API key: the dependency of every route about
    a person (profile, sessions, second factor, org switch, invitations)."""
    principal.user  # noqa: B018 -- Forbidden for an API key: it has no user
    return principal


def require(permission: str) -> Callable[..., Awaitable[Principal]]:
    async def dependency(request: Request,
                         principal: Principal = Depends(current_principal)) -> Principal:
        route = request.scope.get("route")
        await authorize(runtime_of(request), principal, permission, request.method,
                        getattr(route, "path", request.url.path))
        return principal

    return dependency

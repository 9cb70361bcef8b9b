"""Who is calling: a bearer access token (names one org and a role) or an
API key (`X-API-Key`, scoped). `require(permission)` is the dependency every
protected route uses: it authenticates, authorizes against core.rbac, and
applies the per-caller, per-route rate limit."""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param

from core.errors import Forbidden, RateLimited, Unauthorized
from core.rbac import permissions_of
from core.security import decode_access_token, digest, same
from storage.audit import Actor

if TYPE_CHECKING:
    from serve.app import Runtime

bearer_scheme = HTTPBearer(auto_error=False, scheme_name="bearer",
                           description="Access token from /v1/auth/login")
api_key_scheme = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="apiKey",
                              description="An API key from /v1/api-keys")
API_KEY_PREFIX = "bidi"


@dataclass(frozen=True)
class Principal:
    org_id: str
    user_id: str | None
    role: str
    permissions: frozenset[str]
    api_key_id: str | None = None
    ip: str | None = None
    user_agent: str | None = None

    @property
    def actor(self) -> Actor:
        return Actor(self.org_id, self.user_id, self.ip, self.user_agent)

    @property
    def rate_key(self) -> str:
        return f"key:{self.api_key_id}" if self.api_key_id else f"user:{self.user_id}"


def runtime_of(request: Request) -> Runtime:
    return request.app.state.runtime  # type: ignore[no-any-return]


def forwarded_ip(forwarded: str | None, peer: str | None) -> str | None:
    """The caller's address: the first X-Forwarded-For hop, else the socket peer."""
    if forwarded:
        return forwarded.split(",")[0].strip()
    return peer


def client_ip(request: Request) -> str | None:
    return forwarded_ip(request.headers.get("x-forwarded-for"),
                        request.client.host if request.client else None)


def bearer_of(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, as `bearer_scheme` reads it."""
    scheme, credentials = get_authorization_scheme_param(authorization)
    if not (authorization and scheme and credentials) or scheme.lower() != "bearer":
        return None
    return credentials


async def _from_api_key(runtime: Runtime, raw: str) -> tuple[str, str | None, str, frozenset[str]]:
    parts = raw.split("_", 2)
    if len(parts) != 3 or parts[0] != API_KEY_PREFIX:
        raise Unauthorized("invalid API key")
    _, prefix, secret = parts
    async with runtime.db.system_tx() as conn:
        row = await conn.fetchrow(
            "SELECT id, organization_id, created_by, key_hash, scopes, revoked_at, expires_at"
            " FROM api_keys WHERE prefix = $1", prefix)
        if row is None or not same(row["key_hash"], digest(secret)):
            raise Unauthorized("invalid API key")
        if row["revoked_at"] is not None:
            raise Unauthorized("API key revoked")
        if row["expires_at"] is not None and row["expires_at"] < datetime.now(UTC):
            raise Unauthorized("API key expired")
        await conn.execute("UPDATE api_keys SET last_used_at = now() WHERE id = $1", row["id"])
    created_by = str(row["created_by"]) if row["created_by"] else None
    return str(row["organization_id"]), created_by, str(row["id"]), frozenset(row["scopes"])


async def authenticate(runtime: Runtime, bearer: str | None, api_key: str | None,
                       ip: str | None, agent: str | None) -> Principal:
    """The caller named by a bearer token or an API key, or Unauthorized."""
    if bearer:
        claims = decode_access_token(runtime.settings.jwt_secret.get_secret_value(), bearer)
        return Principal(claims.org_id, claims.user_id, claims.role,
                         permissions_of(claims.role), ip=ip, user_agent=agent)
    if api_key:
        org_id, user_id, key_id, scopes = await _from_api_key(runtime, api_key)
        return Principal(org_id, user_id, "api_key", scopes, api_key_id=key_id,
                         ip=ip, user_agent=agent)
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


def require(permission: str) -> Callable[..., Awaitable[Principal]]:
    async def dependency(request: Request,
                         principal: Principal = Depends(current_principal)) -> Principal:
        route = request.scope.get("route")
        await authorize(runtime_of(request), principal, permission, request.method,
                        getattr(route, "path", request.url.path))
        return principal

    return dependency

"""Who is calling: a bearer access token (names one org and a role) or an
API key (`X-API-Key`, scoped). `require(permission)` is the dependency every
protected route uses: it authenticates, authorizes against core.rbac, and
applies the per-caller, per-route rate limit."""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from core.errors import Forbidden, RateLimited, Unauthorized
from core.rbac import permissions_of
from core.security import decode_access_token, digest, same
from serve.app import Runtime
from storage.audit import Actor
from storage.ratelimit import TokenBucket

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


def client_ip(request: Request) -> str | None:
    forwarded = request.headers.get("x-forwarded-for")
    if forwarded:
        return forwarded.split(",")[0].strip()
    return request.client.host if request.client else None


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


async def current_principal(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(bearer_scheme),
    api_key: str | None = Depends(api_key_scheme),
) -> Principal:
    runtime = runtime_of(request)
    ip, agent = client_ip(request), request.headers.get("user-agent")
    if credentials is not None:
        secret = runtime.settings.jwt_secret or ""
        claims = decode_access_token(secret, credentials.credentials)
        return Principal(claims.org_id, claims.user_id, claims.role,
                         permissions_of(claims.role), ip=ip, user_agent=agent)
    if api_key:
        org_id, user_id, key_id, scopes = await _from_api_key(runtime, api_key)
        return Principal(org_id, user_id, "api_key", scopes, api_key_id=key_id,
                         ip=ip, user_agent=agent)
    raise Unauthorized("authentication required: a bearer token or an X-API-Key")


async def rate_limit(request: Request, principal: Principal) -> None:
    runtime = runtime_of(request)
    settings = runtime.settings
    bucket = getattr(request.app.state, "bucket", None)
    if bucket is None:
        bucket = request.app.state.bucket = TokenBucket(
            runtime.redis, settings.rate_burst, settings.rate_per_minute / 60)
    route = request.scope.get("route")
    path = getattr(route, "path", request.url.path)
    decision = await bucket.take(f"rate_limit:api:{principal.rate_key}:{request.method}:{path}")
    if not decision.allowed:
        raise RateLimited("too many requests", retry_after=decision.retry_after)


def require(permission: str) -> Callable[..., Awaitable[Principal]]:
    async def dependency(request: Request,
                         principal: Principal = Depends(current_principal)) -> Principal:
        if permission not in principal.permissions:
            raise Forbidden(f"this action needs the {permission!r} permission")
        await rate_limit(request, principal)
        return principal

    return dependency

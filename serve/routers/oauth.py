"""Sign-in with Google (OpenID Connect authorization code flow with PKCE,
the state bound to the browser that started it by a cookie), linking Google
to a signed-in user, the Telegram Login Widget (hash check per Telegram's
docs), and the second-factor challenge that completes either sign-in for an
account with TOTP on."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

import httpx
import jwt
from fastapi import APIRouter, Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, Field

from core.crypto import Cipher
from core.errors import Forbidden, Invalid, NotFound, Unauthorized, Unavailable
from core.security import digest, issue_access_token, opaque_token, same
from serve.auth import (
    Caller,
    api_key_scheme,
    authenticate,
    bearer_scheme,
    client_ip,
    runtime_of,
)
from serve.models import Strict
from serve.routers.auth import SessionOut
from serve.throttle import CodeGuesses, per_ip
from storage import identity, mfa
from storage.oauth import ExternalIdentity, sign_in

router = APIRouter(prefix="/v1/auth", tags=["auth"])
STATE_TTL = 600
TELEGRAM_CLOCK_SKEW = 60  # how far in the future a widget's auth_date may be
BINDING_COOKIE = "bidi_oauth_binding"
BINDING_PATH = "/v1/auth/oauth/google"
BINDING_SHAPE = re.compile(r"[A-Za-z0-9_-]{32,64}")  # what opaque_token() makes
MFA_CHALLENGE_TTL = 300


class MfaRequired(Unauthorized):
    """Password-less sign-in of an account with TOTP on: details carry the
    `mfa_token` to present with a code at /v1/auth/mfa/challenge."""

    code = "mfa_required"


class StartOut(BaseModel):
    authorization_url: str
    state: str


class CallbackIn(Strict):
    code: str = Field(min_length=1, max_length=2048)
    state: str = Field(min_length=1, max_length=256)


class ChallengeIn(Strict):
    mfa_token: str = Field(min_length=1, max_length=256)
    code: str = Field(min_length=6, max_length=32)


class TelegramIn(Strict):
    id: int
    first_name: str | None = Field(default=None, max_length=255)
    last_name: str | None = Field(default=None, max_length=255)
    username: str | None = Field(default=None, max_length=255)
    photo_url: str | None = Field(default=None, max_length=2048)
    auth_date: int
    hash: str = Field(pattern=r"^[0-9a-fA-F]{64}$")


def _redirect_uri(request: Request) -> str:
    settings = runtime_of(request).settings
    base = settings.public_url or f"http://{settings.host}:{settings.port}"
    return f"{base}/v1/auth/oauth/google/callback"


async def _discovery(request: Request) -> dict[str, Any]:
    settings = runtime_of(request).settings
    cached = getattr(request.app.state, "google_discovery", None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    url = f"{settings.google_issuer.rstrip('/')}/.well-known/openid-configuration"
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            doc = (await client.get(url)).raise_for_status().json()
    except (httpx.HTTPError, ValueError) as exc:
        raise Unavailable(f"Google sign-in is unreachable: {type(exc).__name__}") from exc
    request.app.state.google_discovery = doc
    return doc  # type: ignore[no-any-return]


def _google_configured(request: Request) -> tuple[str, str]:
    settings = runtime_of(request).settings
    if not settings.google_client_id or not settings.google_client_secret:
        raise NotFound("Google sign-in is not configured")
    return settings.google_client_id, settings.google_client_secret.get_secret_value()


@router.get("/oauth/google/start", response_model=StartOut, dependencies=[Depends(per_ip)],
            responses={403: {"description": "linking needs a user session, not an API key"}})
async def google_start(
    request: Request, response: Response, link: bool = False,
    credentials: HTTPAuthorizationCredentials | None = Depends(bearer_scheme),
    api_key: str | None = Depends(api_key_scheme),
) -> Any:
    """Begin a Google sign-in; with `link=true` and a user's bearer token,
    begin linking a Google account to that user instead."""
    client_id, _ = _google_configured(request)
    runtime = runtime_of(request)
    linking = None
    if link:
        principal = await authenticate(
            runtime, credentials.credentials if credentials is not None else None, api_key,
            client_ip(request), request.headers.get("user-agent"))
        if principal.caller is not Caller.USER:
            raise Forbidden("an API key is not a user: sign in to link a Google account")
        linking = {"user_id": principal.user_id, "org_id": principal.org_id}
    doc = await _discovery(request)
    state, verifier, nonce = opaque_token(), opaque_token(48), opaque_token()
    binding = _binding(request, response)
    challenge = base64.urlsafe_b64encode(
        hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    await runtime.redis.set(
        f"oauth:state:{state}", json.dumps({"verifier": verifier, "nonce": nonce,
                                            "binding": digest(binding), "link": linking}),
        ex=STATE_TTL)
    query = urlencode({
        "response_type": "code", "client_id": client_id, "redirect_uri": _redirect_uri(request),
        "scope": "openid email profile", "state": state, "nonce": nonce,
        "code_challenge": challenge, "code_challenge_method": "S256"})
    return {"authorization_url": f"{doc['authorization_endpoint']}?{query}", "state": state}


def _binding(request: Request, response: Response) -> str:
    """The browser's binding secret: a state is only good with the cookie of
    the browser that started it, so a stolen or planted state (login CSRF)
    fails elsewhere. Kept across starts so two tabs can sign in at once."""
    binding = request.cookies.get(BINDING_COOKIE, "")
    if not BINDING_SHAPE.fullmatch(binding):
        binding = opaque_token()
    public_url = runtime_of(request).settings.public_url or ""
    response.set_cookie(BINDING_COOKIE, binding, max_age=STATE_TTL, path=BINDING_PATH,
                        httponly=True, samesite="lax", secure=public_url.startswith("https://"))
    return binding


async def _exchange(request: Request, code: str, verifier: str) -> dict[str, Any]:
    client_id, client_secret = _google_configured(request)
    doc = await _discovery(request)
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            resp = await client.post(doc["token_endpoint"], data={
                "grant_type": "authorization_code", "code": code,
                "redirect_uri": _redirect_uri(request), "client_id": client_id,
                "client_secret": client_secret, "code_verifier": verifier})
            if resp.status_code != 200:
                raise Unauthorized("Google refused the sign-in code")
            tokens = resp.json()
            keys = (await client.get(doc["jwks_uri"])).raise_for_status().json()
    except (httpx.HTTPError, ValueError) as exc:
        raise Unavailable(f"Google sign-in is unreachable: {type(exc).__name__}") from exc
    return {"tokens": tokens, "jwks": keys, "issuer": doc["issuer"], "client_id": client_id}


def _verify_id_token(token: str, jwks: dict[str, Any], issuer: str, client_id: str,
                     nonce: str) -> dict[str, Any]:
    try:
        kid = jwt.get_unverified_header(token).get("kid")
        key = next(k for k in jwks.get("keys", []) if k.get("kid") == kid)
        claims: dict[str, Any] = jwt.decode(
            token, jwt.PyJWK(key).key, algorithms=["RS256"], audience=client_id,
            issuer=issuer, options={"require": ["exp", "iat", "sub", "aud", "iss"]})
    except (StopIteration, jwt.PyJWTError) as exc:
        raise Unauthorized(f"invalid ID token: {type(exc).__name__}") from None
    if not same(str(claims.get("nonce", "")), nonce):
        raise Unauthorized("invalid ID token: nonce mismatch")
    return claims


async def _session(request: Request, who: ExternalIdentity,
                   link: dict[str, str] | None = None) -> dict[str, Any]:
    runtime = runtime_of(request)
    cipher = Cipher(runtime.settings.encryption_key.get_secret_value())
    async with runtime.db.system_tx() as conn:
        user, orgs, _ = await sign_in(conn, who, cipher,
                                      link_to=UUID(link["user_id"]) if link else None)
        org = identity.choose(orgs, link["org_id"] if link else None)
        if org is None:
            raise Unauthorized("this account belongs to no organization")
        if user["mfa_enabled"] and link is None:  # a linking user is signed in already
            token = opaque_token()
            await runtime.redis.set(
                _challenge_key(token), json.dumps({"user_id": str(user["id"]),
                                                   "org_id": str(org.org_id)}),
                ex=MFA_CHALLENGE_TTL)
        else:
            token = None
            refresh, _ = await identity.issue_refresh(conn, user["id"], org.org_id)
    if token is not None:  # raised after COMMIT: the provider's fresh tokens are kept
        raise MfaRequired("this account has two-factor sign-in: send a code with this"
                          " mfa_token to /v1/auth/mfa/challenge", details={"mfa_token": token})
    return _session_body(runtime.settings.jwt_secret.get_secret_value(), user, org, refresh)


def _session_body(secret: str, user: Any, org: identity.Membership,
                  refresh: str) -> dict[str, Any]:
    access = issue_access_token(secret, str(user["id"]), str(org.org_id), org.role)
    return {"access_token": access, "refresh_token": refresh, "user": dict(user),
            "organization": {"id": org.org_id, "name": org.name, "slug": org.slug,
                             "role": org.role}}


def _challenge_key(token: str) -> str:
    return f"auth:mfa_challenge:{digest(token)}"


@router.post("/oauth/google/callback", response_model=SessionOut,
             dependencies=[Depends(per_ip)],
             responses={401: {"description": "bad state or code; `mfa_required` with an"
                                             " mfa_token when the account has TOTP on"},
                        409: {"description": "`account_exists`: link Google from that account"
                                             " instead; or Google is linked to another user"}})
async def google_callback(body: CallbackIn, request: Request) -> Any:
    redis = runtime_of(request).redis
    stored = await redis.getdel(f"oauth:state:{body.state}")  # single use
    if stored is None:
        raise Unauthorized("unknown or expired sign-in state")
    flow = json.loads(stored)
    if not same(digest(request.cookies.get(BINDING_COOKIE, "")), flow["binding"]):
        raise Unauthorized("this sign-in was started in another browser; start again")
    got = await _exchange(request, body.code, flow["verifier"])
    tokens = got["tokens"]
    claims = _verify_id_token(str(tokens.get("id_token", "")), got["jwks"], got["issuer"],
                              got["client_id"], flow["nonce"])
    expires = datetime.now(UTC) + timedelta(seconds=int(tokens.get("expires_in", 3600)))
    return await _session(request, ExternalIdentity(
        provider="google", subject=str(claims["sub"]), email=claims.get("email"),
        email_verified=bool(claims.get("email_verified")), name=claims.get("name"),
        access_token=tokens.get("access_token"), refresh_token=tokens.get("refresh_token"),
        expires_at=expires), flow.get("link"))


def telegram_hash(bot_token: str, fields: dict[str, Any]) -> str:
    """Telegram Login Widget: HMAC-SHA256 of the sorted `key=value` lines,
    keyed with SHA256(bot token)."""
    check = "\n".join(f"{k}={fields[k]}" for k in sorted(fields) if fields[k] is not None)
    secret = hashlib.sha256(bot_token.encode()).digest()
    return hmac.new(secret, check.encode(), hashlib.sha256).hexdigest()


@router.post("/telegram", response_model=SessionOut, dependencies=[Depends(per_ip)],
             responses={401: {"description": "not authentic; `mfa_required` with an"
                                             " mfa_token when the account has TOTP on"}})
async def telegram_login(body: TelegramIn, request: Request) -> Any:
    settings = runtime_of(request).settings
    bot_token = settings.telegram_login_bot_token.get_secret_value()
    if not bot_token:
        raise NotFound("Telegram sign-in is not configured")
    fields = body.model_dump(exclude={"hash"})
    if not same(telegram_hash(bot_token, fields), body.hash.lower()):
        raise Unauthorized("Telegram login data is not authentic")
    # Signed login data is a bearer credential: a short life bounds its replay.
    age = time.time() - body.auth_date
    if age > settings.telegram_login_max_age:
        raise Invalid("Telegram login data is too old; sign in again", field="auth_date")
    if age < -TELEGRAM_CLOCK_SKEW:
        raise Invalid("Telegram login data is dated in the future", field="auth_date")
    name = " ".join(p for p in (body.first_name, body.last_name) if p) or body.username
    return await _session(request, ExternalIdentity(
        provider="telegram", subject=str(body.id), email=None, email_verified=False,
        name=name))


@router.post("/mfa/challenge", response_model=SessionOut, dependencies=[Depends(per_ip)],
             responses={401: {"description": "unknown, expired or used mfa_token"},
                        422: {"description": "wrong or already used code"},
                        429: {"description": "too many wrong codes for this account"}})
async def mfa_challenge(body: ChallengeIn, request: Request) -> Any:
    """Complete a Google or Telegram sign-in answered with `mfa_required`."""
    runtime = runtime_of(request)
    key = _challenge_key(body.mfa_token)
    stored = await runtime.redis.get(key)
    if stored is None:
        raise Unauthorized("unknown or expired mfa_token; sign in again")
    pending = json.loads(stored)
    guesses = CodeGuesses(request, pending["user_id"])
    await guesses.reserve()
    async with runtime.db.system_tx() as conn:
        user = await identity.user_by_id(conn, UUID(pending["user_id"]), factors=True)
        if user is None:
            raise Unauthorized("this account no longer exists")
        cipher = Cipher(runtime.settings.encryption_key.get_secret_value())
        if not await mfa.check(conn, user, body.code, cipher):
            raise Invalid("wrong or already used code", field="code")
        if await runtime.redis.getdel(key) is None:  # the same token, used in parallel
            raise Unauthorized("unknown or expired mfa_token; sign in again")
        org = identity.choose(await identity.memberships(conn, user["id"]), pending["org_id"])
        if org is None:
            raise Unauthorized("this account belongs to no organization")
        refresh, _ = await identity.issue_refresh(conn, user["id"], org.org_id)
    await guesses.clear()
    return _session_body(runtime.settings.jwt_secret.get_secret_value(), identity.public(user),
                         org, refresh)

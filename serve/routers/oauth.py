"""Sign-in with Google (OpenID Connect authorization code flow with PKCE)
and with the Telegram Login Widget (hash check per Telegram's docs)."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt
from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from core.crypto import Cipher
from core.errors import Invalid, NotFound, Unauthorized, Unavailable
from core.security import issue_access_token, opaque_token, same
from serve.auth import runtime_of
from serve.models import Strict
from serve.routers.auth import SessionOut
from storage import identity
from storage.oauth import ExternalIdentity, sign_in

router = APIRouter(prefix="/v1/auth", tags=["auth"])
STATE_TTL = 600
TELEGRAM_MAX_AGE = 86_400


class StartOut(BaseModel):
    authorization_url: str
    state: str


class CallbackIn(Strict):
    code: str = Field(min_length=1, max_length=2048)
    state: str = Field(min_length=1, max_length=256)


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


@router.get("/oauth/google/start", response_model=StartOut)
async def google_start(request: Request) -> Any:
    client_id, _ = _google_configured(request)
    doc = await _discovery(request)
    state, verifier, nonce = opaque_token(), opaque_token(48), opaque_token()
    challenge = base64.urlsafe_b64encode(
        hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    await runtime_of(request).redis.set(
        f"oauth:state:{state}", json.dumps({"verifier": verifier, "nonce": nonce}),
        ex=STATE_TTL)
    query = urlencode({
        "response_type": "code", "client_id": client_id, "redirect_uri": _redirect_uri(request),
        "scope": "openid email profile", "state": state, "nonce": nonce,
        "code_challenge": challenge, "code_challenge_method": "S256"})
    return {"authorization_url": f"{doc['authorization_endpoint']}?{query}", "state": state}


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


async def _session(request: Request, who: ExternalIdentity) -> dict[str, Any]:
    runtime = runtime_of(request)
    cipher = Cipher(runtime.settings.encryption_key.get_secret_value())
    async with runtime.db.system_tx() as conn:
        user, org, _ = await sign_in(conn, who, cipher)
        if org is None:
            raise Unauthorized("this account belongs to no organization")
        refresh, _ = await identity.issue_refresh(conn, user["id"], org["organization_id"])
    access = issue_access_token(runtime.settings.jwt_secret.get_secret_value(), str(user["id"]),
                                str(org["organization_id"]), org["role"])
    return {"access_token": access, "refresh_token": refresh, "user": user,
            "organization": {"id": org["organization_id"], "name": org["name"],
                             "slug": org["slug"], "role": org["role"]}}


@router.post("/oauth/google/callback", response_model=SessionOut)
async def google_callback(body: CallbackIn, request: Request) -> Any:
    redis = runtime_of(request).redis
    stored = await redis.getdel(f"oauth:state:{body.state}")  # single use
    if stored is None:
        raise Unauthorized("unknown or expired sign-in state")
    flow = json.loads(stored)
    got = await _exchange(request, body.code, flow["verifier"])
    tokens = got["tokens"]
    claims = _verify_id_token(str(tokens.get("id_token", "")), got["jwks"], got["issuer"],
                              got["client_id"], flow["nonce"])
    expires = datetime.now(UTC) + timedelta(seconds=int(tokens.get("expires_in", 3600)))
    return await _session(request, ExternalIdentity(
        provider="google", subject=str(claims["sub"]), email=claims.get("email"),
        email_verified=bool(claims.get("email_verified")), name=claims.get("name"),
        access_token=tokens.get("access_token"), refresh_token=tokens.get("refresh_token"),
        expires_at=expires))


def telegram_hash(bot_token: str, fields: dict[str, Any]) -> str:
    """Telegram Login Widget: HMAC-SHA256 of the sorted `key=value` lines,
    keyed with SHA256(bot token)."""
    check = "\n".join(f"{k}={fields[k]}" for k in sorted(fields) if fields[k] is not None)
    secret = hashlib.sha256(bot_token.encode()).digest()
    return hmac.new(secret, check.encode(), hashlib.sha256).hexdigest()


@router.post("/telegram", response_model=SessionOut)
async def telegram_login(body: TelegramIn, request: Request) -> Any:
    bot_token = runtime_of(request).settings.telegram_login_bot_token.get_secret_value()
    if not bot_token:
        raise NotFound("Telegram sign-in is not configured")
    fields = body.model_dump(exclude={"hash"})
    if not same(telegram_hash(bot_token, fields), body.hash.lower()):
        raise Unauthorized("Telegram login data is not authentic")
    if time.time() - body.auth_date > TELEGRAM_MAX_AGE:
        raise Invalid("Telegram login data is too old; sign in again", field="auth_date")
    name = " ".join(p for p in (body.first_name, body.last_name) if p) or body.username
    return await _session(request, ExternalIdentity(
        provider="telegram", subject=str(body.id), email=None, email_verified=False,
        name=name))

"""Passwords (argon2id), access tokens (JWT, one algorithm allow-listed) and
opaque secrets (refresh tokens, API keys, invitations: stored as SHA-256)."""
from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from core.errors import Unauthorized

ALGORITHM = "HS256"
AUDIENCE = "bidi-api"
ISSUER = "bidi"
ACCESS_TTL = 15 * 60
REFRESH_TTL = 30 * 24 * 3600

# OWASP: argon2id, m=19 MiB, t=2, p=1.
_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
_DUMMY = _hasher.hash("not a password")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    """Constant work whether or not the user exists (or has a password)."""
    try:
        if not stored:
            _hasher.verify(_DUMMY, password)
            return False
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def opaque_token(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


@dataclass(frozen=True)
class AccessClaims:
    user_id: str
    org_id: str
    role: str
    jti: str
    expires_at: int
    issued_at: float = 0.0  # seconds, with milliseconds: the revocation cut-off


def issue_access_token(secret: str, user_id: str, org_id: str, role: str,
                       ttl: int = ACCESS_TTL, now: float | None = None) -> str:
    moment = now if now is not None else time.time()
    issued = int(moment)
    claims = {"sub": user_id, "org": org_id, "role": role, "typ": "access",
              "aud": AUDIENCE, "iss": ISSUER, "iat": issued, "exp": issued + ttl,
              "ims": int(moment * 1000), "jti": uuid.uuid4().hex}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


# Verified tokens, most recent last: a client sends the same token for its
# whole life, and verifying it again cost more than the rest of a cheap read.
# Only successes are remembered; expiry is checked on every use.
_VERIFIED: dict[tuple[str, str], AccessClaims] = {}
VERIFIED_CACHE_SIZE = 10_000


def decode_access_token(secret: str, token: str) -> AccessClaims:
    """The claims of a valid access token, or Unauthorized."""
    claims = _VERIFIED.get((secret, token))
    if claims is None:
        claims = _verify_access_token(secret, token)
        if len(_VERIFIED) >= VERIFIED_CACHE_SIZE:
            del _VERIFIED[next(iter(_VERIFIED))]
        _VERIFIED[(secret, token)] = claims
    if claims.expires_at <= time.time():
        raise Unauthorized("access token expired")
    return claims


def decode_jwt(secret: str, token: str, *, audience: str, typ: str, name: str,
               expired: str | None = None) -> dict[str, Any]:
    """The claims of a token this engine signed for `audience` as `typ`: HS256
    only, `exp`/`iat`/`sub`/`aud`/`iss`/`typ` required, or `Unauthorized`
    naming the kind of token (`name`) and why."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token, secret, algorithms=[ALGORITHM], audience=audience, issuer=ISSUER,
            options={"require": ["exp", "iat", "sub", "aud", "iss", "typ"]})
    except jwt.ExpiredSignatureError:
        raise Unauthorized(expired or f"{name} expired") from None
    except jwt.PyJWTError:
        raise Unauthorized(f"invalid {name}") from None
    if claims.get("typ") != typ:
        raise Unauthorized(f"not {'an' if name[0] in 'aeiou' else 'a'} {name}")
    return claims


def _verify_access_token(secret: str, token: str) -> AccessClaims:
    claims = decode_jwt(secret, token, audience=AUDIENCE, typ="access", name="access token")
    try:
        user_id = str(uuid.UUID(str(claims["sub"])))
        org_id = str(uuid.UUID(str(claims["org"])))
    except (KeyError, ValueError):
        raise Unauthorized("invalid access token") from None
    ims = claims.get("ims")
    issued_at = ims / 1000 if isinstance(ims, int) else float(claims["iat"])
    return AccessClaims(user_id, org_id, str(claims.get("role", "")), str(claims.get("jti", "")),
                        int(claims["exp"]), issued_at)

"""A Google-shaped OpenID Connect provider on loopback: discovery document,
authorization endpoint (redirects back with a code bound to the PKCE
challenge), token endpoint (checks client, redirect and code_verifier, signs
an RS256 ID token), JWKS. Codes are single use, like Google's."""
from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode

import jwt
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from tests.fakes.serving import serve_in_thread

CLIENT_ID = "bidi-test.apps.googleusercontent.com"
CLIENT_SECRET = "GOCSPX-test-secret"


@dataclass
class FakeGoogle:
    port: int
    key: Any = field(default_factory=lambda: rsa.generate_private_key(public_exponent=65537,
                                                                      key_size=2048))
    kid: str = "test-key-1"
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    user: dict[str, Any] = field(default_factory=lambda: {
        "sub": "110169484474386276334", "email": "ada@example.com", "email_verified": True,
        "name": "Ada Lovelace"})
    _server: uvicorn.Server | None = None

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/.well-known/openid-configuration", self.discovery),
            Route("/o/oauth2/v2/auth", self.authorize),
            Route("/token", self.token, methods=["POST"]),
            Route("/oauth2/v3/certs", self.certs),
        ])

    async def discovery(self, _: Request) -> Response:
        return JSONResponse({
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/o/oauth2/v2/auth",
            "token_endpoint": f"{self.issuer}/token",
            "jwks_uri": f"{self.issuer}/oauth2/v3/certs",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["plain", "S256"],
        })

    async def authorize(self, request: Request) -> Response:
        q = request.query_params
        if q.get("client_id") != CLIENT_ID or q.get("code_challenge_method") != "S256":
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        code = "4/0A" + secrets.token_urlsafe(24)
        self.codes[code] = {"challenge": q["code_challenge"], "nonce": q.get("nonce"),
                            "redirect_uri": q["redirect_uri"], "user": dict(self.user)}
        target = f"{q['redirect_uri']}?{urlencode({'code': code, 'state': q['state']})}"
        return RedirectResponse(target, status_code=302)

    async def token(self, request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        grant = self.codes.pop(str(form.get("code")), None)  # single use
        if grant is None or form.get("grant_type") != "authorization_code":
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        if form.get("redirect_uri") != grant["redirect_uri"]:
            return JSONResponse({"error": "redirect_uri_mismatch"}, status_code=400)
        verifier = str(form.get("code_verifier", ""))
        challenge = base64.urlsafe_b64encode(
            hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if challenge != grant["challenge"]:
            return JSONResponse({"error": "invalid_grant",
                                 "error_description": "code_verifier mismatch"},
                                status_code=400)
        now = int(time.time())
        claims = {**grant["user"], "iss": self.issuer, "aud": CLIENT_ID, "iat": now,
                  "exp": now + 3600, "nonce": grant["nonce"], "azp": CLIENT_ID}
        id_token = jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid})
        return JSONResponse({"access_token": "ya29." + secrets.token_urlsafe(30),
                             "expires_in": 3599, "scope": "openid email profile",
                             "token_type": "Bearer", "id_token": id_token,
                             "refresh_token": "1//0g" + secrets.token_urlsafe(20)})

    async def certs(self, _: Request) -> Response:
        public = jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        return JSONResponse({"keys": [{**public, "kid": self.kid, "alg": "RS256",
                                       "use": "sig"}]})

    def start(self) -> FakeGoogle:
        self._server = serve_in_thread(self.app(), self.port, "fake Google")
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True

"""Standard Webhooks signatures (standardwebhooks.com): headers
`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64
HMAC-SHA256(secret, "{id}.{timestamp}.{body}")>` (several, space-separated,
during a secret rotation); secrets are `whsec_` + base64 of >= 24 bytes.
Verification works on the raw body bytes, before any parsing."""
from __future__ import annotations

import base64
import functools
import hmac
import secrets
import time
from collections.abc import Mapping

PREFIX = "whsec_"
TOLERANCE = 300  # seconds either side of now


class SignatureError(Exception):
    """The request is not what the secret's holder sent."""


def new_secret(nbytes: int = 32) -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(max(nbytes, 24))).decode()


@functools.lru_cache(maxsize=4096)
def _key(secret: str) -> bytes:
    if not secret.startswith(PREFIX):
        raise ValueError("a webhook secret starts with whsec_")
    return base64.b64decode(secret[len(PREFIX):])


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    # The one-shot digest (OpenSSL, no HMAC object): it is on every inbound request.
    mac = hmac.digest(_key(secret), f"{msg_id}.{timestamp}.".encode() + body, "sha256")
    return "v1," + base64.b64encode(mac).decode()


def headers(secret: str, msg_id: str, body: bytes, now: float | None = None) -> dict[str, str]:
    timestamp = int(time.time() if now is None else now)
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(secret, msg_id, timestamp, body)}


def verify(secrets_: list[str], received: Mapping[str, str], body: bytes,
           now: float | None = None, tolerance: int = TOLERANCE) -> str:
    """Check the headers against any of `secrets_`; return the message id."""
    msg_id = received.get("webhook-id")
    stamp = received.get("webhook-timestamp")
    signatures = received.get("webhook-signature")
    if not msg_id or not stamp or not signatures:
        raise SignatureError("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise SignatureError("webhook-timestamp is not a number") from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise SignatureError("webhook-timestamp is too old or too new")
    offered = [s for s in signatures.split() if s.startswith("v1,")]
    for secret in secrets_:
        expected = sign(secret, msg_id, timestamp, body)
        if any(hmac.compare_digest(expected.encode(), s.encode()) for s in offered):
            return msg_id
    raise SignatureError("no signature matches")

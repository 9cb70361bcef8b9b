"""Web chat integrations (a website's live-chat widget): the sites it may
run on (`allowed_origins`, exact origins, normalised by channels.webchat)
and whether the website must vouch for the visitors it names
(`identity_verification`: an HMAC key is made, shown once as `secret`,
sealed like every channel secret, rotated by `/rotate-secret`).

What the API shows of one adds `embed`: the `<script>` tag to paste, with
this engine's public URL (BIDI_PUBLIC_URL, else the URL the request came
to)."""
from __future__ import annotations

from typing import Any, Literal

from fastapi import Request
from pydantic import Field

from channels.webchat import CHANNEL, MAX_ORIGINS, new_secret, parse_origins
from core.crypto import Cipher
from serve.auth import Principal, runtime_of
from serve.models import Strict
from storage import integrations

__all__ = ["CHANNEL", "WebchatConfigIn", "WebchatIn", "changes", "create", "embed",
           "new_secret", "sessions_path", "shown"]

class WebchatConfigIn(Strict):
    allowed_origins: list[str] = Field(
        min_length=1, max_length=MAX_ORIGINS,
        description="The sites the widget runs on: exact origins, scheme://host[:port]")
    identity_verification: bool = Field(
        default=False, description="Visitors named by `identifier` must come with"
                                   " identifier_hash = hex HMAC-SHA256(secret, identifier)")


class WebchatIn(Strict):
    type: Literal["webchat"]
    name: str = Field(min_length=1, max_length=255)
    config: WebchatConfigIn


def sessions_path(integration_id: Any) -> str:
    return f"/v1/webchat/{integration_id}/sessions"


def embed(request: Request, integration_id: Any) -> str:
    public = runtime_of(request).settings.public_url or str(request.base_url)
    return (f'<script src="{public.rstrip("/")}/widget.js" data-integration="{integration_id}"'
            " async></script>")


def shown(request: Request, row: Any) -> Any:
    """An integration as the API shows it: a web chat's with its `embed` tag."""
    if row["type"] != CHANNEL:
        return row
    return {**row, "embed": embed(request, row["id"])}


def changes(given: list[str] | None) -> dict[str, Any]:
    """What a PATCH of a web chat's config stores."""
    return {} if given is None else {"allowed_origins": parse_origins(given)}


async def create(request: Request, principal: Principal, name: str,
                 body: WebchatConfigIn) -> dict[str, Any]:
    runtime = runtime_of(request)
    config = {"allowed_origins": parse_origins(body.allowed_origins),
              "identity_verification": body.identity_verification}
    secret = new_secret() if body.identity_verification else None
    cipher = Cipher(runtime.settings.encryption_key.get_secret_value())
    async with runtime.db.tenant_tx(principal.org_id, principal.user_id) as conn:
        row = await integrations.create(conn, principal.actor, cipher, type=CHANNEL, name=name,
                                        config=config,
                                        secrets={"secret": secret} if secret else {})
    created = shown(request, row)
    if secret is not None:
        created["secret"] = secret
    return dict(created)

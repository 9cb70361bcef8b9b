"""WhatsApp integrations: what creating one means at Meta, and the
message templates of its business account.

Creating one asks the Graph API for the phone number (`GET
/{phone_number_id}`) with the access token: a token Meta refuses or a number
it does not know is a 422 naming the field, and nothing is stored. The
access token, app secret and verify token are sealed like every channel
secret and never shown; the verify token's SHA-256 is kept beside the public
settings (never shown either) so that the app-level verification request,
which names no integration, finds its integrations. One number is one
integration (a unique index): Meta posts an app's numbers to one URL, routed
by the number's id.

Templates are listed from the WABA and cached for `TEMPLATES_TTL` seconds
in Redis (shared by every replica); `refresh` reads them anew."""
from __future__ import annotations

import hashlib
import json
import logging
from typing import TYPE_CHECKING, Any

from fastapi import Request

from channels import netguard
from channels.whatsapp import CHANNEL, WhatsAppConnector, parse_config
from core.crypto import Cipher
from serve.auth import Principal, runtime_of
from serve.replica import kept
from storage import integrations
from storage.integrations import Integration

if TYPE_CHECKING:
    from serve.routers.integrations import WhatsAppConfigIn

log = logging.getLogger(__name__)

BASE_FIELD = "config.api_base_url"
TEMPLATES_TTL = 600
APP_WEBHOOK = "/v1/channels/whatsapp/webhook"


def webhook_path(integration_id: Any) -> str:
    return f"/v1/channels/whatsapp/{integration_id}/webhook"


def verify_token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def connector_of(state: Any) -> WhatsAppConnector:
    """This replica's Graph API client (pooled connections)."""
    return kept(state, "whatsapp", WhatsAppConnector)


def _public_url(request: Request, path: str) -> str:
    settings = runtime_of(request).settings
    public = settings.webhook_base_url or settings.public_url
    return (public.rstrip("/") if public else "") + path


async def create(request: Request, principal: Principal, name: str,
                 body: WhatsAppConfigIn) -> dict[str, Any]:
    runtime = runtime_of(request)
    config = parse_config(body.model_dump(exclude_none=True))
    if body.api_base_url is not None:  # a server of the user's choosing: one we may reach
        await netguard.check_url(body.api_base_url,
                                 netguard.Policy.from_settings(runtime.settings),
                                 field=BASE_FIELD)
    number = await connector_of(request.app.state).phone_number(config)
    public = {"phone_number_id": config.phone_number_id, "waba_id": config.waba_id,
              "api_base_url": config.api_base_url, "api_version": config.api_version,
              "display_phone_number": number.display_phone_number,
              "verified_name": number.verified_name,
              "lookup": {"verify_token_sha256": verify_token_hash(config.verify_token)}}
    secrets = {"access_token": config.access_token, "app_secret": config.app_secret,
               "verify_token": config.verify_token}
    cipher = Cipher(runtime.settings.encryption_key.get_secret_value())
    async with runtime.db.tenant_tx(principal.org_id, principal.user_id) as conn:
        row = await integrations.create(conn, principal.actor, cipher, type=CHANNEL,
                                        name=name, config=public, secrets=secrets)
    return {**row, "webhook_url": _public_url(request, webhook_path(row["id"])),
            "app_webhook_url": _public_url(request, APP_WEBHOOK)}


async def templates(request: Request, integration: Integration,
                    refresh: bool) -> list[dict[str, Any]]:
    """The WABA's message templates, from the cache unless `refresh`."""
    runtime = runtime_of(request)
    key = f"bidi:whatsapp:templates:{integration.id}"
    if not refresh:
        cached = await runtime.redis.get(key)
        if cached is not None:
            found: list[dict[str, Any]] = json.loads(cached)
            return found
    listed = await connector_of(request.app.state).templates(integration)
    await runtime.redis.set(key, json.dumps(listed), ex=TEMPLATES_TTL)
    return listed

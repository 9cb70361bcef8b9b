"""Telegram integrations: what creating, switching on and off, and deleting
one means at Telegram.

Creating one asks Telegram who the bot is (`getMe`): a token Telegram
refuses is a 422 and nothing is stored. In webhook mode the webhook is set
(with a secret token of our own and the update types we handle) inside the
creating transaction, so an integration is stored only once Telegram
knows where to post; deactivating it deletes the webhook, activating it
sets it again. The bot token and the secret token are sealed like every
channel secret and never shown."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import UUID

from fastapi import Request

from channels import netguard
from channels.telegram import CHANNEL, new_secret_token, parse_config
from core.crypto import Cipher
from core.errors import Invalid
from serve.auth import Principal, runtime_of
from serve.routers.channels_telegram import connector_of, webhook_path
from storage import integrations
from storage.integrations import Integration

if TYPE_CHECKING:
    from serve.routers.integrations import TelegramConfigIn

BASE_FIELD = "config.api_base_url"


def webhook_url(request: Request, integration_id: UUID | str) -> str:
    settings = runtime_of(request).settings
    public = settings.webhook_base_url or settings.public_url
    if not public:
        raise Invalid("webhook mode needs the engine's public URL (BIDI_WEBHOOK_BASE_URL or"
                      " BIDI_PUBLIC_URL), an https address Telegram can reach; or use mode"
                      " polling", field="config.mode")
    return public.rstrip("/") + webhook_path(integration_id)


async def create(request: Request, principal: Principal, name: str,
                 body: TelegramConfigIn) -> dict[str, Any]:
    runtime = runtime_of(request)
    given = {"bot_token": body.bot_token, "mode": body.mode}
    if body.api_base_url is not None:
        given["api_base_url"] = body.api_base_url
    config = parse_config(given)
    if body.api_base_url is not None:  # a server of the user's choosing: one we may reach
        await netguard.check_url(body.api_base_url,
                                 netguard.Policy.from_settings(runtime.settings),
                                 field=BASE_FIELD)
    connector = connector_of(request.app.state)
    bot = await connector.get_me(config.bot_token, config.api_base_url)
    public = {"mode": config.mode, "api_base_url": config.api_base_url,
              "bot_id": bot.id, "bot_username": bot.username}
    secrets = {"bot_token": config.bot_token, "secret_token": new_secret_token()}
    cipher = Cipher(runtime.settings.encryption_key.get_secret_value())
    async with runtime.db.tenant_tx(principal.org_id, principal.user_id) as conn:
        row = await integrations.create(conn, principal.actor, cipher, type=CHANNEL,
                                        name=name, config=public, secrets=secrets)
        url = None
        if config.mode == "webhook":
            url = webhook_url(request, row["id"])
            # Inside the transaction: if Telegram refuses, nothing is stored.
            await connector.set_webhook(_integration(row, principal, public, secrets), url)
    return {**row, "webhook_url": url}


def _integration(row: Any, principal: Principal, config: dict[str, Any],
                 secrets: dict[str, str]) -> Integration:
    return Integration(id=str(row["id"]), org_id=principal.org_id, type=CHANNEL,
                       name=row["name"], config=config, secrets=secrets)


async def switched(request: Request, integration: Integration, active: bool) -> None:
    """Telegram told of an activation or deactivation (webhook mode)."""
    if integration.type != CHANNEL or integration.config.get("mode") != "webhook":
        return
    connector = connector_of(request.app.state)
    if active:
        await connector.set_webhook(integration, webhook_url(request, integration.id))
    else:
        await connector.delete_webhook(integration)

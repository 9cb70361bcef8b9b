"""Telegram integrations: what creating, switching on and off, and deleting
one means at Telegram.

Creating one asks Telegram who the bot is (`getMe`): a token Telegram
refuses is a 422 and nothing is stored. In webhook mode the webhook is set
(with a secret token of our own and the update types we handle) inside the
creating transaction, so an integration is stored only once Telegram knows
where to post; deactivating it deletes the webhook (switched off even when
Telegram cannot be reached: a revoked token must not keep an integration
on), activating it sets it again. In polling mode any webhook is deleted
instead (a bot uses one mode at a time: getUpdates answers 409 while one is
set) and, after COMMIT, its poller (actors.poller) is woken. Switching the
mode stops the poller before the webhook is set, or deletes the webhook
before the poller starts. The bot token and the secret token are sealed like
every channel secret and never shown."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from uuid import UUID

from fastapi import Request

from actors.poller import PollerRef
from channels import netguard
from channels.base import ChannelError
from channels.telegram import CHANNEL, new_secret_token, parse_config
from core.crypto import Cipher
from core.errors import Invalid
from serve.auth import Principal, runtime_of
from serve.routers.channels_telegram import connector_of, webhook_path
from storage import integrations
from storage.integrations import Integration

if TYPE_CHECKING:
    from serve.routers.integrations import TelegramConfigIn

log = logging.getLogger(__name__)

BASE_FIELD = "config.api_base_url"
WAKE_TIMEOUT = 5.0  # a poller not told in time is woken by the sweeper


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
        integration = _integration(row, principal, public, secrets)
        url = None
        # Inside the transaction: if Telegram refuses, nothing is stored.
        if config.mode == "webhook":
            url = webhook_url(request, row["id"])
            await connector.set_webhook(integration, url)
        else:
            await connector.delete_webhook(integration)
    await settled(request, None, integration)
    return {**row, "webhook_url": url}


def _integration(row: Any, principal: Principal, config: dict[str, Any],
                 secrets: dict[str, str]) -> Integration:
    return Integration(id=str(row["id"]), org_id=principal.org_id, type=CHANNEL,
                       name=row["name"], config=config, secrets=secrets)


def check_change(integration: Integration, changes: Mapping[str, Any]) -> None:
    """`Invalid` for a change an integration of its type cannot take."""
    if "mode" in changes and integration.type != CHANNEL:
        raise Invalid("only Telegram integrations have a mode", field="config.mode")


def _mode(integration: Integration | None) -> str | None:
    """How the bot receives updates now: None while it is off (or gone)."""
    if integration is None or integration.type != CHANNEL or not integration.is_active:
        return None
    return str(integration.config.get("mode") or "webhook")


async def changed(request: Request, before: Integration, after: Integration | None) -> None:
    """Telegram and the poller told of a change (`after` None: deleted),
    inside the changing transaction: what Telegram refuses is not stored."""
    was, now = _mode(before), _mode(after)
    if was == now:
        return
    if was == "polling":  # stopped before a webhook can make its getUpdates a 409
        await _stop(request, before)
    connector = connector_of(request.app.state)
    if now == "webhook":
        assert after is not None
        await connector.set_webhook(after, webhook_url(request, after.id))
    elif now == "polling":  # getUpdates answers 409 while a webhook is set
        await connector.delete_webhook(after or before)
    elif was == "webhook":
        # Switched off or deleted: that must not depend on Telegram answering
        # (a revoked token, a Bot API server gone for good). A webhook left
        # set at Telegram posts to a URL that answers 404 now, and Telegram
        # gives up on it.
        try:
            await connector.delete_webhook(before)
        except ChannelError as exc:
            log.warning("telegram %s: deleteWebhook failed, switched off anyway: %s",
                        before.id, exc)


async def settled(request: Request, before: Integration | None,
                  after: Integration | None) -> None:
    """After COMMIT: a bot in polling mode has its poller woken (else the
    outbox sweeper wakes it within seconds); one that left it is told to
    stop again, in case a wake came between the first stop and the COMMIT."""
    if _mode(after) == "polling":
        assert after is not None
        poller = PollerRef(runtime_of(request).actors, after.org_id, after.id)
        try:
            await asyncio.wait_for(poller.wake(), WAKE_TIMEOUT)
        except Exception as exc:
            log.warning("telegram %s: waking its poller failed: %s", after.id, exc)
    elif _mode(before) == "polling":
        assert before is not None
        await _stop(request, before)


async def _stop(request: Request, integration: Integration) -> None:
    poller = PollerRef(runtime_of(request).actors, integration.org_id, integration.id)
    try:
        await poller.stop()
    except Exception as exc:  # its host is down: it comes back reading the new mode
        log.warning("telegram %s: stopping its poller failed: %s", integration.id, exc)

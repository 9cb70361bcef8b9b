"""Email integrations: what creating, switching on and off, and deleting a
mailbox means.

Creating one logs in to its IMAP and SMTP servers (at once): a password
either server refuses, or a server that cannot be reached, is a 422 naming
which, and nothing is stored. Both hosts must be addresses the engine may
reach (channels.netguard: no private or loopback ones unless the operator
allows them). The passwords are sealed like every channel secret and never
shown. After COMMIT the mailbox's poller (actors.mailbox) is woken: it
imports the last `import_days` days, then follows the folder. Switching the
integration off, or deleting it, stops the poller."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fastapi import Request

from actors.polling import KINDS, PollerRef
from channels import netguard
from channels.email import CHANNEL, check_logins, parse_config, public_config, secrets_of
from core.crypto import Cipher
from core.errors import Invalid
from core.settings import Settings
from serve.auth import Principal, runtime_of
from storage import integrations
from storage.integrations import Integration

if TYPE_CHECKING:
    from serve.routers.integrations import EmailConfigIn

log = logging.getLogger(__name__)

WAKE_TIMEOUT = 5.0  # a poller not told in time is woken by the sweeper
LOGIN_TIMEOUT = 15.0


def _poller(request: Request, integration: Integration) -> PollerRef:
    return PollerRef(runtime_of(request).actors, integration.org_id, integration.id,
                     KINDS[CHANNEL])


async def create(request: Request, principal: Principal, name: str,
                 body: EmailConfigIn) -> dict[str, Any]:
    runtime = runtime_of(request)
    config = parse_config(body.model_dump(exclude_none=True))
    policy = netguard.Policy.from_settings(runtime.settings)
    for server, field in ((config.imap, "config.imap.host"), (config.smtp, "config.smtp.host")):
        await netguard.checked_addresses(server.host, server.port, policy, field=field)
    await check_logins(config, timeout=min(LOGIN_TIMEOUT, runtime.settings.email_timeout))
    cipher = Cipher(runtime.settings.encryption_key.get_secret_value())
    async with runtime.db.tenant_tx(principal.org_id, principal.user_id) as conn:
        row = await integrations.create(conn, principal.actor, cipher, type=CHANNEL, name=name,
                                        config=public_config(config),
                                        secrets=secrets_of(config))
    created = Integration(id=str(row["id"]), org_id=principal.org_id, type=CHANNEL,
                          name=name, config=row["config"])
    await settled(request, None, created)
    return dict(row)


def _reads(integration: Integration | None) -> bool:
    return integration is not None and integration.type == CHANNEL and integration.is_active


async def check_passwords(settings: Settings, integration: Integration,
                          passwords: Mapping[str, str]) -> None:
    """New passwords of a mailbox, logged in with before they are stored
    (`Invalid` naming the server that refuses one)."""
    if integration.type != CHANNEL:
        raise Invalid("only email integrations have IMAP and SMTP passwords",
                      field="config")
    config = parse_config({**integration.config,
                           **{name: {**integration.config[name],
                                     "password": passwords.get(f"{name}_password")
                                     or integration.secrets.get(f"{name}_password", "")}
                              for name in ("imap", "smtp")}})
    await check_logins(config, timeout=min(LOGIN_TIMEOUT, settings.email_timeout),
                       only={name for name in ("imap", "smtp") if f"{name}_password" in passwords})


async def settled(request: Request, before: Integration | None,
                  after: Integration | None, *, restart: bool = False) -> None:
    """After COMMIT: an active mailbox has its poller woken (else the
    outbox sweeper wakes it within seconds), restarted when its passwords
    changed (a poller waiting out a refused login tries the new one now);
    one switched off or deleted has it stopped."""
    if _reads(after):
        assert after is not None
        try:
            if restart:
                await _poller(request, after).stop()
            await asyncio.wait_for(_poller(request, after).wake(), WAKE_TIMEOUT)
        except Exception as exc:
            log.warning("email %s: waking its poller failed: %s", after.id, exc)
    elif _reads(before):
        assert before is not None
        try:
            await _poller(request, before).stop()
        except Exception as exc:  # its host is down: it comes back reading the change
            log.warning("email %s: stopping its poller failed: %s", before.id, exc)

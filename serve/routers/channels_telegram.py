"""Telegram's webhook: `POST /v1/channels/telegram/{integration_id}/webhook`.

Telegram posts each update with the secret token we gave `setWebhook` in
`X-Telegram-Bot-Api-Secret-Token`; it is checked (constant time) before the
body is parsed, and the 200 goes out only after what the update carries is
committed. Telegram retries anything else, and a redelivered update stores
nothing new (messages dedup on their chat and message id) yet gets its 200."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request, Response

from actors.refs import deliver_batch
from channels.telegram import CHANNEL, TelegramConnector
from core.errors import Invalid
from serve.replica import kept
from serve.routers.channels_api import MAX_BODY, integration_cache

router = APIRouter(prefix="/v1/channels/telegram", tags=["channels"])

OK = b'{"ok":true}'


def connector_of(state: Any) -> TelegramConnector:
    """This replica's Telegram connector (one Bot API client per bot token)."""
    return kept(state, "telegram", TelegramConnector)


def webhook_path(integration_id: UUID | str) -> str:
    return f"/v1/channels/telegram/{integration_id}/webhook"


async def accept_update(state: Any, integration_id: str, headers: Mapping[str, str],
                        body: bytes) -> bytes:
    """Verify, parse and commit one update, then settle it; the 200 body.
    Shared by the route below and the raw-ASGI fast path (serve/fastpath.py)."""
    integration = await integration_cache(state).get(integration_id, CHANNEL)
    connector = connector_of(state)
    if len(body) > MAX_BODY:
        raise Invalid(f"the body is larger than {MAX_BODY} bytes")
    connector.verify(integration, headers, body)
    batch = connector.parse(integration, body)
    await deliver_batch(state.runtime.actors, batch)
    await connector.settle(integration, batch)  # after COMMIT
    return OK


@router.post("/{integration_id}/webhook", responses={401: {}, 404: {}})
async def telegram_webhook(integration_id: UUID, request: Request) -> Response:
    """One Telegram update (as the Bot API posts it to a webhook). (Served by
    the ingress's fast path; this route documents it and serves it when the
    fast path passes a request on.)"""
    answer = await accept_update(request.app.state, str(integration_id), request.headers,
                                 await request.body())
    return Response(answer, media_type="application/json")

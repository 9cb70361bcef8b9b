"""WhatsApp's webhook: `GET|POST /v1/channels/whatsapp/{integration_id}/webhook`
and the app-level `GET|POST /v1/channels/whatsapp/webhook`.

Meta posts all of an app's numbers to the one callback URL of the app, so a
notification is routed by `metadata.phone_number_id`, whichever URL it came
to: before the signature is checked, nothing but those ids is read, to find
the integrations (any org) and their app secret; `X-Hub-Signature-256` is
then checked on the raw body with each of them (constant time), and nothing
is stored unless every one holds. The 200 goes out only after everything the
notification carries (messages, statuses, reactions, for every number) is
committed: Meta retries anything else, and a redelivery stores nothing new
(messages dedup on their wamid). Values of numbers no integration has are
acknowledged and logged, never stored (Meta would retry them for days).

`GET` is Meta's verification of the URL: `hub.challenge` back as plain text
when `hub.verify_token` is the integration's (app-level: any active
WhatsApp integration's), else 403."""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any
from uuid import UUID

import msgspec
from fastapi import APIRouter, Request, Response

from actors.refs import deliver_batch
from channels.whatsapp import CHANNEL, challenge, check_signature
from channels.whatsapp_notifications import decode, parse_notification, phone_number_ids
from core.crypto import Cipher
from core.errors import Forbidden, Invalid
from serve.inbound import apply_statuses
from serve.replica import kept
from serve.routers.channels_api import MAX_BODY, integration_cache
from serve.routers.integrations_whatsapp import verify_token_hash
from storage import integrations
from storage.integrations import Integration

router = APIRouter(prefix="/v1/channels/whatsapp", tags=["channels"])
log = logging.getLogger(__name__)

OK = b'{"ok":true}'
NUMBERS_TTL = 5.0  # a new, moved or switched-off number applies within this
MAX_CHALLENGE = 256


class Numbers:
    """This replica's cache of WhatsApp integrations by phone number id (an
    unknown number is remembered too: a notification for it costs no query)
    and by verify token."""

    def __init__(self, db: Any, cipher: Cipher, ttl: float = NUMBERS_TTL) -> None:
        self.db, self.cipher, self.ttl = db, cipher, ttl
        self._entries: dict[str, tuple[float, Integration | None]] = {}
        self._tokens: dict[str, tuple[float, Integration | None]] = {}  # by token hash
        self._slots = asyncio.Semaphore(2)

    async def find(self, ids: list[str]) -> dict[str, Integration]:
        now = time.monotonic()
        wanted = [i for i in ids if now - self._entries.get(i, (-1e9, None))[0] > self.ttl]
        if wanted:
            async with self._slots, self.db.system_tx() as conn:
                found = await integrations.whatsapp_numbers(conn, wanted, self.cipher)
            if len(self._entries) > 10_000:
                self._entries.clear()
            for number in wanted:
                self._entries[number] = (now, found.get(number))
        return {i: entry for i in ids
                if (entry := self._entries[i][1]) is not None and entry.is_active}

    async def verifying(self, token: str) -> Integration | None:
        """An active WhatsApp integration with this verify token (any org).
        Asked by anyone (Meta's handshake carries no signature): answers,
        unknown tokens included, are kept for the TTL, and at most two
        queries run at once."""
        key = verify_token_hash(token)
        now = time.monotonic()
        known = self._tokens.get(key)
        if known is None or now - known[0] > self.ttl:
            async with self._slots, self.db.system_tx() as conn:
                found = await integrations.whatsapp_by_verify_token(conn, key, self.cipher)
            if len(self._tokens) > 10_000:
                self._tokens.clear()
            known = self._tokens[key] = (now, found[0] if found else None)
        return known[1]


def numbers_of(state: Any) -> Numbers:
    runtime = state.runtime
    return kept(state, "whatsapp_numbers", lambda: Numbers(
        runtime.db, Cipher(runtime.settings.encryption_key.get_secret_value())))


async def accept_notification(state: Any, integration_id: str | None,
                              headers: Mapping[str, str], body: bytes) -> bytes:
    """Verify, route and commit one notification; the 200 body. Shared by
    the routes below and the raw-ASGI fast path (serve/fastpath.py)."""
    if len(body) > MAX_BODY:
        raise Invalid(f"the body is larger than {MAX_BODY} bytes")
    own = None
    if integration_id is not None:  # its own secret first: 401 before anything is read
        own = await integration_cache(state).get(integration_id, CHANNEL)
        check_signature(own.secrets.get("app_secret", ""), headers, body)
    notification = decode(body)
    ids = phone_number_ids(notification)
    found = await numbers_of(state).find(ids) if ids else {}
    checked = {own.secrets.get("app_secret")} if own is not None else set()
    for integration in found.values():
        secret = integration.secrets.get("app_secret", "")
        if secret not in checked:
            check_signature(secret, headers, body)
            checked.add(secret)
    targets = {number: (i.org_id, i.id) for number, i in found.items()}
    batch = parse_notification(notification, targets)
    if batch.messages or batch.reactions:
        await deliver_batch(state.runtime.actors, msgspec.structs.replace(batch, statuses=()))
    if batch.statuses:
        await apply_statuses(state, batch.statuses)
    if batch.ignored:
        log.info("whatsapp: acknowledged without storing: %s", ", ".join(batch.ignored))
    return OK


def verification(expected: str, params: Mapping[str, str]) -> Response:
    if len(params.get("hub.challenge", "")) > MAX_CHALLENGE:
        raise Forbidden("hub.challenge is too long")
    return Response(challenge(expected, params), media_type="text/plain",
                    headers={"X-Content-Type-Options": "nosniff"})


@router.get("/webhook", response_class=Response, responses={403: {}})
async def verify_app(request: Request) -> Response:
    """Meta's verification of the app-level callback URL: the token is any
    active WhatsApp integration's verify token."""
    params = dict(request.query_params)
    token = params.get("hub.verify_token")
    if not token:
        raise Forbidden("hub.verify_token is missing")
    found = await numbers_of(request.app.state).verifying(token)
    if found is None:
        raise Forbidden("no WhatsApp integration has this verify token")
    return verification(found.secrets.get("verify_token", ""), params)


@router.post("/webhook", responses={401: {}})
async def app_webhook(request: Request) -> Response:
    """One notification for any of an app's numbers, routed by phone_number_id.
    (Served by the ingress's fast path; this route documents it.)"""
    answer = await accept_notification(request.app.state, None, request.headers,
                                       await request.body())
    return Response(answer, media_type="application/json")


@router.get("/{integration_id}/webhook", response_class=Response, responses={403: {}})
async def verify(integration_id: UUID, request: Request) -> Response:
    """Meta's verification of this integration's callback URL."""
    integration = await integration_cache(request.app.state).get(str(integration_id), CHANNEL)
    return verification(integration.secrets.get("verify_token", ""),
                        dict(request.query_params))


@router.post("/{integration_id}/webhook", responses={401: {}, 404: {}})
async def webhook(integration_id: UUID, request: Request) -> Response:
    """One notification, signed with the integration's app secret. (Served by
    the ingress's fast path; this route documents it.)"""
    answer = await accept_notification(request.app.state, str(integration_id),
                                       request.headers, await request.body())
    return Response(answer, media_type="application/json")


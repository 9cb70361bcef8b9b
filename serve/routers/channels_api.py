"""The generic API channel's inbound webhook. The body is verified (Standard
Webhooks signature over the raw bytes) before it is parsed, and the answer
(202) is sent only after the message is committed."""
from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any
from uuid import UUID

import msgspec
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from channels.api import CHANNEL, MAX_TEXT, ApiChannel
from core.crypto import Cipher
from core.errors import Invalid
from core.timings import TIMINGS
from serve.inbound import IntegrationCache, deliver
from serve.replica import kept

router = APIRouter(prefix="/v1/channels/api", tags=["channels"])
MAX_BODY = 256 * 1024
CONNECTOR = ApiChannel()  # inbound only: verify and parse


class SenderDoc(BaseModel):
    id: str = Field(min_length=1, max_length=255)
    name: str | None = Field(default=None, max_length=255)
    email: str | None = Field(default=None, max_length=255)
    phone: str | None = Field(default=None, max_length=50)


class InboundDoc(BaseModel):
    external_message_id: str = Field(min_length=1, max_length=255,
                                     description="The sender's id for this message (dedup key)")
    thread_id: str = Field(min_length=1, max_length=255, description="The conversation")
    sender: SenderDoc
    text: str = Field(min_length=1, max_length=MAX_TEXT)


class Accepted(BaseModel):
    id: UUID = Field(description="The stored message (the same for a redelivery)")
    chat_id: UUID
    duplicate: bool = Field(description="True when this message was already stored")


def _body_schema() -> dict[str, Any]:
    schema = InboundDoc.model_json_schema()
    schema["properties"]["sender"] = schema.pop("$defs")["SenderDoc"]
    return schema


def integration_cache(state: Any) -> IntegrationCache:
    """This replica's cache of integrations by id (every channel's webhook uses it)."""
    runtime = state.runtime
    return kept(state, "integrations", lambda: IntegrationCache(
        runtime.db, Cipher(runtime.settings.encryption_key.get_secret_value())))


async def accept(state: Any, integration_id: str, headers: Mapping[str, str],
                 body: bytes) -> bytes:
    """Verify, parse and commit one inbound message; the 202 body. Shared by
    the route below and the raw-ASGI fast path (serve/fastpath.py)."""
    started = time.perf_counter()
    integration = await integration_cache(state).get(integration_id, CHANNEL)
    if len(body) > MAX_BODY:
        raise Invalid(f"the body is larger than {MAX_BODY} bytes")
    CONNECTOR.verify(integration, headers, body)
    (message,) = CONNECTOR.parse(integration, body).messages
    called = time.perf_counter()
    TIMINGS.observe("verify", called - started)
    accepted = await deliver(state.runtime.actors, message)
    TIMINGS.observe("actor_call", time.perf_counter() - called)
    return msgspec.json.encode(accepted)


@router.post(
    "/{integration_id}/messages", status_code=202, response_model=Accepted,
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": _body_schema()}}},
        "parameters": [{"name": n, "in": "header", "required": True, "schema": {"type": "string"}}
                       for n in ("webhook-id", "webhook-timestamp", "webhook-signature")],
    })
async def receive_message(integration_id: UUID, request: Request) -> Any:
    """Inbound message, signed per Standard Webhooks with the integration's secret.
    (Served by the ingress's fast path; this route documents it and serves it
    in apps built without the fast path.)"""
    body = await accept(request.app.state, str(integration_id), request.headers,
                        await request.body())
    return Response(body, status_code=202, media_type="application/json")

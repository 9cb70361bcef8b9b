"""Connecting a number of the fake Graph API (tests/fakes/whatsapp.py) to an
org, as a user of the API would, and posting notifications to it signed as
Meta signs them."""
from __future__ import annotations

import time
import uuid
from typing import Any

import httpx

from tests.conftest import Account
from tests.fakes import whatsapp_notifications as wa
from tests.fakes.whatsapp import FakeGraph, Number

APP_SECRET = "app-secret-" + "5" * 24


async def connect(api: httpx.AsyncClient, owner: Account, fake: FakeGraph, *,
                  app_secret: str = APP_SECRET,
                  verify_token: str | None = None) -> tuple[dict[str, Any], Number]:
    """A WhatsApp integration of a new number: its JSON and the number."""
    number = fake.add_number()
    resp = await api.post("/v1/integrations", headers=owner.headers, json={
        "type": "whatsapp", "name": "Sales line", "config": {
            "access_token": number.access_token, "app_secret": app_secret,
            "verify_token": verify_token or f"verify-{uuid.uuid4().hex}",
            "phone_number_id": number.phone_number_id, "waba_id": number.waba_id,
            "api_base_url": fake.url}})
    assert resp.status_code == 201, resp.text
    return resp.json(), number


async def post(api: httpx.AsyncClient, path: str, notification: dict[str, Any] | bytes,
               secret: str | None = APP_SECRET) -> httpx.Response:
    """POST a notification (or raw bytes) to `path`, signed with `secret`
    (None: unsigned)."""
    body = notification if isinstance(notification, bytes) else wa.encode(notification)
    headers = {"content-type": "application/json"}
    if secret is not None:
        headers["X-Hub-Signature-256"] = wa.sign(secret, body)
    return await api.post(path, content=body, headers=headers)


def hook(integration: dict[str, Any]) -> str:
    return f"/v1/channels/whatsapp/{integration['id']}/webhook"


APP_HOOK = "/v1/channels/whatsapp/webhook"


def now() -> str:
    """A message's `timestamp` for one written now (the builders' default is
    in the past: outside the 24-hour window)."""
    return str(int(time.time()))


def says(text: str, person: dict[str, Any], number: Number, **extra: Any) -> dict[str, Any]:
    """A notification of one text message from `person` to `number`, written now."""
    extra.setdefault("timestamp", now())
    return wa.notification(wa.incoming(person, wa.text(text, person, **extra),
                                       phone_number_id=number.phone_number_id))

"""Connecting a bot of the fake Bot API (tests/fakes/telegram.py) to an org,
as a user of the API would."""
from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.conftest import Account
from tests.fakes.telegram import FakeTelegram


async def connect(api: httpx.AsyncClient, owner: Account, fake: FakeTelegram,
                  mode: str = "webhook") -> tuple[dict[str, Any], str, str]:
    """A Telegram integration: its JSON, the bot token, and the webhook's
    secret token as Telegram got it (empty in polling mode)."""
    token = fake.add_bot(username=f"bot_{uuid.uuid4().hex[:8]}")
    resp = await api.post("/v1/integrations", headers=owner.headers, json={
        "type": "telegram", "name": f"{mode} bot",
        "config": {"bot_token": token, "mode": mode, "api_base_url": fake.url}})
    assert resp.status_code == 201, resp.text
    secret = ""
    if mode == "webhook":
        (call,) = fake.calls_of(token, "setWebhook")
        secret = call.params["secret_token"]
    return resp.json(), token, secret

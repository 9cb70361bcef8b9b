"""Telegram integrations and update bodies for the connector's tests."""
from __future__ import annotations

import json
import uuid
from typing import Any

from channels.telegram import TelegramConnector
from core.messages import Batch
from storage.integrations import Integration

SECRET = "s3cr3t_token-for-webhooks_0123456789abcdef"


def integration(token: str, **config: Any) -> Integration:
    return Integration(id=str(uuid.uuid4()), org_id=str(uuid.uuid4()), type="telegram",
                       name="Sales bot", config={"mode": "polling", **config},
                       secrets={"bot_token": token, "secret_token": SECRET})


def parse(update: Any) -> Batch:
    body = update if isinstance(update, bytes) else json.dumps(update).encode()
    return TelegramConnector().parse(integration("1:" + "a" * 35), body)

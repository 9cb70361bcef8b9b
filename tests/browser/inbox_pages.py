"""What the inbox's browser tests share: an inbound message posted, a chat read
through the API, a chat opened (signed in, live), the live state awaited, the
conversation's message elements."""
from __future__ import annotations

from typing import Any

import httpx
from playwright.async_api import Page, expect

from serve.stack import Stack
from tests.browser.conftest import sign_in
from tests.conftest import Account
from tests.serve.messaging import Inbox, message, post_inbound


async def inbound(api: httpx.AsyncClient, inbox: Inbox, thread: str, text: str) -> str:
    """A signed inbound message from the thread's contact; its chat id."""
    resp = await post_inbound(api, inbox, message(thread=thread, text=text,
                                                  sender=f"s-{thread}"))
    assert resp.status_code == 202, resp.text
    return str(resp.json()["chat_id"])


async def chat_of(api: httpx.AsyncClient, owner: Account, chat_id: str) -> dict[str, Any]:
    resp = await api.get(f"/v1/chats/{chat_id}", headers=owner.headers)
    assert resp.status_code == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]


async def live(page: Page) -> None:
    await expect(page.locator(".live-state")).to_have_attribute("data-state", "live",
                                                                timeout=20_000)


def messages_of(page: Page) -> Any:
    return page.locator(".messages [data-message-id]")


async def unread_is(api: httpx.AsyncClient, owner: Account, chat_id: str, count: int) -> bool:
    return bool((await chat_of(api, owner, chat_id))["unread_count"] == count)


async def open_chat(page: Page, stack: Stack, account: Account, chat_id: str) -> None:
    """Signed in through the form, the chat open, its WebSocket live."""
    await sign_in(page, stack, account)
    await page.goto(f"{stack.api_url}/#/inbox/{chat_id}")
    await live(page)

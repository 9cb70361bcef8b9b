"""The web chat widget in a real browser, against the whole engine: the test
page loads it, the visitor writes, the team's reply appears live, and a
reload keeps the transcript."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
from playwright.async_api import Page, WebSocketRoute, expect

from serve.stack import Stack
from tests.conftest import Account

SCREENSHOTS = Path(__file__).parent / "screenshots"


async def webchat_for(api: httpx.AsyncClient, owner: Account, origin: str) -> str:
    resp = await api.post("/v1/integrations", headers=owner.headers, json={
        "type": "webchat", "name": "Website", "config": {"allowed_origins": [origin]}})
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


async def stored(page: Page, integration_id: str) -> dict[str, Any]:
    found = await page.evaluate(
        "(key) => JSON.parse(localStorage.getItem(key) || '{}')", f"bidi-chat:{integration_id}")
    assert isinstance(found, dict)
    return found


async def test_visitor_chats_with_the_team_live_and_keeps_it_on_reload(
        stack: Stack, page: Page, api: httpx.AsyncClient, owner: Account) -> None:
    integration_id = await webchat_for(api, owner, stack.api_url)
    await page.goto(f"{stack.api_url}/widget/test?integration={integration_id}")
    await page.get_by_role("button", name="Open chat").click()
    panel = page.get_by_role("dialog", name="Chat with us")
    await expect(panel).to_be_visible()
    await expect(panel.get_by_text("No messages yet")).to_be_visible()

    box = panel.get_by_label("Your message")
    await expect(box).to_be_focused()
    await box.fill("Hi! Do you have the blue one in stock?")
    await box.press("Enter")
    mine = panel.locator(".msg.mine")
    await expect(mine).to_have_count(1)
    await expect(mine).to_contain_text("Hi! Do you have the blue one in stock?")
    await expect(mine.locator(".meta")).to_have_text("Sent")
    await expect(box).to_have_value("")

    chat_id = (await stored(page, integration_id))["chat_id"]
    listed = await api.get(f"/v1/chats/{chat_id}/messages", headers=owner.headers)
    assert [m["content"] for m in listed.json()["data"]] == [
        "Hi! Do you have the blue one in stock?"]
    resp = await api.post(f"/v1/chats/{chat_id}/messages", headers=owner.headers,
                          json={"content": "Yes, <b>three</b> left in size M."})
    assert resp.status_code == 202, resp.text
    theirs = panel.locator(".msg.theirs")
    await expect(theirs).to_have_count(1)
    # Text, not markup: the tags show as typed.
    await expect(theirs).to_contain_text("Yes, <b>three</b> left in size M.")
    await expect(theirs.locator("b")).to_have_count(0)
    SCREENSHOTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / "widget.png"))

    await page.reload()
    await page.get_by_role("button", name="Open chat").click()
    await expect(panel.locator(".msg")).to_have_count(2)
    await expect(panel.locator(".msg").nth(0)).to_contain_text("blue one")
    await expect(panel.locator(".msg").nth(1)).to_contain_text("three")
    assert (await stored(page, integration_id))["chat_id"] == chat_id

    # Still live after the reload (the socket resumed from its last seq).
    again = await api.post(f"/v1/chats/{chat_id}/messages", headers=owner.headers,
                           json={"content": "Shall I reserve one?"})
    assert again.status_code == 202
    await expect(panel.locator(".msg.theirs")).to_have_count(2)
    await expect(panel.locator(".msg")).to_have_count(3)
    await page.keyboard.press("Escape")
    await expect(panel).to_be_hidden()
    await expect(page.get_by_role("button", name="Open chat")).to_be_focused()


async def test_widget_fits_a_phone(stack: Stack, page: Page, api: httpx.AsyncClient,
                                   owner: Account) -> None:
    integration_id = await webchat_for(api, owner, stack.api_url)
    await page.set_viewport_size({"width": 375, "height": 740})
    await page.goto(f"{stack.api_url}/widget/test?integration={integration_id}")
    await page.get_by_role("button", name="Open chat").click()
    panel = page.get_by_role("dialog", name="Chat with us")
    await expect(panel.get_by_text("No messages yet")).to_be_visible()
    found = await panel.bounding_box()
    assert found is not None and found["x"] >= 0 and found["width"] <= 375
    send = panel.get_by_role("button", name="Send")
    button = await send.bounding_box()
    assert button is not None and button["x"] + button["width"] <= 375


async def test_widget_resumes_after_a_dropped_socket(stack: Stack, page: Page,
                                                    api: httpx.AsyncClient,
                                                    owner: Account) -> None:
    """The socket is cut (through a proxy of it); what the team writes
    meanwhile arrives once the widget is back, once."""
    integration_id = await webchat_for(api, owner, stack.api_url)
    sockets: list[WebSocketRoute] = []
    subscribes: list[dict[str, Any]] = []

    def proxy(route: WebSocketRoute) -> None:
        server = route.connect_to_server()

        def up(message: str | bytes) -> None:
            frame = json.loads(message)
            if frame.get("type") == "subscribe":
                subscribes.append(frame)
            server.send(message)

        route.on_message(up)
        sockets.append(route)

    await page.route_web_socket(re.compile(r".*/v1/webchat/ws.*"), proxy)
    await page.goto(f"{stack.api_url}/widget/test?integration={integration_id}")
    await page.get_by_role("button", name="Open chat").click()
    panel = page.get_by_role("dialog", name="Chat with us")
    box = panel.get_by_label("Your message")
    await box.fill("Is anyone there?")
    await box.press("Enter")
    await expect(panel.locator(".msg.mine .meta")).to_have_text("Sent")
    chat_id = (await stored(page, integration_id))["chat_id"]
    first = await api.post(f"/v1/chats/{chat_id}/messages", headers=owner.headers,
                           json={"content": "Hello from the team"})
    assert first.status_code == 202
    await expect(panel.locator(".msg.theirs")).to_have_count(1)
    seen = (await stored(page, integration_id))["seq"]
    assert seen > 0 and len(sockets) == 1

    await sockets[0].close(code=1011, reason="dropped")
    away = await api.post(f"/v1/chats/{chat_id}/messages", headers=owner.headers,
                          json={"content": "Written while you were away"})
    assert away.status_code == 202
    await expect(panel.locator(".msg.theirs")).to_have_count(2)
    await expect(panel.locator(".msg.theirs").nth(1)).to_contain_text("while you were away")
    assert len(sockets) == 2
    assert subscribes[0]["since"] == 0 and subscribes[1]["since"] >= seen
    after = await api.post(f"/v1/chats/{chat_id}/messages", headers=owner.headers,
                           json={"content": "And now live again"})
    assert after.status_code == 202
    await expect(panel.locator(".msg.theirs")).to_have_count(3)
    await expect(panel.locator(".msg")).to_have_count(4)

"""Replying from the inbox in a real Chromium: Enter sends (pending, then sent),
a refused reply shows why, a send lost to the network is retried with the
same key, typing goes both ways, a closed WhatsApp window offers templates,
and unsent text survives a reload."""
from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
from playwright.async_api import Page, Route, expect

from serve.stack import Stack
from tests.browser.inbox_pages import inbound, messages_of, open_chat
from tests.conftest import Account
from tests.fakes.callback import CallbackServer
from tests.fakes.whatsapp import FakeGraph
from tests.serve.messaging import Client, make_inbox
from tests.serve.test_members import join
from tests.serve.test_whatsapp import person
from tests.serve.whatsapp_numbers import connect, hook, post, says


async def _chat_open(page: Page, stack: Stack, api: httpx.AsyncClient, owner: Account,
                     callback: CallbackServer, prefix: str, text: str) -> tuple[str, str]:
    """An API inbox replying to the callback under a fresh path starting
    with `prefix`, a chat its contact opened with `text`, shown in the
    browser; (the path, the chat's id)."""
    path = f"{prefix}-{uuid.uuid4().hex[:8]}"
    inbox = await make_inbox(api, owner, callback.url(path))
    chat_id = await inbound(api, inbox, f"t-{uuid.uuid4().hex[:8]}", text)
    await open_chat(page, stack, owner, chat_id)
    return path, chat_id


async def test_a_reply_sent_with_enter_shows_pending_then_sent(
        page: Page, stack: Stack, api: httpx.AsyncClient, owner: Account,
        callback: CallbackServer) -> None:
    path, chat_id = await _chat_open(page, stack, api, owner, callback, "ok-inbox",
                                     "Can I get a demo?")
    await expect(messages_of(page)).to_have_count(1)
    # Every status the reply's element takes, as the page shows them.
    await page.evaluate("""() => {
      window.statuses = [];
      new MutationObserver((records) => {
        for (const r of records) for (const n of [r.target, ...r.addedNodes]) {
          if (n.nodeType === 1 && n.matches('.message.outgoing')) {
            window.statuses.push(n.dataset.status);
          }
        }
      }).observe(document.querySelector('.messages'), { childList: true, subtree: true,
                                                       attributeFilter: ['data-status'] });
    }""")
    composer = page.get_by_label("Reply")
    await composer.fill("Sure: Tuesday at 10?")
    await composer.press("Enter")
    await expect(composer).to_have_value("")
    reply = page.locator(".message.outgoing", has_text="Sure: Tuesday at 10?")
    await expect(reply).to_have_attribute("data-status", "sent")
    await expect(reply).to_have_count(1)  # the local copy became the server's, not a second one
    statuses = await page.evaluate("window.statuses")
    assert statuses[0] == "pending" and statuses[-1] == "sent", statuses
    message_id = await reply.get_attribute("data-message-id")
    assert message_id and not message_id.startswith("local-")
    resp = await api.get(f"/v1/chats/{chat_id}/messages", headers=owner.headers)
    (ours,) = [m for m in resp.json()["data"] if not m["is_incoming"]]
    assert (ours["id"], ours["content"], ours["status"]) == (
        message_id, "Sure: Tuesday at 10?", "sent")
    delivered = callback.for_path(path)
    assert [r.headers["webhook-id"] for r in delivered] == [message_id]
    assert delivered[0].json["text"] == "Sure: Tuesday at 10?"


async def test_a_refused_reply_shows_failed_with_the_reason(
        page: Page, stack: Stack, api: httpx.AsyncClient, owner: Account,
        callback: CallbackServer) -> None:
    inbox = await make_inbox(api, owner, callback.url(f"fail400-{uuid.uuid4().hex[:8]}"))
    chat_id = await inbound(api, inbox, f"t-{uuid.uuid4().hex[:8]}", "Hello?")
    await open_chat(page, stack, owner, chat_id)
    await page.get_by_label("Reply").fill("This one bounces")
    await page.get_by_role("button", name="Send").click()
    reply = page.locator(".message.outgoing", has_text="This one bounces")
    await expect(reply).to_have_attribute("data-status", "failed", timeout=20_000)
    resp = await api.get(f"/v1/chats/{chat_id}/messages", headers=owner.headers)
    (ours,) = [m for m in resp.json()["data"] if not m["is_incoming"]]
    assert ours["status"] == "failed" and ours["metadata"]["error"]
    await expect(reply.get_by_role("alert")).to_contain_text(
        f"Not delivered: {ours['metadata']['error']}")


async def test_a_send_lost_to_the_network_is_retried_with_the_same_key_and_sent_once(
        page: Page, stack: Stack, api: httpx.AsyncClient, owner: Account,
        callback: CallbackServer) -> None:
    path, chat_id = await _chat_open(page, stack, api, owner, callback, "ok-retry",
                                     "Are you there?")
    keys: list[str | None] = []
    # What happens to each send: the network fails before the server sees
    # it; it goes through; it reaches the server but the answer is lost.
    fates = ["lost before", "through", "answer lost"]

    async def network(route: Route) -> None:
        if route.request.method != "POST":
            await route.continue_()
            return
        keys.append(await route.request.header_value("idempotency-key"))
        fate = fates.pop(0)
        if fate == "through":
            await route.continue_()
            return
        if fate == "answer lost":
            await route.fetch()
        await route.abort("connectionreset")
    await page.route(f"**/v1/chats/{chat_id}/messages", network)
    composer = page.get_by_label("Reply")
    await composer.fill("Yes, here")
    await composer.press("Enter")
    reply = page.locator(".message.outgoing", has_text="Yes, here")
    await expect(reply).to_have_attribute("data-status", "failed")
    await expect(reply).to_contain_text("network")
    await reply.get_by_role("button", name="Retry").click()
    await expect(reply).to_have_attribute("data-status", "sent", timeout=20_000)
    assert len(keys) == 2 and keys[0] and keys[0] == keys[1]

    # Stored but unanswered: the live event reconciles it, no second copy.
    await composer.fill("Still here")
    await composer.press("Enter")
    second = page.locator(".message.outgoing", has_text="Still here")
    await expect(second).to_have_attribute("data-status", "sent", timeout=20_000)
    await expect(page.locator(".message.outgoing")).to_have_count(2)
    resp = await api.get(f"/v1/chats/{chat_id}/messages", headers=owner.headers)
    ours = [m for m in resp.json()["data"] if not m["is_incoming"]]
    assert sorted((m["content"], m["status"]) for m in ours) == [
        ("Still here", "sent"), ("Yes, here", "sent")]
    shown = await page.locator(".message.outgoing").evaluate_all(
        "els => els.map(e => e.dataset.messageId)")
    assert sorted(shown) == sorted(m["id"] for m in ours)
    assert len(callback.for_path(path)) == 2


async def test_typing_goes_both_ways_and_is_paced(
        page: Page, stack: Stack, api: httpx.AsyncClient, owner: Account) -> None:
    inbox = await make_inbox(api, owner)
    chat_id = await inbound(api, inbox, f"t-{uuid.uuid4().hex[:8]}", "Hi")
    colleague = await join(api, owner, "bidi")
    other = await Client.connect(stack.ws_url, colleague.access)
    try:
        await other.subscribe([f"chat:{chat_id}"])
        await open_chat(page, stack, owner, chat_id)
        await expect(messages_of(page)).to_have_count(1)
        await other.send({"type": "typing", "chat_id": chat_id})
        typing = page.locator(".typing")
        await expect(typing).to_have_text("Test User is typing…")  # the member, by name
        await expect(typing).to_be_empty(timeout=8_000)  # gone after 5 s of quiet

        composer = page.get_by_label("Reply")
        await composer.press_sequentially("hello there, a long line", delay=20)
        def mine(f: dict[str, Any]) -> bool:
            return f.get("type") == "typing" and f.get("user_id") == owner.user_id
        await other.wait_for(mine)
        # Two dozen keys within half a second: one frame, not one per key.
        await other.send({"type": "ping"})
        await other.wait_for(lambda f: f.get("type") == "pong")
        assert len([f for f in other.frames if mine(f)]) == 1
    finally:
        await other.close()


async def test_a_whatsapp_chat_outside_its_window_offers_templates_and_sends_one(
        page: Page, stack: Stack, api: httpx.AsyncClient, owner: Account,
        fake_graph: FakeGraph) -> None:
    integration, number = await connect(api, owner, fake_graph)
    fake_graph.add_template(number.waba_id, "order_update")
    yesterday = str(int(time.time()) - 25 * 3600)
    who = person()
    resp = await post(api, hook(integration), says("Call me", who, number,
                                                   timestamp=yesterday))
    assert resp.status_code == 200, resp.text
    chats = (await api.get("/v1/chats", headers=owner.headers)).json()["data"]
    (chat,) = chats
    await open_chat(page, stack, owner, chat['id'])
    await expect(page.locator(".window-closed")).to_contain_text("24-hour window")
    await expect(page.get_by_label("Reply")).to_have_count(0)  # free text cannot go
    picker = page.get_by_label("Template")
    await expect(picker).to_be_enabled()
    await expect(picker).to_have_value("order_update|en_US")
    await page.get_by_role("button", name="Send template").click()
    sent = page.locator(".message.outgoing", has_text="order_update")
    await expect(sent).to_have_attribute("data-status", "sent", timeout=20_000)
    payload = fake_graph.sent(number.phone_number_id)[-1]
    assert payload["type"] == "template" and payload["template"]["name"] == "order_update"
    assert payload["template"]["language"] == {"code": "en_US"}
    # The contact writes again: the window opens, free text can go.
    resp = await post(api, hook(integration), says("Tomorrow at 10", who, number))
    assert resp.status_code == 200, resp.text
    await expect(page.get_by_label("Reply")).to_be_visible()
    await expect(page.locator(".window-closed")).to_have_count(0)


async def test_the_unsent_text_survives_a_reload_and_shift_enter_is_a_new_line(
        page: Page, stack: Stack, api: httpx.AsyncClient, owner: Account) -> None:
    inbox = await make_inbox(api, owner)
    chat_id = await inbound(api, inbox, f"t-{uuid.uuid4().hex[:8]}", "Quote please")
    await open_chat(page, stack, owner, chat_id)
    composer = page.get_by_label("Reply")
    await composer.press_sequentially("Line one")
    await composer.press("Shift+Enter")
    await composer.press_sequentially("line two")
    await expect(composer).to_have_value("Line one\nline two")
    await expect(page.locator(".message.outgoing")).to_have_count(0)  # not sent
    # The session ends (its refresh token gone) and comes back: the text is kept.
    await page.evaluate("localStorage.removeItem('bidi.session')")
    await page.reload()
    await open_chat(page, stack, owner, chat_id)
    await expect(page.get_by_label("Reply")).to_have_value("Line one\nline two")
    await page.get_by_label("Reply").press("Enter")
    await expect(page.locator(".message.outgoing .message-text")).to_have_text(
        "Line one\nline two")
    await page.reload()
    await expect(page.get_by_label("Reply")).to_have_value("")  # sent: nothing kept

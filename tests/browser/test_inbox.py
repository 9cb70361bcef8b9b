"""The inbox in a real Chromium against the real engine: sign-in, a message
arriving live in the list and the open conversation (unread, then read on
open), a reply with Enter going pending -> sent, an AI draft edited and
approved, a conversation that loses its WebSocket (the replica's pub/sub
line killed, so the server closes it 1012) catching up on what came while
it was down exactly once and in order, and history paging upward."""
from __future__ import annotations

import base64
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import redis.asyncio as aioredis
from playwright.async_api import Page, Route, WebSocketRoute, expect

from serve.stack import Stack
from storage.db import Database
from tests.browser.conftest import screenshot_path, sign_in
from tests.conftest import Account
from tests.fakes import telegram_updates as tg
from tests.fakes import whatsapp_notifications as wa
from tests.fakes.callback import CallbackServer
from tests.fakes.google import FakeGoogle
from tests.fakes.openai import FakeOpenAI
from tests.fakes.telegram import FakeTelegram
from tests.fakes.whatsapp import FakeGraph
from tests.serve.agent_setup import chat_with_agent, make_agent, outbound, use_fake_openai
from tests.serve.messaging import Client, Inbox, make_inbox, message, post_inbound
from tests.serve.telegram_bots import connect as connect_bot
from tests.serve.test_agent_runs import finished
from tests.serve.test_members import join
from tests.serve.test_telegram import post_update
from tests.serve.test_whatsapp import person
from tests.serve.whatsapp_numbers import connect, hook, now, post, says
from tests.waiting import eventually


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


async def test_sign_in_shows_the_shell_and_a_wrong_password_the_error(
        page: Page, stack: Stack, owner: Account) -> None:
    await page.goto(f"{stack.api_url}/")
    await page.get_by_label("Email").fill(owner.email)
    await page.get_by_label("Password").fill("not the password")
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await expect(page.locator(".form-error")).to_contain_text("password")
    await expect(page.get_by_role("navigation", name="Main")).to_have_count(0)
    await sign_in(page, stack, owner)
    nav = page.get_by_role("navigation", name="Main")
    await expect(nav.get_by_role("link", name="Inbox")).to_have_attribute("aria-current", "page")
    await expect(page).to_have_url(f"{stack.api_url}/#/inbox")
    await live(page)
    # A new org has no chats: the empty state says where to start.
    await expect(page.locator(".chat-list")).to_contain_text("No conversations yet")


async def test_sign_in_with_google_runs_the_redirect_flow_back_to_the_inbox(
        page: Page, stack: Stack, fake_google: FakeGoogle) -> None:
    email = f"g{uuid.uuid4().hex[:10]}@example.com"
    fake_google.user = {"sub": str(uuid.uuid4().int)[:21], "email": email,
                        "email_verified": True, "name": "Katherine Johnson"}
    await page.goto(f"{stack.api_url}/")
    await page.get_by_role("button", name="Sign in with Google").click()
    # Google's consent (the fake redirects at once), then back to the inbox.
    await expect(page.get_by_role("navigation", name="Main")).to_be_visible()
    await expect(page).to_have_url(f"{stack.api_url}/#/inbox")
    await expect(page.locator(".user-name")).to_have_text("Katherine Johnson")
    assert await page.evaluate("localStorage.getItem('bidi.session')") is not None


async def test_an_inbound_message_shows_live_in_the_list_and_the_open_chat_and_is_read(
        page: Page, stack: Stack, api: httpx.AsyncClient, owner: Account) -> None:
    inbox = await make_inbox(api, owner)
    await sign_in(page, stack, owner)
    await live(page)
    thread = f"t-{uuid.uuid4().hex[:8]}"
    chat_id = await inbound(api, inbox, thread, "Do you ship to Lisbon?")
    item = page.locator(f".chat-item[data-chat-id='{chat_id}']")
    await expect(item).to_contain_text("Do you ship to Lisbon?")
    await expect(item.locator(".unread-badge")).to_have_text("1")
    await inbound(api, inbox, thread, "And to Porto?")
    await expect(item.locator(".unread-badge")).to_have_text("2")
    assert (await chat_of(api, owner, chat_id))["unread_count"] == 2

    await item.click()
    await expect(page).to_have_url(f"{stack.api_url}/#/inbox/{chat_id}")
    await expect(messages_of(page)).to_have_count(2)
    await expect(item.locator(".unread-badge")).to_have_count(0)
    await eventually(lambda: _unread_is(api, owner, chat_id, 0), what="read on open")

    # While it is open (and the tab visible) a new message shows and is read.
    await inbound(api, inbox, thread, "Never mind, Faro")
    await expect(messages_of(page).last).to_contain_text("Never mind, Faro")
    await expect(messages_of(page).last).to_have_class("message incoming")
    await expect(messages_of(page)).to_have_count(3)
    await eventually(lambda: _unread_is(api, owner, chat_id, 0), what="read while open")
    await expect(item.locator(".unread-badge")).to_have_count(0)


async def _unread_is(api: httpx.AsyncClient, owner: Account, chat_id: str, count: int) -> bool:
    return bool((await chat_of(api, owner, chat_id))["unread_count"] == count)


async def test_a_reply_sent_with_enter_shows_pending_then_sent(
        page: Page, stack: Stack, api: httpx.AsyncClient, owner: Account,
        callback: CallbackServer) -> None:
    path = f"ok-inbox-{uuid.uuid4().hex[:8]}"
    inbox = await make_inbox(api, owner, callback.url(path))
    chat_id = await inbound(api, inbox, f"t-{uuid.uuid4().hex[:8]}", "Can I get a demo?")
    await sign_in(page, stack, owner)
    await page.goto(f"{stack.api_url}/#/inbox/{chat_id}")
    await live(page)
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
    await sign_in(page, stack, owner)
    await page.goto(f"{stack.api_url}/#/inbox/{chat_id}")
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
    path = f"ok-retry-{uuid.uuid4().hex[:8]}"
    inbox = await make_inbox(api, owner, callback.url(path))
    chat_id = await inbound(api, inbox, f"t-{uuid.uuid4().hex[:8]}", "Are you there?")
    await sign_in(page, stack, owner)
    await page.goto(f"{stack.api_url}/#/inbox/{chat_id}")
    await live(page)
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
        await sign_in(page, stack, owner)
        await page.goto(f"{stack.api_url}/#/inbox/{chat_id}")
        await live(page)
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
    await sign_in(page, stack, owner)
    await page.goto(f"{stack.api_url}/#/inbox/{chat['id']}")
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


async def test_an_ai_draft_is_edited_and_approved_in_the_browser(
        page: Page, stack: Stack, api: httpx.AsyncClient, owner: Account, db: Database,
        fake_openai: FakeOpenAI, callback: CallbackServer) -> None:
    key = await use_fake_openai(api, owner, fake_openai)
    fake_openai.script(key, "Hi Grace, 40 seats are $4,000 a month.")
    agent = await make_agent(api, owner, tools=[])
    _, chat_id = await chat_with_agent(api, owner, agent, callback=callback)
    await sign_in(page, stack, owner)
    await page.goto(f"{stack.api_url}/#/inbox/{chat_id}")
    draft = page.locator(".message[data-status='draft']")
    await expect(draft).to_contain_text("Hi Grace, 40 seats are $4,000 a month.",
                                        timeout=30_000)
    await expect(page.locator("#agent-select")).to_have_value(agent["id"])
    await page.screenshot(path=screenshot_path("inbox"))

    await draft.get_by_role("button", name="Edit").click()
    editor = draft.get_by_label("Edit the draft")
    await editor.fill("Hi Grace, 40 seats are $3,600 a month with the annual plan.")
    await draft.get_by_role("button", name="Approve edited").click()
    draft_id = await draft.get_attribute("data-message-id")
    sent = page.locator(f".message[data-message-id='{draft_id}']")
    await expect(sent).to_have_attribute("data-status", "sent", timeout=20_000)
    await expect(sent).to_contain_text("$3,600 a month with the annual plan")
    await expect(sent.get_by_role("button", name="Approve")).to_have_count(0)
    (row,) = [m for m in await outbound(db, owner, chat_id) if m["ai_draft"]]
    assert str(row["id"]) == draft_id
    assert row["content"] == "Hi Grace, 40 seats are $3,600 a month with the annual plan."
    assert row["status"] == "sent"
    posted = [r.json for r in callback.received if r.headers.get("webhook-id") == draft_id]
    assert posted and posted[0]["text"] == row["content"]


async def test_a_tool_call_held_for_a_person_is_approved_in_the_chat_header(
        page: Page, stack: Stack, api: httpx.AsyncClient, owner: Account, db: Database,
        fake_openai: FakeOpenAI) -> None:
    other = await api.post("/v1/contacts", headers=owner.headers,
                           json={"first_name": "Bob", "email": "bob@client.test"})
    assert other.status_code == 201, other.text
    bob = other.json()["id"]
    key = await use_fake_openai(api, owner, fake_openai)
    fake_openai.script(key, [("update_contact", {"contact_id": bob,
                                                 "fields": {"first_name": "Robert"}})],
                       "I asked a colleague to update Bob's record.")
    agent = await make_agent(api, owner, tools=["update_contact"])
    await sign_in(page, stack, owner)
    _, chat_id = await chat_with_agent(api, owner, agent,
                                       text="Please rename my colleague Bob to Robert")
    (run,) = await finished(api, db, owner, agent["id"])
    assert run["output_data"]["pending"]
    await page.goto(f"{stack.api_url}/#/inbox/{chat_id}")
    held = page.locator(".approval")
    await expect(held).to_contain_text("update_contact", timeout=30_000)
    await expect(held).to_contain_text(bob)
    contact = await api.get(f"/v1/contacts/{bob}", headers=owner.headers)
    assert contact.json()["first_name"] == "Bob"  # not run yet
    await held.get_by_role("button", name="Approve").click()
    await expect(held).to_have_count(0)
    contact = await api.get(f"/v1/contacts/{bob}", headers=owner.headers)
    assert contact.json()["first_name"] == "Robert"
    listed = await api.get(f"/v1/agents/{agent['id']}/approvals", headers=owner.headers)
    assert listed.json()["data"] == []


@pytest.fixture
async def stack_redis(stack: Stack) -> AsyncIterator[aioredis.Redis]:
    assert stack.settings.redis_url is not None
    client = aioredis.Redis.from_url(stack.settings.redis_url)
    yield client
    await client.aclose()


async def test_after_the_server_drops_the_socket_what_came_meanwhile_shows_once_in_order(
        page: Page, stack: Stack, api: httpx.AsyncClient, owner: Account,
        stack_redis: aioredis.Redis) -> None:
    inbox = await make_inbox(api, owner)
    thread = f"t-{uuid.uuid4().hex[:8]}"
    chat_id = await inbound(api, inbox, thread, "first")
    # Every connection goes to the real /v1/ws; while `down`, a reconnect is
    # turned away, so the three messages below come while the page is offline.
    down = False

    async def gate(ws: WebSocketRoute) -> None:
        if down:
            await ws.close(code=1012, reason="down")
        else:
            ws.connect_to_server()
    await page.route_web_socket("**/v1/ws**", gate)
    await sign_in(page, stack, owner)
    await page.goto(f"{stack.api_url}/#/inbox/{chat_id}")
    await live(page)
    await expect(messages_of(page)).to_have_count(1)

    down = True
    # The replica's pub/sub line dies: it closes every live socket 1012.
    assert await stack_redis.client_kill_filter(_type="pubsub") >= 1
    await expect(page.locator(".live-state")).not_to_have_attribute("data-state", "live")
    await expect(page.locator(".live-banner")).to_be_visible()
    for text in ("while down 1", "while down 2", "while down 3"):
        await inbound(api, inbox, thread, text)
    await expect(messages_of(page)).to_have_count(1)  # nothing can reach the page now
    down = False

    await live(page)
    await expect(page.locator(".live-banner")).to_be_hidden()
    await expect(messages_of(page)).to_have_count(4)
    texts = await page.locator(".messages .message-text").all_inner_texts()
    assert texts == ["first", "while down 1", "while down 2", "while down 3"]
    ids = await messages_of(page).evaluate_all("els => els.map(e => e.dataset.messageId)")
    assert len(set(ids)) == 4
    # And the socket is live again: the next message comes without a reload.
    await inbound(api, inbox, thread, "after")
    await expect(messages_of(page)).to_have_count(5)
    await expect(messages_of(page).last).to_contain_text("after")


async def test_scrolling_up_loads_older_messages_and_keeps_the_place(
        page: Page, stack: Stack, api: httpx.AsyncClient, owner: Account) -> None:
    inbox = await make_inbox(api, owner)
    thread = f"t-{uuid.uuid4().hex[:8]}"
    chat_id = ""
    for n in range(120):
        chat_id = await inbound(api, inbox, thread, f"message {n:03}")
    await sign_in(page, stack, owner)
    await page.goto(f"{stack.api_url}/#/inbox/{chat_id}")
    await expect(messages_of(page)).to_have_count(50)
    await expect(messages_of(page).last).to_contain_text("message 119")
    await expect(messages_of(page).first).to_contain_text("message 070")
    scroller = page.locator(".message-scroll")
    assert await scroller.evaluate("e => e.scrollHeight - e.scrollTop - e.clientHeight") < 5

    await scroller.evaluate("e => { e.scrollTop = 0; }")
    await expect(messages_of(page)).to_have_count(100)
    await expect(messages_of(page).first).to_contain_text("message 020")
    # What was at the top is still in view: the older page grew above it.
    kept = page.locator(".message", has_text="message 070")
    await expect(kept).to_be_in_viewport()
    assert await scroller.evaluate("e => e.scrollTop") > 0

    await scroller.evaluate("e => { e.scrollTop = 0; }")
    await expect(messages_of(page)).to_have_count(120)
    texts = await page.locator(".messages .message-text").all_inner_texts()
    assert texts == [f"message {n:03}" for n in range(120)]


async def test_at_phone_width_the_list_and_the_conversation_take_turns(
        page: Page, stack: Stack, api: httpx.AsyncClient, owner: Account) -> None:
    inbox = await make_inbox(api, owner)
    chat_id = await inbound(api, inbox, f"t-{uuid.uuid4().hex[:8]}",
                            "Is the Pro plan monthly?\nOr yearly only?")
    await page.set_viewport_size({"width": 375, "height": 740})
    await sign_in(page, stack, owner)
    item = page.locator(f".chat-item[data-chat-id='{chat_id}']")
    await expect(item).to_be_visible()
    await expect(page.locator(".conversation")).to_have_count(0)
    await page.screenshot(path=screenshot_path("inbox-phone-list"))
    await item.click()
    await expect(messages_of(page)).to_have_count(1)
    await expect(item).to_be_hidden()
    composer = page.get_by_label("Reply")
    await expect(composer).to_be_visible()
    box = await composer.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 375
    assert await page.evaluate("document.documentElement.scrollWidth") <= 375
    await page.screenshot(path=screenshot_path("inbox-phone-chat"))
    await page.get_by_role("link", name="Back to the list").click()
    await expect(page).to_have_url(f"{stack.api_url}/#/inbox")
    await expect(item).to_be_visible()


async def test_the_chat_list_pages_on_scroll_reorders_live_and_filters(
        page: Page, stack: Stack, api: httpx.AsyncClient, owner: Account) -> None:
    inbox = await make_inbox(api, owner)
    threads = [f"t-{n:02}-{uuid.uuid4().hex[:6]}" for n in range(55)]
    chats = [await inbound(api, inbox, thread, f"first words {n:02}")
             for n, thread in enumerate(threads)]
    await sign_in(page, stack, owner)
    await live(page)
    items = page.locator(".chat-item")
    await expect(items).to_have_count(50)
    await expect(items.first).to_have_attribute("data-chat-id", chats[-1])  # newest first
    await page.locator(".chat-scroll").evaluate("e => { e.scrollTop = e.scrollHeight; }")
    await expect(items).to_have_count(55)
    await expect(items.last).to_have_attribute("data-chat-id", chats[0])

    # News in the oldest chat moves it to the top, with its preview and badge.
    await inbound(api, inbox, threads[0], "back again")
    await expect(items.first).to_have_attribute("data-chat-id", chats[0])
    await expect(items.first).to_contain_text("back again")
    await expect(items.first.locator(".unread-badge")).to_have_text("2")
    await expect(items).to_have_count(55)

    # Read it, then list only unread chats: it is not among them.
    await items.first.click()
    await expect(messages_of(page)).to_have_count(2)
    await eventually(lambda: _unread_is(api, owner, chats[0], 0), what="read on open")
    await page.get_by_label("Filter by read state").select_option("true")
    await expect(items).to_have_count(50)
    await expect(items.first).to_have_attribute("data-chat-id", chats[-1])
    await expect(page.locator(f".chat-item[data-chat-id='{chats[0]}']")).to_have_count(0)
    await page.get_by_label("Filter by channel").select_option("telegram")
    await expect(items).to_have_count(0)
    await expect(page.locator(".chat-list")).to_contain_text("No conversations match")


# A 2x2 red PNG: a real image the browser decodes.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR4nGP8z8DAwMDAxMDAwMDAAAANHQEDasKb6QAAAABJRU5ErkJggg==")


async def test_attachments_show_images_inline_and_other_files_as_downloads(
        page: Page, stack: Stack, api: httpx.AsyncClient, owner: Account,
        fake_graph: FakeGraph) -> None:
    integration, number = await connect(api, owner, fake_graph)
    who = person()
    resp = await post(api, hook(integration), says("Hi, two files coming", who, number))
    assert resp.status_code == 200, resp.text
    (chat,) = (await api.get("/v1/chats", headers=owner.headers)).json()["data"]
    await sign_in(page, stack, owner)
    await page.goto(f"{stack.api_url}/#/inbox/{chat['id']}")
    await live(page)
    await expect(messages_of(page)).to_have_count(1)

    # Both arrive while the conversation is open.
    photo = fake_graph.add_media(PNG, "image/png")
    pdf = fake_graph.add_media(b"%PDF-1.4 a quote", "application/pdf")
    for kind, body in (("image", {"id": photo, "mime_type": "image/png", "caption": "Our shop"}),
                       ("document", {"id": pdf, "mime_type": "application/pdf",
                                     "filename": "quote.pdf"})):
        resp = await post(api, hook(integration), wa.notification(wa.incoming(
            who, wa.message(kind, body, who, timestamp=now()),
            phone_number_id=number.phone_number_id)))
        assert resp.status_code == 200, resp.text
    await expect(messages_of(page)).to_have_count(3)
    image = page.locator(".message img.attachment-image")
    # Fetched with the bearer token into an object URL, and decoded.
    await expect(image).to_have_attribute("src", re.compile(r"^blob:"), timeout=20_000)
    width = await eventually(lambda: image.evaluate("img => img.complete && img.naturalWidth"),
                             what="the image decoded")
    assert width == 2
    download = page.get_by_role("button", name=re.compile(r"^Download quote\.pdf"))
    async with page.expect_download() as waiting:
        await download.click()
    got = await waiting.value
    assert got.suggested_filename == "quote.pdf"
    saved = await got.path()
    assert saved is not None and saved.read_bytes() == b"%PDF-1.4 a quote"


async def test_an_edited_message_says_so_and_shows_its_revisions_on_demand(
        page: Page, stack: Stack, api: httpx.AsyncClient, owner: Account,
        fake: FakeTelegram) -> None:
    bot, _, secret = await connect_bot(api, owner, fake)
    original = tg.private_text("Meet at 10?")
    assert (await post_update(api, bot["id"], original, secret)).status_code == 200
    (chat,) = (await api.get("/v1/chats", headers=owner.headers)).json()["data"]
    await sign_in(page, stack, owner)
    await page.goto(f"{stack.api_url}/#/inbox/{chat['id']}")
    await live(page)
    shown = messages_of(page)
    await expect(shown).to_have_text(re.compile("Meet at 10\\?"))
    await expect(shown.get_by_role("button", name="edited")).to_have_count(0)
    edit = tg.edited_message(original, "Meet at 11?")
    assert (await post_update(api, bot["id"], edit, secret)).status_code == 200
    # Live: the newest text, an "edited" button, the history hidden until asked.
    await expect(shown.locator(".message-text")).to_have_text("Meet at 11?")
    toggle = shown.get_by_role("button", name="edited")
    await expect(toggle).to_have_attribute("aria-expanded", "false")
    revisions = shown.locator(".revisions")
    await expect(revisions).to_be_hidden()
    await toggle.click()
    await expect(revisions).to_be_visible()
    await expect(revisions.locator("li")).to_have_count(2)
    await expect(revisions.locator("li").first).to_contain_text("Meet at 10?")
    await expect(revisions.locator("li").last).to_contain_text("Meet at 11?")
    await expect(shown).to_have_count(1)


async def test_the_unsent_text_survives_a_reload_and_shift_enter_is_a_new_line(
        page: Page, stack: Stack, api: httpx.AsyncClient, owner: Account) -> None:
    inbox = await make_inbox(api, owner)
    chat_id = await inbound(api, inbox, f"t-{uuid.uuid4().hex[:8]}", "Quote please")
    await sign_in(page, stack, owner)
    await page.goto(f"{stack.api_url}/#/inbox/{chat_id}")
    composer = page.get_by_label("Reply")
    await composer.press_sequentially("Line one")
    await composer.press("Shift+Enter")
    await composer.press_sequentially("line two")
    await expect(composer).to_have_value("Line one\nline two")
    await expect(page.locator(".message.outgoing")).to_have_count(0)  # not sent
    # The session ends (its refresh token gone) and comes back: the text is kept.
    await page.evaluate("localStorage.removeItem('bidi.session')")
    await page.reload()
    await sign_in(page, stack, owner)
    await page.goto(f"{stack.api_url}/#/inbox/{chat_id}")
    await expect(page.get_by_label("Reply")).to_have_value("Line one\nline two")
    await page.get_by_label("Reply").press("Enter")
    await expect(page.locator(".message.outgoing .message-text")).to_have_text(
        "Line one\nline two")
    await page.reload()
    await expect(page.get_by_label("Reply")).to_have_value("")  # sent: nothing kept


async def test_search_and_assignment_filters_are_sent_to_the_server_debounced(
        page: Page, stack: Stack, api: httpx.AsyncClient, owner: Account) -> None:
    agent = await make_agent(api, owner, tools=[])
    asked: list[dict[str, list[str]]] = []
    page.on("request", lambda r: asked.append(parse_qs(urlsplit(r.url).query))
            if urlsplit(r.url).path == "/v1/chats" else None)
    await sign_in(page, stack, owner)
    await expect(page.locator(".chat-list")).to_contain_text("No conversations yet")
    await expect(page.get_by_label("Filter by agent").locator("option")).to_have_count(2)
    before = len(asked)
    await page.get_by_label("Search conversations").press_sequentially("grace", delay=30)
    await eventually(lambda: len(asked) > before, what="the search request")
    await expect(page.locator(".chat-list")).to_contain_text("No conversations match")
    assert [q.get("q") for q in asked[before:]] == [["grace"]]  # one request, not five
    await page.get_by_label("Filter by agent").select_option(agent["id"])
    await eventually(lambda: asked[-1].get("assigned_agent_id") == [agent["id"]],
                     what="the agent filter")
    await page.get_by_label("Assigned to me").check()
    await eventually(lambda: asked[-1].get("assigned_user_id") == ["me"], what="mine")
    assert asked[-1]["q"] == ["grace"] and asked[-1]["limit"] == ["50"]

"""The inbox's chat list in a real Chromium against the real engine: a message
arriving live in the list and the open conversation (unread, then read on
open), paging on scroll, live reordering, the filters and search sent to the
server, and the list and conversation taking turns at phone width."""
from __future__ import annotations

import uuid
from urllib.parse import parse_qs, urlsplit

import httpx
from playwright.async_api import Page, expect

from serve.stack import Stack
from tests.browser.conftest import screenshot_path, sign_in
from tests.browser.inbox_pages import chat_of, inbound, live, messages_of, unread_is
from tests.conftest import Account
from tests.serve.agent_setup import make_agent
from tests.serve.messaging import make_inbox
from tests.waiting import eventually


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
    await eventually(lambda: unread_is(api, owner, chat_id, 0), what="read on open")

    # While it is open (and the tab visible) a new message shows and is read.
    await inbound(api, inbox, thread, "Never mind, Faro")
    await expect(messages_of(page).last).to_contain_text("Never mind, Faro")
    await expect(messages_of(page).last).to_have_class("message incoming")
    await expect(messages_of(page)).to_have_count(3)
    await eventually(lambda: unread_is(api, owner, chat_id, 0), what="read while open")
    await expect(item.locator(".unread-badge")).to_have_count(0)


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
    await eventually(lambda: unread_is(api, owner, chats[0], 0), what="read on open")
    await page.get_by_label("Filter by read state").select_option("true")
    await expect(items).to_have_count(50)
    await expect(items.first).to_have_attribute("data-chat-id", chats[-1])
    await expect(page.locator(f".chat-item[data-chat-id='{chats[0]}']")).to_have_count(0)
    await page.get_by_label("Filter by channel").select_option("telegram")
    await expect(items).to_have_count(0)
    await expect(page.locator(".chat-list")).to_contain_text("No conversations match")


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

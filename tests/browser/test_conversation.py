"""The open conversation in a real Chromium: after the server drops the socket
(the replica's pub/sub line killed, so it closes 1012) what came meanwhile
shows once and in order; history pages upward keeping the place; images
inline and files as downloads; an edit marked with its revisions on demand."""
from __future__ import annotations

import base64
import re
import uuid

import httpx
import redis.asyncio as aioredis
from playwright.async_api import Page, WebSocketRoute, expect

from serve.stack import Stack
from tests.browser.inbox_pages import inbound, live, messages_of, open_chat
from tests.conftest import Account
from tests.fakes import telegram_updates as tg
from tests.fakes import whatsapp_notifications as wa
from tests.fakes.telegram import FakeTelegram
from tests.fakes.whatsapp import FakeGraph
from tests.serve.messaging import make_inbox
from tests.serve.telegram_bots import connect as connect_bot
from tests.serve.test_telegram import post_update
from tests.serve.test_whatsapp import person
from tests.serve.whatsapp_numbers import connect, hook, now, post, says
from tests.waiting import eventually


async def test_after_the_server_drops_the_socket_what_came_meanwhile_shows_once_in_order(
        page: Page, stack: Stack, api: httpx.AsyncClient, owner: Account,
        redis: aioredis.Redis) -> None:
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
    await open_chat(page, stack, owner, chat_id)
    await expect(messages_of(page)).to_have_count(1)

    down = True
    # The replica's pub/sub line dies: it closes every live socket 1012.
    assert await redis.client_kill_filter(_type="pubsub") >= 1
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
    await open_chat(page, stack, owner, chat_id)
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


async def test_attachments_show_images_inline_and_other_files_as_downloads(
        page: Page, stack: Stack, api: httpx.AsyncClient, owner: Account,
        fake_graph: FakeGraph) -> None:
    integration, number = await connect(api, owner, fake_graph)
    who = person()
    resp = await post(api, hook(integration), says("Hi, two files coming", who, number))
    assert resp.status_code == 200, resp.text
    (chat,) = (await api.get("/v1/chats", headers=owner.headers)).json()["data"]
    await open_chat(page, stack, owner, chat['id'])
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
    await open_chat(page, stack, owner, chat['id'])
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




PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR4nGP8z8DAwMDAxMDAwMDAAAANHQEDasKb6QAAAABJRU5ErkJggg==")

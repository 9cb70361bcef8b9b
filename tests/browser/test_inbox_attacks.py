"""The inbox against hostile data and hostile URLs: markup in a message or a
contact's name is shown as text and never runs (the DOM helper writes text
only; the page's CSP forbids inline code besides), another org's chat id in
the address bar shows nothing of it, and a viewer (reached through the org
switcher) reads, drafts included, but gets no composer and no draft buttons."""
from __future__ import annotations

import uuid

import httpx
from playwright.async_api import Page, expect

from actors.refs import ChatRef
from actors.runtime.client import ActorSystem
from serve.stack import Stack
from tests.browser.conftest import sign_in
from tests.conftest import Account, register
from tests.serve.agent_setup import make_agent
from tests.serve.messaging import make_inbox, message, post_inbound
from tests.serve.test_members import join

MARKUP = '<img src=x onerror="window.__owned=1"><script>window.__owned=2</script>'


async def test_markup_in_messages_and_names_is_text(page: Page, stack: Stack,
                                                    api: httpx.AsyncClient,
                                                    owner: Account) -> None:
    inbox = await make_inbox(api, owner)
    body = message(thread="x-1", text=f"hello {MARKUP}", sender="s-x")
    body["sender"]["name"] = f"Eve {MARKUP}"
    resp = await post_inbound(api, inbox, body)
    assert resp.status_code == 202, resp.text
    chat = resp.json()["chat_id"]
    await sign_in(page, stack, owner)
    await page.goto(f"{stack.api_url}/#/inbox/{chat}")
    shown = page.locator(".messages [data-message-id]")
    await expect(shown).to_have_count(1)
    await expect(shown).to_contain_text(MARKUP)  # the characters, as typed
    await expect(page.locator(f'button[data-chat-id="{chat}"]')).to_contain_text("Eve <img")
    assert await page.locator(".messages img, .chat-list img").count() == 0
    assert await page.evaluate("window.__owned") is None


async def test_another_orgs_chat_id_shows_nothing_of_it(page: Page, stack: Stack,
                                                        api: httpx.AsyncClient,
                                                        owner: Account) -> None:
    rival = await register(api, "Rival")
    inbox = await make_inbox(api, rival)
    resp = await post_inbound(api, inbox, message(thread="r-1", text="rival's secret plan"))
    assert resp.status_code == 202, resp.text
    await sign_in(page, stack, owner)
    await page.goto(f"{stack.api_url}/#/inbox/{resp.json()['chat_id']}")
    await expect(page.get_by_role("alert").first).to_be_visible()
    assert "secret plan" not in await page.content()
    assert await page.locator(".messages [data-message-id]").count() == 0


async def test_a_viewer_reads_but_gets_no_composer(page: Page, stack: Stack,
                                                   api: httpx.AsyncClient, owner: Account,
                                                   actors: ActorSystem) -> None:
    inbox = await make_inbox(api, owner)
    resp = await post_inbound(api, inbox, message(thread="v-1", text="for your eyes"))
    chat = resp.json()["chat_id"]
    agent = await make_agent(api, owner)
    await ChatRef(actors, owner.org_id, chat).draft("A draft to decide", agent["id"],
                                                    str(uuid.uuid4()), "draft mode")
    viewer = await join(api, owner, "viewer")
    await sign_in(page, stack, viewer)  # into their own org first: switch, as a person would
    switcher = page.get_by_label("Organization")
    await switcher.select_option(owner.org_id)
    await expect(switcher).to_have_value(owner.org_id)
    await expect(page.locator(f'button[data-chat-id="{chat}"]')).to_be_visible()
    await page.goto(f"{stack.api_url}/#/inbox/{chat}")
    await expect(page.locator(".messages .message.incoming")).to_contain_text("for your eyes")
    await expect(page.locator(".composer-readonly")).to_contain_text("viewer")
    # The agent's draft is there to read, not to decide (the API would refuse).
    await expect(page.locator('[data-status="draft"]')).to_contain_text("A draft to decide")
    await expect(page.get_by_role("button", name="Approve")).to_have_count(0)
    await expect(page.get_by_label("Reply")).to_have_count(0)

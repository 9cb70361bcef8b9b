"""An agent's work decided in the inbox, in a real Chromium: an AI draft edited
and approved (the edited text is what goes out), and a tool call held for a
person approved from the chat header."""
from __future__ import annotations

import httpx
from playwright.async_api import Page, expect

from serve.stack import Stack
from storage.db import Database
from tests.browser.conftest import screenshot_path, sign_in
from tests.browser.inbox_pages import open_chat
from tests.conftest import Account
from tests.fakes.callback import CallbackServer
from tests.fakes.openai import FakeOpenAI
from tests.serve.agent_setup import (
    chat_with_agent,
    finished,
    make_agent,
    outbound,
    renaming_agent,
    use_fake_openai,
)


async def test_an_ai_draft_is_edited_and_approved_in_the_browser(
        page: Page, stack: Stack, api: httpx.AsyncClient, owner: Account, db: Database,
        fake_openai: FakeOpenAI, callback: CallbackServer) -> None:
    key = await use_fake_openai(api, owner, fake_openai)
    fake_openai.script(key, "Hi Grace, 40 seats are $4,000 a month.")
    agent = await make_agent(api, owner, tools=[])
    _, chat_id = await chat_with_agent(api, owner, agent, callback=callback)
    await open_chat(page, stack, owner, chat_id)
    draft = page.locator(".message[data-status='draft']")
    await expect(draft).to_contain_text("Hi Grace, 40 seats are $4,000 a month.",
                                        timeout=30_000)
    await expect(page.locator("#agent-select")).to_have_value(agent["id"])
    await page.screenshot(path=screenshot_path("inbox"))

    # Read before approving: once approved it is no longer a draft (and
    # `draft` matches nothing).
    draft_id = await draft.get_attribute("data-message-id")
    sent = page.locator(f".message[data-message-id='{draft_id}']")
    await draft.get_by_role("button", name="Edit").click()
    editor = sent.get_by_label("Edit the draft")
    await editor.fill("Hi Grace, 40 seats are $3,600 a month with the annual plan.")
    await sent.get_by_role("button", name="Approve edited").click()
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
    bob, agent = await renaming_agent(api, owner, fake_openai)
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

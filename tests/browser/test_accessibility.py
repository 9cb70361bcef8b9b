"""Every page of the inbox, checked as a screen reader and a keyboard would
meet it: each visible control has an accessible name (a label, aria-label,
aria-labelledby or its own text), no two elements share an id, and Tab
reaches the controls in order with a visible focus ring."""
from __future__ import annotations

from typing import Any

import httpx
from playwright.async_api import Page, expect

from serve.stack import Stack
from tests.browser.conftest import sign_in
from tests.conftest import Account
from tests.serve.messaging import make_inbox, message, post_inbound

UNNAMED = """() => {
  const named = (el) => (el.labels && el.labels.length) || el.getAttribute('aria-label')
    || el.getAttribute('aria-labelledby') || el.getAttribute('title')
    || (el.tagName === 'BUTTON' || el.tagName === 'A') && el.textContent.trim();
  const shown = (el) => el.offsetParent !== null && el.type !== 'hidden';
  const controls = [...document.querySelectorAll('input, select, textarea, button, a[href]')];
  const ids = [...document.querySelectorAll('[id]')].map((el) => el.id);
  return {
    unnamed: controls.filter(shown).filter((el) => !named(el))
      .map((el) => el.outerHTML.slice(0, 120)),
    duplicate_ids: ids.filter((id, i) => ids.indexOf(id) !== i),
    controls: controls.filter(shown).length,
  };
}"""


async def check(page: Page, where: str) -> dict[str, Any]:
    found: dict[str, Any] = await page.evaluate(UNNAMED)
    assert found["controls"] > 0, where
    assert found["unnamed"] == [], (where, found["unnamed"])
    assert found["duplicate_ids"] == [], (where, found["duplicate_ids"])
    return found


async def test_every_page_names_its_controls(page: Page, stack: Stack, api: httpx.AsyncClient,
                                             owner: Account) -> None:
    inbox = await make_inbox(api, owner)
    chat = (await post_inbound(api, inbox, message(thread="a-1", text="hello"))).json()["chat_id"]
    made = await api.post("/v1/pipelines", headers=owner.headers, json={
        "name": "Sales", "stages": [{"name": "Lead"}, {"name": "Won"}]})
    assert made.status_code == 201, made.text
    await page.goto(f"{stack.api_url}/")
    await check(page, "sign-in")
    await page.get_by_role("button", name="Create an account").click()
    # The first page of the session's browser loads the form's module cold.
    await expect(page.get_by_label("Your name")).to_be_focused(timeout=15_000)
    await check(page, "create an account")
    await sign_in(page, stack, owner)
    await page.goto(f"{stack.api_url}/#/inbox/{chat}")
    await expect(page.locator(".messages [data-message-id]")).to_have_count(1)
    await expect(page.get_by_label("First name")).to_be_visible()  # the contact panel
    await check(page, "inbox")
    await page.goto(f"{stack.api_url}/#/pipeline")
    await expect(page.get_by_role("button", name="New deal")).to_be_visible()
    await check(page, "pipeline")
    for section in ("integrations", "agents", "members", "api-keys"):
        await page.goto(f"{stack.api_url}/#/settings/{section}")
        await expect(page.locator("main h2").first).to_be_visible()
        await expect(page.locator("main .notice.status", has_text="Loading")).to_have_count(0)
        await check(page, section)


async def test_the_keyboard_reaches_the_inbox_with_a_visible_focus(
        page: Page, stack: Stack, api: httpx.AsyncClient, owner: Account) -> None:
    await sign_in(page, stack, owner)
    await page.goto(f"{stack.api_url}/#/inbox")
    await page.locator("body").click(position={"x": 1, "y": 1})
    seen = []
    for _ in range(6):
        await page.keyboard.press("Tab")
        seen.append(await page.evaluate("""() => {
          const el = document.activeElement;
          const style = getComputedStyle(el);
          const name = el.textContent || el.getAttribute('aria-label') || '';
          return {tag: el.tagName, text: name.trim().slice(0, 20),
                  ring: style.boxShadow !== 'none' || style.outlineStyle !== 'none'};
        }"""))
    assert [s["text"] for s in seen[:4]] == ["Bidi", "Inbox", "Pipeline", "Settings"], seen
    assert all(s["ring"] for s in seen), seen

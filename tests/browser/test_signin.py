"""Signing in to the inbox in a real Chromium: the form (and a wrong password's
error), and Google's redirect flow back to the inbox."""
from __future__ import annotations

import uuid

from playwright.async_api import Page, expect

from serve.stack import Stack
from tests.browser.conftest import sign_in
from tests.browser.inbox_pages import live
from tests.conftest import Account
from tests.fakes.google import FakeGoogle


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

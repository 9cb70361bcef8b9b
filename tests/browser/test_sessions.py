"""The inbox's session as a person lives it: a second factor asked for by
the sign-in form, sign-out, an access token refused mid-way and renewed
without the person noticing, and a session that ends (its refresh refused)
going back to sign-in and, signed in again, to the same conversation with
the reply being typed still there."""
from __future__ import annotations

import time

import httpx
from playwright.async_api import Page, Route, expect

from serve.stack import Stack
from tests.browser.conftest import sign_in
from tests.conftest import Account
from tests.serve.messaging import make_inbox, message, post_inbound
from tests.serve.mfa import mfa_on


def api_calls(url: str) -> bool:
    """Every API call but the session's own."""
    return "/v1/" in url and "/v1/auth/" not in url


async def test_sign_in_asks_for_the_code_when_the_account_has_one(
        page: Page, stack: Stack, api: httpx.AsyncClient, owner: Account) -> None:
    totp = await mfa_on(api, owner)
    await page.goto(f"{stack.api_url}/")
    await page.get_by_label("Email").fill(owner.email)
    await page.get_by_label("Password").fill(owner.password)
    await page.get_by_role("button", name="Sign in", exact=True).click()
    code = page.get_by_label("Authentication code")
    await expect(code).to_be_visible()
    await expect(code).to_be_focused()
    await expect(page.locator(".form-error")).to_contain_text("authenticator")
    await code.fill(totp.at(time.time() + 30))  # the step after the one that enrolled
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await expect(page.get_by_role("navigation", name="Main")).to_be_visible()
    # Sign out: back to the form, and a reload stays signed out.
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_label("Email")).to_be_visible()
    assert await page.evaluate("localStorage.getItem('bidi.session')") is None
    await page.reload()
    await expect(page.get_by_label("Email")).to_be_visible()


async def test_a_refused_token_is_renewed_and_an_ended_session_keeps_the_reply(
        page: Page, stack: Stack, api: httpx.AsyncClient, owner: Account) -> None:
    inbox = await make_inbox(api, owner)
    resp = await post_inbound(api, inbox, message(thread="s-1", text="are you there?"))
    chat = resp.json()["chat_id"]
    await sign_in(page, stack, owner)

    # The server refuses the access token once: the page refreshes and retries.
    refused: list[str] = []

    async def once(route: Route) -> None:
        if not refused:
            refused.append(route.request.url)
            await route.fulfill(status=401, content_type="application/json",
                                body='{"error":{"code":"unauthorized","message":"expired"}}')
        else:
            await route.continue_()
    refreshed: list[int] = []
    page.on("response", lambda r: refreshed.append(r.status)
            if r.url.endswith("/v1/auth/refresh") else None)
    await page.route("**/v1/chats/*/messages*", once)
    await page.goto(f"{stack.api_url}/#/inbox/{chat}")
    await expect(page.locator(".messages [data-message-id]")).to_contain_text("are you there?")
    assert refused and 200 in refreshed
    await page.unroute("**/v1/chats/*/messages*")

    # The person types a reply; then the session ends (every refresh refused).
    await page.get_by_label("Reply").fill("Yes, here: one moment")
    await page.route("**/v1/auth/refresh", lambda route: route.fulfill(
        status=401, content_type="application/json",
        body='{"error":{"code":"unauthorized","message":"session ended"}}'))
    await page.route(api_calls, lambda route: route.fulfill(
        status=401, content_type="application/json",
        body='{"error":{"code":"unauthorized","message":"expired"}}'))
    await page.evaluate("location.hash = '#/pipeline'")  # its calls now need a new token
    await expect(page.get_by_label("Email")).to_be_visible()
    await page.unroute("**/v1/auth/refresh")
    await page.unroute(api_calls)
    await page.get_by_label("Email").fill(owner.email)
    await page.get_by_label("Password").fill(owner.password)
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await expect(page.get_by_role("navigation", name="Main")).to_be_visible()
    await page.goto(f"{stack.api_url}/#/inbox/{chat}")
    await expect(page.get_by_label("Reply")).to_have_value("Yes, here: one moment")

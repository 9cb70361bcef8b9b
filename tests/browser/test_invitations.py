"""An invitation as the people involved live it: the admin invites from
Settings and gets a link; the invitee, with no account yet, opens it,
creates an account from the sign-in page, lands back on the invitation and
joins, and the inbox switches to the organization that invited them. A link
opened by someone else (another email) is refused, and nothing changes."""
from __future__ import annotations

import uuid

import httpx
from playwright.async_api import Browser, Page, expect

from serve.stack import Stack
from tests.browser.conftest import sign_in
from tests.conftest import Account, register


async def invite_link(page: Page, stack: Stack, owner: Account, email: str) -> str:
    await sign_in(page, stack, owner)
    await page.goto(f"{stack.api_url}/#/settings/members")
    form = page.get_by_role("form", name="Invite a member")
    await form.get_by_label("Email").fill(email)
    await form.get_by_label("Role").select_option("bidi")
    await form.get_by_role("button", name="Send invitation").click()
    shown = page.get_by_label(f"Invitation link for {email}")
    await expect(shown).to_be_visible()
    link = await shown.input_value()
    assert link.startswith(f"{stack.api_url}/#/invite/"), link
    return link


async def test_an_invitee_creates_an_account_and_joins(
        page: Page, browser: Browser, stack: Stack, api: httpx.AsyncClient,
        owner: Account) -> None:
    email = f"new{uuid.uuid4().hex[:10]}@example.com"
    link = await invite_link(page, stack, owner, email)
    invitee = await (await browser.new_context()).new_page()
    try:
        await invitee.goto(link)
        await invitee.get_by_role("button", name="Create an account").click()
        await invitee.get_by_label("Your name").fill("New Colleague")
        await invitee.get_by_label("Email").fill(email)
        await invitee.get_by_label("Password").fill("correct horse battery")
        await invitee.get_by_label("Organization").fill("My own")
        await invitee.get_by_role("button", name="Create account").click()
        await invitee.get_by_role("button", name="Join the organization").click()
        switcher = invitee.get_by_label("Organization")
        await expect(switcher).to_have_value(owner.org_id)
        await expect(invitee).to_have_url(f"{stack.api_url}/#/inbox")
    finally:
        await invitee.context.close()
    members = (await api.get("/v1/members", headers=owner.headers)).json()["data"]
    assert {(m["email"], m["role"]) for m in members} >= {(email, "bidi")}


async def test_a_link_opened_by_someone_else_is_refused(
        page: Page, browser: Browser, stack: Stack, api: httpx.AsyncClient,
        owner: Account) -> None:
    link = await invite_link(page, stack, owner, f"x{uuid.uuid4().hex[:10]}@example.com")
    stranger = await register(api, "Stranger's")
    other = await (await browser.new_context()).new_page()
    try:
        await other.goto(link)
        await other.get_by_label("Email").fill(stranger.email)
        await other.get_by_label("Password").fill(stranger.password)
        await other.get_by_role("button", name="Sign in", exact=True).click()
        await other.get_by_role("button", name="Join the organization").click()
        await expect(other.locator(".invite-card .form-error")).not_to_be_empty()
        await expect(other.get_by_label("Organization")).to_have_value(stranger.org_id)
    finally:
        await other.context.close()
    members = (await api.get("/v1/members", headers=owner.headers)).json()["data"]
    assert stranger.email not in {m["email"] for m in members}

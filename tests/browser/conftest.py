"""A real headless Chromium (Debian's, installed by tests/system-deps.sh),
driven by Playwright. One browser per test session; every test gets a fresh
context (no shared storage). A page that throws an uncaught error fails its
test: the inbox must not break silently.

The browser is started after the engine (`stack`): the stack, when it stops,
ends the processes started under this process while it was starting, and a
browser launched before it would be one of them."""
from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright

from serve.stack import Stack
from tests.conftest import Account

CHROMIUM = os.environ.get("BIDI_TEST_CHROMIUM", "/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parent / "screenshots"


@pytest.fixture(scope="session")
async def browser(stack: Stack) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield launched
        await launched.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    opened = await context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    yield opened
    await context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


def screenshot_path(name: str) -> str:
    SHOTS.mkdir(exist_ok=True)
    return str(SHOTS / f"{name}.png")


async def sign_in(page: Page, stack: Stack, account: Account) -> None:
    """Through the sign-in form, as a person would."""
    await page.goto(f"{stack.api_url}/")
    await page.get_by_label("Email").fill(account.email)
    await page.get_by_label("Password").fill(account.password)
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await page.get_by_role("navigation", name="Main").wait_for()

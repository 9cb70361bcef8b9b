"""Browser fixtures: one headless Chromium (Debian's, /usr/bin/chromium) for
the whole run, and a fresh context (cookies, storage) and page per test.

A test of the engine names `stack` before `page`: the stack, when it stops,
ends the processes started under the test process while it was starting,
and a browser launched before it would be one of them."""
from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, Page, async_playwright

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    playwright = await async_playwright().start()
    try:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield launched
        await launched.close()
    finally:
        await playwright.stop()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context()
    try:
        opened = await context.new_page()
        yield opened
        await opened.close()
    finally:
        await context.close()

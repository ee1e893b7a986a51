"""Browser tests: the standalone platform (tests.e2e.test_standalone's fixture) driven through Debian's chromium by
Playwright. A missing chromium fails these tests: .ci/run installs it, and `playwright install` (a downloaded browser)
is not used."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, Page, Route, async_playwright

from tests.e2e.test_standalone import standalone  # noqa: F401 (the fixture, one platform per test module)

CHROMIUM = os.environ.get("LH_TEST_CHROMIUM", "/usr/bin/chromium")
LOCAL_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}


@pytest.fixture(scope="session")
def chromium() -> str:
    if not os.path.isfile(CHROMIUM):
        pytest.fail(f"no chromium at {CHROMIUM}: `apt-get install chromium` (.ci/run does) or set LH_TEST_CHROMIUM")
    return CHROMIUM


@pytest_asyncio.fixture(scope="module")
async def browser(chromium: str) -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium)
        try:
            yield browser
        finally:
            await browser.close()


class OfflineContext:
    """A browser context that cannot reach anything but this machine, as on a machine without internet: every
    request to another host is aborted and remembered."""

    def __init__(self, context: BrowserContext) -> None:
        self.context = context
        self.blocked: list[str] = []

    async def _route(self, route: Route) -> None:
        url = route.request.url
        if urlsplit(url).scheme in ("http", "https", "ws", "wss") and urlsplit(url).hostname not in LOCAL_HOSTS:
            self.blocked.append(url)
            await route.abort("internetdisconnected")
        else:
            await route.continue_()


@pytest_asyncio.fixture
async def offline(browser: Browser) -> AsyncIterator[OfflineContext]:
    context = await browser.new_context()
    offline = OfflineContext(context)
    await context.route("**/*", offline._route)
    try:
        yield offline
    finally:
        await context.close()


async def log_in(page: Page, base: str, username: str, password: str) -> None:
    """Log in through the form, as a person would, and wait for the desk."""
    await page.goto(base + "/")
    await page.fill("#login-username", username)
    await page.fill("#login-password", password)
    await page.click("#login-form button[type=submit]")
    await page.wait_for_selector("#desk-view:not(.d-none)")

"""The API docs pages render in a browser that cannot reach the internet (their assets come from the platform)."""

from __future__ import annotations

import pytest

from tests.e2e.browser.conftest import OfflineContext

pytestmark = pytest.mark.e2e


async def test_swagger_ui_and_redoc_render_the_operations_offline(
    standalone: tuple[str, str], offline: OfflineContext
) -> None:
    base, _ = standalone
    page = await offline.context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))

    await page.goto(base + "/docs")
    # Swagger UI draws one .opblock per operation once it has loaded the schema.
    await page.wait_for_selector(".opblock", timeout=20_000)
    operations = await page.locator(".opblock-summary-path").all_inner_texts()
    assert any("/api/v1/orders" in path for path in operations), operations
    assert "/api/v1/auth/token" in {path.strip().replace("\u200b", "") for path in operations}

    await page.goto(base + "/redoc")
    # ReDoc draws each operation as a section with an id of operation/<tag>/<operationId>.
    await page.wait_for_selector("[data-section-id^='operation/']", state="attached", timeout=20_000)
    assert await page.locator("[data-section-id^='operation/']").count() == len(operations)

    assert offline.blocked == [], f"the docs pages tried to reach: {offline.blocked}"
    # ReDoc's footer logo is an image on its vendor's CDN: the page's policy refuses it (without a request), and that
    # refusal is the one console error expected.
    assert [p for p in problems if "cdn.redoc.ly/redoc/logo-mini.svg" not in p] == []

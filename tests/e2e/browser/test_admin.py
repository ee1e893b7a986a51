"""The admin page in a browser (issue 16 §3), against one standalone platform: an admin sees every service's health,
creates a user (refused at the field first), changes the user's role, creates an API key whose secret is shown once
and works, and finds those actions in the audit log; a trader cannot make an admin key; a viewer has no admin page."""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Page, expect

from tests.e2e.browser.conftest import OfflineContext, log_in
from tests.e2e.flow import create_user, login

pytestmark = pytest.mark.e2e

SCREENSHOTS = Path(__file__).resolve().parents[3] / "var" / "screenshots"
SERVICES = ["gateway", "data", "strategy", "backtest", "risk", "execution"]


async def _admin_page(offline: OfflineContext, base: str, password: str, errors: list[str]) -> Page:
    page = await offline.context.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    await log_in(page, base, "admin", password)
    await page.click("#nav-admin")
    await page.wait_for_selector("#admin-view:not(.d-none) #admin-users tr")
    return page


async def _cells(page: Page, row_selector: str) -> list[str]:
    return [c.strip() for c in await page.locator(f"{row_selector} td").all_inner_texts()]


async def test_an_admin_manages_users_and_keys_sees_health_and_the_audit_of_it(
    standalone: tuple[str, str], offline: OfflineContext
) -> None:
    base, password = standalone
    errors: list[str] = []
    page = await _admin_page(offline, base, password, errors)
    assert page.url.endswith("#admin")

    # Services' health: the gateway and the five services, each answering and ready (standalone runs them all).
    await page.wait_for_selector("#admin-health tr[data-service=execution]")
    rows = page.locator("#admin-health tr")
    assert [await r.get_attribute("data-service") for r in await rows.all()] == SERVICES
    for service in SERVICES:
        cells = await _cells(page, f"#admin-health tr[data-service={service}]")
        assert cells[1:3] == ["正常", "就绪"], (service, cells)
    assert "db: 正常" in await page.inner_text("#admin-health tr[data-service=gateway]")
    assert (await page.inner_text("#admin-health-updated")).startswith("更新于")

    # A user: a short password is refused at its field and nothing is created; then created as a trader.
    name = f"ops-{secrets.token_hex(3)}"
    new_password = secrets.token_urlsafe(12)
    await page.fill("#admin-user-username", name)
    await page.fill("#admin-user-password", "short")
    await page.select_option("#admin-user-role", "trader")
    await page.click("#admin-user-create")
    assert await page.inner_text("#admin-user-password-error") == "密码至少 8 个字符"
    assert await page.locator(f"#admin-users tr[data-username='{name}']").count() == 0
    await page.fill("#admin-user-password", new_password)
    await page.click("#admin-user-create")
    row = page.locator(f"#admin-users tr[data-username='{name}']")
    await row.wait_for()
    assert await page.inner_text("#admin-user-result") == f"已创建用户 {name}"
    assert await page.locator(f"#admin-role-{name}").input_value() == "trader"
    assert "启用" in await row.inner_text()

    async with httpx.AsyncClient(timeout=30) as client:
        # The user logs in with that password, as a trader; a trader's key cannot be an admin's.
        trader = await login(client, base, name, new_password)
        me = (await client.get(f"{base}/api/v1/auth/me", headers=trader.headers)).json()
        assert (me["username"], me["role"]) == (name, "trader")
        above = await client.post(
            f"{base}/api/v1/api-keys", json={"name": "mine", "role": "admin"}, headers=trader.headers
        )
        assert above.status_code == 403 and above.json()["code"] == "role_exceeds_owner"

        # A role picked in the select asks first; cancelled, nothing is sent and the select shows the role again.
        await page.select_option(f"#admin-role-{name}", "admin")
        confirm = page.locator("#admin-role-confirm")
        await expect(confirm).to_be_visible()
        assert (
            await page.inner_text("#admin-role-confirm-text") == f"确认：将 {name} 的角色从「交易员」改为「管理员」？"
        )
        await page.click("#admin-role-no")
        await expect(confirm).to_be_hidden()
        assert await page.locator(f"#admin-role-{name}").input_value() == "trader"
        me = (await client.get(f"{base}/api/v1/auth/me", headers=trader.headers)).json()
        assert me["role"] == "trader"

        # The role changed on the page, once confirmed, is the role the user has.
        await page.select_option(f"#admin-role-{name}", "viewer")
        assert (
            await page.inner_text("#admin-role-confirm-text") == f"确认：将 {name} 的角色从「交易员」改为「观察者」？"
        )
        me = (await client.get(f"{base}/api/v1/auth/me", headers=trader.headers)).json()
        assert me["role"] == "trader"  # not before the confirmation
        await page.click("#admin-role-yes")
        changed = page.locator("#admin-user-result", has_text=f"{name}：已更新")
        await changed.or_(page.locator("#admin-users-error:not(.d-none)")).first.wait_for()
        assert await page.inner_text("#admin-users-error") == ""  # (the refusal's words, if the change was refused)
        await expect(confirm).to_be_hidden()
        me = (await client.get(f"{base}/api/v1/auth/me", headers=trader.headers)).json()
        assert me["role"] == "viewer"

        # An API key with the trader role: its secret is shown once, and it works with that role.
        await page.fill("#admin-key-name", "ci bot")
        await page.select_option("#admin-key-role", "trader")
        await page.click("#admin-key-create")
        secret = await page.locator("#admin-key-secret-value").inner_text()
        match = re.fullmatch(r"lh_([0-9a-f]{16})_[A-Za-z0-9_-]{43}", secret)
        assert match, secret
        key_id = match.group(1)
        key_row = page.locator(f"#admin-keys tr[data-key-id='{key_id}']")
        await key_row.wait_for()
        cells = await _cells(page, f"#admin-keys tr[data-key-id='{key_id}']")
        assert cells[:4] == [key_id, "admin", "ci bot", "交易员"] and cells[5] == "永不", cells
        assert cells[7:] == ["有效", "吊销"], cells
        by_key = (await client.get(f"{base}/api/v1/auth/me", headers={"X-API-Key": secret})).json()
        assert (by_key["username"], by_key["role"], by_key["auth"]) == ("admin", "trader", "api_key")
        listed = await client.get(f"{base}/api/v1/api-keys", headers={"Authorization": f"Bearer {await _token(page)}"})
        assert secret.split("_", 2)[2] not in listed.text

    # The audit log shows those actions, newest first (written in the background: the page reads it a moment later).
    await page.locator("#admin-audit tr", has_text="/api/v1/api-keys").first.wait_for(timeout=10_000)
    audit = [await _cells(page, f"#admin-audit tr[data-audit-id='{i}']")
             for i in [await r.get_attribute("data-audit-id") for r in await page.locator("#admin-audit tr").all()]]  # fmt: skip
    changes = [(c[1], c[3], c[4], c[5], c[6]) for c in audit if c[4].startswith(("/api/v1/users", "/api/v1/api-keys"))]
    # The short password never left the page (refused at its field): no entry of it.
    assert changes[:4] == [
        ("admin", "POST", "/api/v1/api-keys", "—", "201"),
        ("admin", "PATCH", f"/api/v1/users/{name}", name, "200"),
        (name, "POST", "/api/v1/api-keys", "—", "403"),  # the trader's attempt at an admin key
        ("admin", "POST", "/api/v1/users", "—", "201"),
    ], changes
    assert all(c[2] == "会话" for c in audit if c[1] == "admin" and c[4] != "/api/v1/auth/token")

    # Filtered by path: only the role change.
    await page.fill("#admin-audit-path", f"/api/v1/users/{name}")
    await page.click("#admin-audit-filter")
    await expect(page.locator("#admin-audit tr")).to_have_count(1)
    assert (await _cells(page, "#admin-audit tr"))[3:6] == ["PATCH", f"/api/v1/users/{name}", name]

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=SCREENSHOTS / "admin.png", full_page=True)

    # English, at phone width: every label switches, nothing is wider than the screen.
    await page.click("#lang-switch")
    assert await page.inner_text("#admin-health-card .card-header") == "Services' health"
    assert await page.inner_text("#admin-audit-card .card-header") == "Audit log"
    assert await page.locator(f"#admin-role-{name} option:checked").inner_text() == "Viewer"
    assert await page.inner_text("#admin-user-result") == f"{name}: updated"
    assert (await page.inner_text("#admin-key-secret")).startswith("New key (shown only this once")
    assert await _cells(page, f"#admin-keys tr[data-key-id='{key_id}']") == [
        key_id, "admin", "ci bot", "Trader", *cells[4:5], "Never", *cells[6:7], "Active", "Revoke",
    ]  # fmt: skip
    await page.set_viewport_size({"width": 390, "height": 844})
    await page.wait_for_timeout(200)
    # The page itself (the shell's navbar is not this page's): its content fits the screen, tables scroll inside.
    width = await page.evaluate(
        "(() => { const m = document.querySelector('main'); return [m.scrollWidth, m.clientWidth]; })()"
    )
    assert width[0] <= width[1] <= 390, width
    await page.screenshot(path=SCREENSHOTS / "admin-phone-en.png", full_page=True)
    await page.click("#lang-switch")  # back to Chinese for the next test in this context

    assert errors == []
    assert offline.blocked == []


async def _token(page: Page) -> str:
    token: str = await page.evaluate("JSON.parse(sessionStorage.getItem('lianghua.session')).token")
    return token


async def test_a_viewer_has_no_admin_page_and_the_api_refuses_them(
    standalone: tuple[str, str], offline: OfflineContext
) -> None:
    base, password = standalone
    async with httpx.AsyncClient(timeout=30) as client:
        admin = await login(client, base, "admin", password)
        name, viewer_password = await create_user(client, admin, "viewer")
        viewer = await login(client, base, name, viewer_password)
        for path in ("/api/v1/audit", "/api/v1/admin/services", "/api/v1/users", "/api/v1/api-keys?all=true"):
            response = await client.get(f"{base}{path}", headers=viewer.headers)
            assert response.status_code == 403, path

    page = await offline.context.new_page()
    await log_in(page, base, name, viewer_password)
    assert await page.locator("#nav-admin").is_hidden()
    assert await page.locator("#nav-desk").is_visible()
    # The address of the admin page routes a viewer to the desk; nothing of the admin page is built.
    await page.goto(base + "/#admin")
    await page.wait_for_selector("#desk-view:not(.d-none)")
    assert await page.locator("#admin-view").is_hidden()
    assert await page.locator("#admin-view *").count() == 0
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=SCREENSHOTS / "admin-viewer.png", full_page=True)
    assert offline.blocked == []

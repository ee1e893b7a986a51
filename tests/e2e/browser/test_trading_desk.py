"""The trader's desk in a browser (issue 15 §3), against one standalone platform on the demo market's replay feed: the
order ticket's price ladder and its checks as the trader types (lots, tick, limits), a limit order placed from a
ladder price that fills, the position and the cost analysis of that fill (worked by hand here), a resting order and a
stop cancelled from the open orders table, and the QMT bridge's banner for an account bound to a bridge that is not
connected (with the admins' badge)."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Page, Request

from tests.e2e.browser.conftest import OfflineContext, log_in
from tests.e2e.flow import create_user, login
from tests.e2e.test_standalone import standalone_process

pytestmark = pytest.mark.e2e

CODE = "600405.SH"  # a main-board stock of the demo market: lots of 100
BRIDGE = "qmt-desk"
FEN = Decimal("0.01")


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """`make run`'s standalone platform (replay feed, paper fills on its quotes) with one QMT bridge configured and
    never connected."""
    secret = secrets.token_urlsafe(24)
    with standalone_process(tmp_path_factory.mktemp("trading-desk"), LH_QMT_BRIDGE_SECRETS=f"{BRIDGE}={secret}") as p:
        yield p


@pytest_asyncio.fixture(scope="module")
async def people(platform: tuple[str, str]) -> AsyncIterator[dict[str, Any]]:
    """The admin (who trades on the paper broker) and a trader whose account is bound to the bridge."""
    base, admin_password = platform
    async with httpx.AsyncClient(timeout=30) as client:
        admin = await login(client, base, "admin", admin_password)
        name, password = await create_user(client, admin, "trader")
        trader = await login(client, base, name, password)
        me = (await client.get(f"{base}/api/v1/auth/me", headers=trader.headers)).json()
        bound = await client.put(f"{base}/api/v1/accounts/{me['account_id']}/broker", headers=admin.headers,
                                 json={"broker": "qmt", "bridge_id": BRIDGE})  # fmt: skip
        assert bound.status_code == 200, bound.text
    yield {"base": base, "admin": admin, "admin_password": admin_password, "trader": (name, password)}


async def _page(offline: OfflineContext, base: str, username: str, password: str, errors: list[str]) -> Page:
    page = await offline.context.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    await page.add_init_script("localStorage.setItem('lianghua.lang', 'en')")  # these tests read the English words
    await log_in(page, base, username, password)
    return page


async def _ticket(page: Page, code: str) -> None:
    await page.fill("#order-ts-code", code)
    await page.locator("#ladder-ask-1 .ladder-price").wait_for(timeout=15_000)


def _cents(value: Decimal) -> Decimal:
    return value.quantize(FEN, rounding=ROUND_HALF_UP)


async def _until(what: str, check: Any, timeout_s: float = 30) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        found = await check()
        if found:
            return found
        assert time.monotonic() < deadline, f"no {what} in {timeout_s} s"
        await asyncio.sleep(0.3)


async def test_the_ticket_checks_lots_tick_and_limits_as_you_type(
    people: dict[str, Any], offline: OfflineContext
) -> None:
    errors: list[str] = []
    page = await _page(offline, people["base"], "admin", people["admin_password"], errors)
    await _ticket(page, CODE)
    async with httpx.AsyncClient(timeout=30) as client:
        live = (await client.get(f"{people['base']}/api/v1/quotes/{CODE}/live", headers=people["admin"].headers)).json()
    # The ladder: five asks, the last price, five bids, and the day's limits as the live quote gives them.
    assert await page.locator("#ladder tr").count() == 11
    assert await page.inner_text("#ladder-limit-up") == live["limit_up"]
    assert await page.inner_text("#ladder-limit-down") == live["limit_down"]

    # 150 shares on a main-board buy: not a lot of 100 — the error at once, and the button off.
    await page.fill("#order-qty", "150")
    assert "buys must be in lots of 100 shares" in await page.inner_text("#order-qty-error")
    assert await page.is_disabled("#order-submit")
    await page.fill("#order-qty", "200")
    assert await page.locator("#order-qty.is-invalid").count() == 0
    assert await page.is_enabled("#order-submit")

    # Off the 0.01 tick, and above the limit-up price (limit-up + 0.01): risk's codes and messages.
    await page.fill("#order-price", "10.001")
    assert "price_tick: price 10.001 is not on the 0.01 tick" in await page.inner_text("#order-price-error")
    assert await page.is_disabled("#order-submit")
    over = str(Decimal(live["limit_up"]) + FEN)
    await page.fill("#order-price", over)
    assert f"price_limit: price {over} is above the limit-up price {live['limit_up']}" in await page.inner_text(
        "#order-price-error"
    )
    under = str(Decimal(live["limit_down"]) - FEN)
    await page.fill("#order-price", under)
    assert f"is below the limit-down price {live['limit_down']}" in await page.inner_text("#order-price-error")
    # Clicking a ladder price puts it in the ticket; the amount is qty x price (200 x the limit-down price, exactly).
    await page.click("#ladder-limits")  # (nothing: the limits line is not a price)
    await page.fill("#order-price", "")
    down = page.locator("#ladder-bid-1 .ladder-price")
    bid = await down.inner_text()
    await down.click()
    assert await page.input_value("#order-price") == bid
    amount = Decimal(bid) * 200
    assert f"{amount:,.2f} CNY" in await page.inner_text("#order-amount")
    # The fees and the most shares are execution's (GET /v1/orders/estimate), asked for as the ticket settles.
    # Worked by hand: commission max(amount x 0.025%, 5.00) = 5.00 (the amount is far below 20,000), transfer fee
    # amount x 0.001% to the fen, half-up; no stamp duty on a buy.
    transfer = _cents(amount * Decimal("0.00001"))
    fees_text = f"estimated fees {Decimal('5.00') + transfer:,.2f} CNY (commission 5.00, transfer {transfer:,.2f})"

    async def fees_shown() -> bool:
        return await page.inner_text("#order-fees") == fees_text

    await _until("the server's fees", fees_shown)
    # The most shares at `bid` with the admin's available cash: the largest lot of 100 whose amount and fees fit.
    async with httpx.AsyncClient(timeout=30) as client:
        available = Decimal(
            (await client.get(f"{people['base']}/api/v1/account", headers=people["admin"].headers)).json()["available"]
        )
    most = int(available / Decimal(bid)) // 100 * 100
    while most > 0:
        cost = most * Decimal(bid)
        fees = max(_cents(cost * Decimal("0.00025")), Decimal("5.00")) + _cents(cost * Decimal("0.00001"))
        if cost + fees <= available:
            break
        most -= 100
    max_text = f"max buy {most:,} shares (available {available:,.2f} CNY)"

    async def max_shown() -> bool:
        return await page.inner_text("#order-max") == max_text

    await _until("the server's most shares", max_shown)
    # A market order becomes a limit order at a clicked price.
    await page.select_option("#order-type", "market")
    assert await page.is_disabled("#order-price")
    market_types = await page.locator("#order-market-type option").evaluate_all("os => os.map(o => o.value)")
    assert market_types == ["counterparty_best", "best5_cancel", "best5_limit", "own_best"]  # the SSE's four
    await page.click("#ladder-ask-1 .ladder-price")
    assert await page.input_value("#order-type") == "limit"
    assert errors == []
    assert offline.blocked == []


async def test_a_limit_order_from_a_ladder_price_fills_into_the_position_and_the_cost_table(
    people: dict[str, Any], offline: OfflineContext
) -> None:
    base, admin = people["base"], people["admin"]
    errors: list[str] = []
    page = await _page(offline, base, "admin", people["admin_password"], errors)
    await _ticket(page, CODE)
    # The highest ask shown: a buy at it takes the best ask's 100 shares at once.
    ask = page.locator("#ladder-ask-5 .ladder-price")
    if not await ask.count():
        ask = page.locator("#ladder-ask-1 .ladder-price")
    await ask.click()
    await page.fill("#order-qty", "100")
    shown_price = Decimal(await page.input_value("#order-price"))
    await page.click("#order-submit")
    # The confirmation's amount and fees are execution's: 100 x the price; commission 5.00 (the minimum) and the
    # transfer fee to the fen, half-up.
    confirm_amount = shown_price * 100
    confirm_fees = Decimal("5.00") + _cents(confirm_amount * Decimal("0.00001"))
    confirm_line = f"amount {confirm_amount:,.2f} CNY, estimated fees {confirm_fees:,.2f} CNY"

    async def confirm_shown() -> bool:
        return confirm_line in await page.inner_text("#order-confirm-text")

    await _until("the confirmation's figures", confirm_shown)
    async with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/api/v1/orders")) as sent:
        await page.click("#order-confirm")
    request: Request = await sent.value
    body = request.post_data_json
    assert (body["ts_code"], body["side"], body["order_type"], body["qty"]) == (CODE, "buy", "limit", 100)
    assert body["price"] == await page.input_value("#order-price")
    await page.wait_for_selector("#order-result .alert-success")
    order_id = (await page.inner_text("#order-result")).split("Order accepted.")[1].split("·")[0].strip()

    async with httpx.AsyncClient(timeout=30) as client:

        async def filled() -> list[dict[str, Any]] | None:
            r = await client.get(f"{base}/api/v1/trades?limit=50", headers=admin.headers)
            trades = [t for t in r.json() if t["order_id"] == order_id]
            return trades if sum(t["qty"] for t in trades) == 100 else None

        [trade] = await _until("fill of the desk's buy", filled)
    price = Decimal(trade["price"])
    # Worked by hand: a buy of 100 at `price`: amount = 100 x price; commission max(amount x 0.025%, 5.00) = 5.00
    # (the amount is far below 20,000); transfer fee amount x 0.001% to the fen, half-up; no stamp duty on a buy.
    amount = price * 100
    commission = max(_cents(amount * Decimal("0.00025")), Decimal("5.00"))
    transfer = _cents(amount * Decimal("0.00001"))
    cost = amount + commission + transfer
    assert Decimal(trade["fees"]) == commission + transfer

    row = page.locator(f"[id='position-{CODE}']")
    await row.wait_for(timeout=15_000)
    # One read of the row's cells: the row is drawn again as quotes revalue it, and its figures go together.
    cells = await row.evaluate(
        "r => Object.fromEntries([...r.querySelectorAll('td[class*=pos-]')].map(td => "
        "[[...td.classList].find(c => c.startsWith('pos-')), td.textContent.replaceAll(',', '')]))"
    )
    assert cells["pos-qty"] == "100"
    assert cells["pos-sellable"] == "0"  # T+1: bought today, sellable tomorrow
    assert cells["pos-today"] == "100 / 0"
    assert Decimal(cells["pos-cost"]) == cost
    assert Decimal(cells["pos-avg-cost"]) == cost / 100
    # Valued at the price shown beside it: market value = 100 x last; unrealised = market value - cost.
    last = Decimal(cells["pos-last"])
    assert Decimal(cells["pos-value"]) == last * 100, cells
    assert Decimal(cells["pos-unrealised"]) == last * 100 - cost, cells

    # The cost analysis of the order: its fill VWAP is the fill price (one fill), its fees the fill's.
    await page.click("#tca-refresh")
    tca = page.locator(f"[id='tca-{order_id}']")
    await tca.wait_for(timeout=15_000)
    assert Decimal(await tca.locator(".tca-vwap").inner_text()) == price
    assert Decimal(await tca.locator(".tca-fees").inner_text()) == commission + transfer
    await page.select_option("#tca-by", "day")
    total = page.locator("[id='tca-group-total']")
    await total.wait_for()
    assert "1 / 1" in await total.inner_text()
    assert errors == []


async def test_a_resting_order_and_a_stop_are_cancelled_from_the_open_orders(
    people: dict[str, Any], offline: OfflineContext
) -> None:
    base, admin = people["base"], people["admin"]
    errors: list[str] = []
    page = await _page(offline, base, "admin", people["admin_password"], errors)
    await _ticket(page, CODE)
    # A buy at the limit-down price rests (nobody sells that low in the replayed session).
    down = await page.inner_text("#ladder-limit-down")
    await page.fill("#order-price", down)
    await page.fill("#order-qty", "100")
    await page.click("#order-submit")
    await page.click("#order-confirm")
    await page.wait_for_selector("#order-result .alert-success")
    order_id = (await page.inner_text("#order-result")).split("Order accepted.")[1].split("·")[0].strip()
    row = page.locator(f"[id='open-order-{order_id}']")
    await row.wait_for(timeout=10_000)
    assert await row.locator("td").nth(5).inner_text() == down

    # A buy stop above the last price (the limit-up price: it never triggers here), held by execution.
    up = await page.inner_text("#ladder-limit-up")
    await page.select_option("#order-type", "stop")
    await page.fill("#order-stop-price", up)
    async with page.expect_request(lambda r: r.url.endswith("/api/v1/conditional-orders") and r.method == "POST") as s:
        await page.click("#order-submit")
        await page.click("#order-confirm")
    assert (await s.value).post_data_json == {"ts_code": CODE, "side": "buy", "qty": 100, "kind": "stop",
                                               "stop_price": up}  # fmt: skip
    await page.wait_for_selector("#order-result .alert-success")
    stop = page.locator("#open-orders tr[id^='open-cond-']")
    await stop.wait_for(timeout=10_000)
    stop_id = (await stop.get_attribute("id") or "").removeprefix("open-cond-")

    await row.locator("button[data-action=cancel]").click()
    await row.wait_for(state="detached", timeout=10_000)
    await stop.locator("button[data-action=cancel]").click()
    await stop.wait_for(state="detached", timeout=10_000)
    async with httpx.AsyncClient(timeout=30) as client:
        order = (await client.get(f"{base}/api/v1/orders/{order_id}", headers=admin.headers)).json()
        conditional = (await client.get(f"{base}/api/v1/conditional-orders/{stop_id}", headers=admin.headers)).json()
    assert order["status"] == "cancelled"
    assert conditional["status"] == "cancelled"
    assert errors == []


async def test_an_account_on_a_disconnected_bridge_sees_the_banner_and_admins_the_badge(
    people: dict[str, Any], offline: OfflineContext
) -> None:
    base = people["base"]
    errors: list[str] = []
    name, password = people["trader"]
    page = await _page(offline, base, name, password, errors)
    banner = page.locator("#ticket-bridge-banner")
    await banner.wait_for(timeout=10_000)
    assert "orders are refused: broker_unavailable" in (await banner.inner_text()).lower()
    assert BRIDGE in await banner.inner_text()
    assert await page.inner_text("#ticket-broker") == f"broker: QMT {BRIDGE}"
    assert not await page.is_visible("#bridge-status")  # the bridges are the admins' to watch

    # The server agrees: an order now is refused with that code, and the ticket shows it as the server gave it.
    await _ticket(page, CODE)
    await page.fill("#order-price", await page.inner_text("#ladder-limit-down"))
    await page.click("#order-submit")
    await page.click("#order-confirm")
    await page.wait_for_selector("#order-result .alert-danger")
    assert (await page.inner_text("#order-result")).startswith("broker_unavailable:")

    admin_page = await _page(offline, base, "admin", people["admin_password"], errors)
    badge = admin_page.locator("#bridge-status")
    await badge.wait_for(timeout=10_000)
    assert await badge.inner_text() == f"QMT: {BRIDGE} disconnected"
    assert "text-bg-danger" in (await badge.get_attribute("class") or "")
    # The admin trades on the paper broker: no banner on their ticket.
    await admin_page.wait_for_selector("#ticket-broker:has-text('paper')")
    assert not await admin_page.is_visible("#ticket-bridge-banner")
    assert errors == []


async def test_a_viewer_sees_the_desk_without_a_button_to_act(people: dict[str, Any], offline: OfflineContext) -> None:
    base = people["base"]
    async with httpx.AsyncClient(timeout=30) as client:
        name, password = await create_user(client, people["admin"], "viewer")
    errors: list[str] = []
    page = await _page(offline, base, name, password, errors)
    await page.wait_for_selector("#open-orders tr")
    assert await page.locator("#open-orders button").count() == 0
    assert await page.is_disabled("#cancel-all")
    assert await page.is_visible("#order-readonly")
    assert await page.is_disabled("#order-submit") and await page.is_disabled("#order-ts-code")
    assert errors == []


async def _resting_buys(people: dict[str, Any], count: int) -> tuple[Decimal, list[str]]:
    """`count` buys of 100 at the limit-down price, placed through the API: they rest (nobody sells that low in the
    replayed session). The limit-down price and the order ids."""
    base, admin = people["base"], people["admin"]
    async with httpx.AsyncClient(timeout=30) as client:
        quote = (await client.get(f"{base}/api/v1/quotes/{CODE}/live", headers=admin.headers)).json()
        down = Decimal(quote["limit_down"])
        ids = []
        for n in range(count):
            body = {"client_order_id": f"desk-rest-{n}-{secrets.token_hex(4)}", "ts_code": CODE, "side": "buy",
                    "order_type": "limit", "qty": 100, "price": str(down)}  # fmt: skip
            placed = await client.post(f"{base}/api/v1/orders", json=body, headers=admin.headers)
            assert placed.status_code == 201, placed.text
            ids.append(placed.json()["order"]["order_id"])
    return down, ids


async def test_an_order_amended_from_the_open_orders(people: dict[str, Any], offline: OfflineContext) -> None:
    base, admin = people["base"], people["admin"]
    down, [order_id] = await _resting_buys(people, 1)
    errors: list[str] = []
    page = await _page(offline, base, "admin", people["admin_password"], errors)
    row = page.locator(f"[id='open-order-{order_id}']")
    await row.wait_for(timeout=10_000)

    # One tick up, 200 shares in all. The paper broker confirms the cancel at once, so the amend is `replaced` in its
    # answer, and the replacement rests in the original's place.
    new_price = str(down + FEN)
    await row.locator("button[data-action=amend]").click()
    amend = page.locator(f"[id='amend-{order_id}']")
    await amend.locator(".amend-price").fill(new_price)
    await amend.locator(".amend-qty").fill("200")
    async with page.expect_request(lambda r: r.url.endswith(f"/api/v1/orders/{order_id}/amend")) as sent:
        await amend.get_by_role("button", name="Send amend").click()
    assert (await sent.value).post_data_json == {"price": new_price, "qty": 200}
    result = page.locator("#open-orders-result")
    await result.filter(has_text="replaced").wait_for(timeout=10_000)
    await row.wait_for(state="detached", timeout=10_000)
    async with httpx.AsyncClient(timeout=30) as client:
        original = (await client.get(f"{base}/api/v1/orders/{order_id}", headers=admin.headers)).json()
    assert original["status"] == "cancelled"
    replacement = page.locator(f"[id='open-order-{original['replaced_by']}']")
    await replacement.wait_for(timeout=10_000)
    cells = await replacement.locator("td").all_inner_texts()
    assert (cells[4], cells[5]) == ("200", new_price)
    assert f"replacement {original['replaced_by']} for 200 @ {new_price}" in await result.inner_text()
    await replacement.locator("button[data-action=cancel]").click()
    await replacement.wait_for(state="detached", timeout=10_000)
    assert errors == []


async def test_cancel_all_from_the_open_orders_takes_the_orders_and_the_stops(
    people: dict[str, Any], offline: OfflineContext
) -> None:
    base, admin = people["base"], people["admin"]
    _, ids = await _resting_buys(people, 2)
    async with httpx.AsyncClient(timeout=30) as client:
        quote = (await client.get(f"{base}/api/v1/quotes/{CODE}/live", headers=admin.headers)).json()
        stop = {"ts_code": CODE, "side": "buy", "qty": 100, "kind": "stop", "stop_price": quote["limit_up"]}
        armed = await client.post(f"{base}/api/v1/conditional-orders", json=stop, headers=admin.headers)
        assert armed.status_code == 201, armed.text
    errors: list[str] = []
    page = await _page(offline, base, "admin", people["admin_password"], errors)
    for order_id in ids:
        await page.locator(f"[id='open-order-{order_id}']").wait_for(timeout=10_000)
    await page.locator(f"[id='open-cond-{armed.json()['conditional_id']}']").wait_for(timeout=10_000)

    # The first click only arms the button; the second cancels the two orders and the stop.
    await page.click("#cancel-all")
    assert (await page.inner_text("#cancel-all")).startswith("Confirm: cancel 3")
    async with page.expect_request(lambda r: r.url.endswith("/api/v1/orders/cancel-all")) as sent:
        await page.click("#cancel-all")
    assert (await sent.value).post_data_json == {}
    result = page.locator("#open-orders-result")
    await result.filter(has_text="2 cancelled").wait_for(timeout=10_000)
    assert "1 conditional cancelled" in await result.inner_text()
    await page.locator("#open-orders", has_text="No open orders.").wait_for(timeout=10_000)
    async with httpx.AsyncClient(timeout=30) as client:
        statuses = [
            (await client.get(f"{base}/api/v1/orders/{i}", headers=admin.headers)).json()["status"] for i in ids
        ]
        stop_now = await client.get(
            f"{base}/api/v1/conditional-orders/{armed.json()['conditional_id']}", headers=admin.headers
        )
    assert statuses == ["cancelled", "cancelled"]
    assert stop_now.json()["status"] == "cancelled"
    # Nothing is reserved for open buys any more (the fill test's buy filled, everything else is cancelled).
    await page.locator("#account-reserved", has_text="0.00 CNY").wait_for(timeout=10_000)
    assert errors == []


async def test_a_market_order_goes_with_the_market_type_chosen_on_the_ticket(
    people: dict[str, Any], offline: OfflineContext
) -> None:
    base, admin = people["base"], people["admin"]
    errors: list[str] = []
    page = await _page(offline, base, "admin", people["admin_password"], errors)
    await _ticket(page, CODE)
    await page.select_option("#order-type", "market")
    await page.select_option("#order-market-type", "best5_cancel")
    await page.fill("#order-qty", "100")
    # A market buy's most shares are reckoned by execution at the limit-up price (its cash is reserved at it): the
    # largest lot of 100 whose amount and fees the available cash covers, worked here from the ladder's limit-up.
    limit_up = Decimal(await page.inner_text("#ladder-limit-up"))
    async with httpx.AsyncClient(timeout=30) as client:
        available = Decimal((await client.get(f"{base}/api/v1/account", headers=admin.headers)).json()["available"])
    most = int(available / limit_up) // 100 * 100
    while most > 0:
        cost = most * limit_up
        if (
            cost + max(_cents(cost * Decimal("0.00025")), Decimal("5.00")) + _cents(cost * Decimal("0.00001"))
            <= available
        ):
            break
        most -= 100
    max_text = f"max buy {most:,} shares (available {available:,.2f} CNY)"

    async def max_shown() -> bool:
        return await page.inner_text("#order-max") == max_text

    await _until("the market buy's most shares", max_shown)
    await page.click("#order-submit")
    async with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/api/v1/orders")) as sent:
        await page.click("#order-confirm")
    body = (await sent.value).post_data_json
    assert (body["order_type"], body["market_type"], "price" in body) == ("market", "best5_cancel", False)
    await page.wait_for_selector("#order-result .alert-success")
    order_id = (await page.inner_text("#order-result")).split("Order accepted.")[1].split("·")[0].strip()
    async with httpx.AsyncClient(timeout=30) as client:
        order = (await client.get(f"{base}/api/v1/orders/{order_id}", headers=admin.headers)).json()
    assert order["market_type"] == "best5_cancel"
    assert errors == []

"""Several strategies side by side in one backtest request, against the real MariaDB and RabbitMQ: one job, one
worker, one data load, the combined portfolio and each sleeve stored and reported."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest
from pydantic import Field

from shared.research.strategy import CrossSection, Strategy, StrategyContext, StrategyParams
from tests.integration.backtest.test_backtest_flow import Stack, stack

pytestmark = pytest.mark.integration

__all__ = ["stack"]  # the module-scoped stack fixture (API, worker, stand-in data service), used here too

CODES = ["000001.SZ", "300750.SZ"]
WINDOW = {"ts_codes": CODES, "start": "2024-03-01", "end": "2024-03-08"}
SLEEVES = [
    {"strategy": "buy_and_hold", "weight": "0.5", "label": "all in"},
    {"strategy": "buy_and_hold", "params": {"cash_reserve": "0.5"}, "weight": "0.5", "label": "half cash"},
]

# "all in": 200,000.00, the whole of it over the two symbols: as in test_backtest_flow's hand computation,
#   9,500 x 000001.SZ and 500 x 300750.SZ, cash 10,200.66; equity 201,900.66, 201,750.66, 199,850.66, 202,750.66
# "half cash": 200,000.00 with half kept in cash: a budget of 50,000.00 per symbol at D1's open
#   000001.SZ at 10.50: 50,000 / 1,050 a lot = 47.6 -> 4,700 shares, 49,350.00; commission 12.3375 -> 12.34,
#     transfer 0.4935 -> 0.49; cost 49,362.83
#   300750.SZ at 180.00: 50,000 / 18,000 = 2.8 -> 200 shares, 36,000.00; commission 9.00, transfer 0.36;
#     cost 36,009.36
#   cash 200,000 - 49,362.83 - 36,009.36 = 114,627.81
#   D1: 114,627.81 + 4,700 x 10.60 + 200 x 182.00 = 114,627.81 + 49,820 + 36,400 = 200,847.81
#   D2: + 4,700 x 10.40 + 200 x 185.50 = 48,880 + 37,100 -> 200,607.81
#   D3: + 4,700 x 10.20 + 200 x 185.50 (300750.SZ suspended) = 47,940 + 37,100 -> 199,667.81
#   D4: + 4,700 x 10.80 + 200 x 179.90 = 50,760 + 35,980 -> 201,367.81
ALL_IN = ["201900.66", "201750.66", "199850.66", "202750.66"]
HALF_CASH = ["200847.81", "200607.81", "199667.81", "201367.81"]
COMBINED = ["402748.47", "402358.47", "399518.47", "404118.47"]


class NamedPortfolio(Strategy):
    """One strategy that happens to be named "portfolio" and to take a `sleeves` parameter."""

    name = "portfolio"
    title = "Named portfolio"
    description = "Holds cash; its name and parameter look like a run with several strategies."

    class Params(StrategyParams):
        sleeves: list[int] = Field(default_factory=lambda: [1, 2])

    def on_bar(self, ctx: StrategyContext, bar: CrossSection) -> None:
        return None


def _curve(body: dict[str, Any]) -> list[str]:
    return [point["equity"] for point in body["equity_curve"]]


async def test_two_sleeves_run_as_one_job_and_add_up_to_the_hand_computation(stack: Stack) -> None:
    jobs_before = stack.jobs("succeeded")
    bulk_before = stack.fake.calls["bulk"] + stack.fake.calls["bulk_body"]
    backtest_id = await stack.submit({**WINDOW, "sleeves": SLEEVES, "initial_cash": "400000", "name": "two sleeves"})
    result = await stack.finished(backtest_id)
    assert result["status"] == "succeeded", result["error"]
    # one job for both sleeves. The worker counts a job after it has stored the result (which `finished` saw), so
    # the counter may trail the status by a moment: wait for it, then check it went up by exactly one.
    for _ in range(100):
        if stack.jobs("succeeded") > jobs_before:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)  # a second job (the bug this guards against) would be counted meanwhile
    assert stack.jobs("succeeded") == jobs_before + 1
    assert stack.fake.calls["bulk"] + stack.fake.calls["bulk_body"] <= bulk_before + 1  # one data load at most
    assert result["strategy"] == "portfolio"
    assert result["params"] == {
        "sleeves": [
            {"label": "all in", "strategy": "buy_and_hold", "params": {"weights": "equal", "cash_reserve": "0"},
             "weight": "0.5"},
            {"label": "half cash", "strategy": "buy_and_hold",
             "params": {"weights": "equal", "cash_reserve": "0.5"}, "weight": "0.5"},
        ]
    }  # fmt: skip
    assert _curve(result) == COMBINED
    summary = result["summary"]
    assert summary["initial_cash"] == "400000.00" and summary["final_equity"] == "404118.47"
    assert summary["total_return"] == "0.01029618"  # 4,118.47 / 400,000 = 0.010296175, half-even
    assert summary["fees_paid"] == "71.53"  # 49.34 + (12.34 + 0.49 + 9.00 + 0.36)
    assert summary["trades"] == 4
    assert summary["metrics"]["total_return"] == pytest.approx(4118.47 / 400000, rel=1e-12)
    # the combined drawdown: from the D1 peak 402,748.47 to D3's 399,518.47
    assert summary["metrics"]["max_drawdown"] == pytest.approx(3230 / 402748.47, rel=1e-12)
    sleeves = summary["sleeves"]
    assert [(s["label"], s["weight"], s["initial_cash"], s["final_equity"]) for s in sleeves] == [
        ("all in", 0.5, "200000.00", "202750.66"),
        ("half cash", 0.5, "200000.00", "201367.81"),
    ]
    assert sleeves[0]["total_return"] == "0.01375330" and sleeves[1]["fees_paid"] == "22.19"
    assert sleeves[0]["metrics"]["max_drawdown"] == pytest.approx(2050 / 201900.66, rel=1e-12)
    assert summary["manifest"]["strategy"] == "portfolio" and len(summary["manifest"]["input_sha256"]) == 64
    assert [s["input_sha256"] for s in summary["manifest"]["params"]["sleeves"]] == [s["input_sha256"] for s in sleeves]

    daily = await stack.worker.store.daily_frame(backtest_id)
    assert daily is not None
    assert daily["equity_1"].tolist() == [int(v.replace(".", "")) for v in ALL_IN]
    assert daily["equity_2"].tolist() == [int(v.replace(".", "")) for v in HALF_CASH]
    assert (daily["equity_1"] + daily["equity_2"]).tolist() == daily["equity"].tolist()
    assert daily["cash"].tolist() == [1_020_066 + 11_462_781] * 4
    trades = (await stack.client.get(f"/v1/backtests/{backtest_id}/trades", headers=stack.headers())).json()
    assert trades["total"] == 4
    assert [(t["sleeve"], t["ts_code"], t["qty"], t["fees"]) for t in trades["trades"]] == [
        ("all in", "000001.SZ", 9500, "25.94"),
        ("all in", "300750.SZ", 500, "23.40"),
        ("half cash", "000001.SZ", 4700, "12.83"),
        ("half cash", "300750.SZ", 200, "9.36"),
    ]
    # cost analysis per sleeve's order (order ids are per sleeve): the four orders, their fees 71.53 in all
    tca = (await stack.client.get(f"/v1/backtests/{backtest_id}/tca", headers=stack.headers())).json()
    assert [(o["sleeve"], o["ts_code"], o["filled_qty"], o["fees"]) for o in tca["orders"]] == [
        ("all in", "000001.SZ", 9500, "25.94"),
        ("all in", "300750.SZ", 500, "23.40"),
        ("half cash", "000001.SZ", 4700, "12.83"),
        ("half cash", "300750.SZ", 200, "9.36"),
    ]
    assert (tca["total_orders"], tca["total"]["orders"], tca["total"]["fees"]) == (4, 4, "71.53")
    event = await stack.event_for(backtest_id)
    assert event.payload["total_return"] == "0.01029618"


async def test_the_combined_curve_is_the_sum_of_the_two_sleeves_submitted_alone(stack: Stack) -> None:
    together = await stack.submit({**WINDOW, "sleeves": SLEEVES, "initial_cash": "400000"})
    alone = [
        await stack.submit({**WINDOW, "strategy": "buy_and_hold", "params": s.get("params", {}), "initial_cash": cash})
        for s, cash in zip(SLEEVES, ("200000", "200000"), strict=True)
    ]
    combined = await stack.finished(together)
    first, second = [await stack.finished(i) for i in alone]
    assert combined["status"] == first["status"] == second["status"] == "succeeded"
    assert _curve(first) == ALL_IN and _curve(second) == HALF_CASH
    summed = [str(Decimal(a) + Decimal(b)) for a, b in zip(_curve(first), _curve(second), strict=True)]
    assert _curve(combined) == summed
    # each sleeve ran on the same inputs as its single run, so it has the same metrics
    sleeves = combined["summary"]["sleeves"]
    assert [s["metrics"] for s in sleeves] == [first["summary"]["metrics"], second["summary"]["metrics"]]


async def test_the_report_shows_both_sleeves_next_to_the_combined_account(stack: Stack) -> None:
    backtest_id = await stack.submit({**WINDOW, "sleeves": SLEEVES, "initial_cash": "400000"})
    assert (await stack.finished(backtest_id))["status"] == "succeeded"
    response = await stack.client.get(f"/v1/backtests/{backtest_id}/report", headers=stack.headers())
    assert response.status_code == 200, response.text
    report = response.json()
    side = report["side_by_side"]
    assert [s["label"] for s in side["sleeves"]] == ["all in", "half cash"]
    assert side["combined"]["label"] == "Combined"
    # rebased to 1.0 on each sleeve's own 200,000.00
    assert side["sleeves"][0]["equity"] == pytest.approx([float(v) / 200000 for v in ALL_IN], abs=1e-12)
    assert side["sleeves"][1]["equity"] == pytest.approx([float(v) / 200000 for v in HALF_CASH], abs=1e-12)
    assert side["combined"]["equity"] == pytest.approx([float(v) / 400000 for v in COMBINED], abs=1e-12)
    assert report["equity"] == side["combined"]["equity"]
    metrics = {m["key"]: m for m in side["sleeves"][1]["metrics"]}
    assert metrics["total_return"]["value"] == pytest.approx(1367.81 / 200000, rel=1e-12)
    assert metrics["total_return"]["display"] == "0.68%"
    assert [m["key"] for m in side["combined"]["metrics"]] == [
        "total_return", "annual_return", "volatility", "max_drawdown", "sharpe", "trade_count",
    ]  # fmt: skip
    assert side["sleeves"][0]["fills"] == 2 and side["combined"]["fills"] == 4
    assert {r["key"] for r in report["summary"]}.isdisjoint({"sleeves"})
    page = await stack.client.get(f"/v1/backtests/{backtest_id}/report.html", headers=stack.headers())
    assert page.status_code == 200
    html = page.text
    assert 'id="side-by-side"' in html and "Side by side" in html
    assert "all in" in html and "half cash" in html and "Combined" in html
    assert "202,750.66" in html and "201,367.81" in html and "404,118.47" in html
    # a single-strategy report has no such section
    single = await stack.submit({**WINDOW, "initial_cash": "100000"})
    assert (await stack.finished(single))["status"] == "succeeded"
    plain = (await stack.client.get(f"/v1/backtests/{single}/report", headers=stack.headers())).json()
    assert plain["side_by_side"] is None
    plain_html = (await stack.client.get(f"/v1/backtests/{single}/report.html", headers=stack.headers())).text
    assert 'id="side-by-side"' not in plain_html


async def test_bad_sleeves_are_refused_naming_the_field_and_nothing_is_stored(stack: Stack) -> None:
    before = len((await stack.client.get("/v1/backtests?limit=500", headers=stack.headers())).json())
    good = {**WINDOW, "sleeves": SLEEVES}
    bad_params = [SLEEVES[0], {**SLEEVES[1], "params": {"cash_reserve": 1.5}}]
    cases: dict[str, tuple[dict[str, Any], str, str]] = {
        "param out of range": ({**WINDOW, "sleeves": bad_params}, "invalid_request", "sleeves.1.params.cash_reserve"),
        "unknown param": (
            {**WINDOW, "sleeves": [SLEEVES[0], {"strategy": "buy_and_hold", "params": {"fast": 3}}]},
            "invalid_request",
            "sleeves.1.params.fast",
        ),
        "unknown strategy": (
            {**WINDOW, "sleeves": [{"strategy": "nope"}, SLEEVES[1]]},
            "unknown_strategy",
            "sleeves.0.strategy",
        ),
        "one weight missing": (
            {**WINDOW, "sleeves": [SLEEVES[0], {"strategy": "buy_and_hold"}]},
            "invalid_request",
            "sleeves.1.weight",
        ),
        "weights off": (
            {**WINDOW, "sleeves": [SLEEVES[0], {**SLEEVES[1], "weight": "0.4"}]},
            "invalid_request",
            "sleeves",
        ),
        "weight zero": (
            {**WINDOW, "sleeves": [SLEEVES[0], {**SLEEVES[1], "weight": 0}]},
            "invalid_request",
            "sleeves.1.weight",
        ),
        "same label": (
            {**WINDOW, "sleeves": [SLEEVES[0], {**SLEEVES[1], "label": "all in"}]},
            "invalid_request",
            "sleeves.1.label",
        ),
        "one sleeve": ({**WINDOW, "sleeves": SLEEVES[:1]}, "invalid_request", "sleeves"),
        "eleven sleeves": ({**WINDOW, "sleeves": [{"strategy": "buy_and_hold"}] * 11}, "invalid_request", "sleeves"),
        "both forms": ({**good, "strategy": "buy_and_hold"}, "invalid_request", "sleeves"),
        "both forms, params": ({**good, "params": {}}, "invalid_request", "sleeves"),
    }
    for label, (body, code, field) in cases.items():
        resp = await stack.client.post("/v1/backtests", json=body, headers=stack.headers())
        assert resp.status_code == 422, (label, resp.text)
        payload = resp.json()
        assert payload["code"] == code, (label, payload)
        assert payload["message"].startswith(f"{field}:"), (label, payload)
    after = len((await stack.client.get("/v1/backtests?limit=500", headers=stack.headers())).json())
    assert after == before


async def test_a_single_strategy_named_portfolio_runs_as_one_strategy(stack: Stack) -> None:
    # What makes a run one with sleeves is how it was asked for (`sleeves`), not the name "portfolio" it shows.
    stack.app.state.backtests.strategies["portfolio"] = NamedPortfolio
    stack.worker.strategies["portfolio"] = NamedPortfolio
    try:
        backtest_id = await stack.submit({**WINDOW, "strategy": "portfolio", "params": {"sleeves": [3, 4]}})
        result = await stack.finished(backtest_id)
    finally:
        del stack.app.state.backtests.strategies["portfolio"]
        del stack.worker.strategies["portfolio"]
    assert result["status"] == "succeeded", result["error"]
    assert result["strategy"] == "portfolio" and result["params"] == {"sleeves": [3, 4]}
    summary = result["summary"]
    assert "sleeves" not in summary and summary["trades"] == 0
    assert _curve(result) == [summary["initial_cash"]] * 4  # it holds cash: four trading days at the start's equity

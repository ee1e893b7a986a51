"""The table of the services' routes the gateway forwards: one row per route, from which gateway/proxy.py builds the
public routes and their OpenAPI operations. The public path is `/api` + the service's path (`/v1/...`)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from shared.platform.roles import Role

VIEWER, TRADER, ADMIN = Role.VIEWER, Role.TRADER, Role.ADMIN
# Ids that reach a service's URL path: no slashes, no dot segments, nothing that needs escaping.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"


@dataclass(frozen=True)
class ProxyRoute:
    method: str  # GET | POST | PUT | PATCH | DELETE
    path: str  # the service's path, e.g. /v1/orders/{order_id}
    service: str  # data | strategy | backtest | risk | execution
    role: Role  # the lowest role allowed; what a role sees within the route is the service's to decide
    tag: str
    streamed: bool = False  # a non-JSON answer (Arrow, Parquet, HTML) streamed through without holding it
    body: bool = False  # takes a JSON object body, passed on as its raw bytes
    optional_body: bool = False  # with `body`: the body may be left out

    @property
    def public_path(self) -> str:
        return "/api" + self.path

    @property
    def path_params(self) -> tuple[str, ...]:
        return tuple(re.findall(r"{(\w+)}", self.path))


def _r(
    method: str,
    path: str,
    service: str,
    role: Role,
    tag: str,
    *,
    streamed: bool = False,
    body: bool = False,
    optional_body: bool = False,
) -> ProxyRoute:
    return ProxyRoute(method, path, service, role, tag, streamed, body or optional_body, optional_body)


# Viewers read; traders act (on their own account: the services scope what each principal sees and changes); admins
# all. Order matters where two paths could match one URL: the more specific first (`report.html` before `{id}`).
ROUTES: tuple[ProxyRoute, ...] = (
    # orders and trades: risk places, execution reads and cancels
    _r("POST", "/v1/orders", "risk", TRADER, "orders", body=True),
    _r("POST", "/v1/order-batches", "risk", TRADER, "orders", body=True),  # docs/order-management.md
    _r("GET", "/v1/decisions", "risk", VIEWER, "orders"),  # risk's decisions: one's own account's, an admin's all
    # the kill switch: admins set a trading state; everyone reads global's and their own account's (admins all)
    _r("POST", "/v1/risk/halt", "risk", ADMIN, "risk", body=True),
    _r("GET", "/v1/risk/trading-states", "risk", VIEWER, "risk"),
    # limit utilisation at each account's last checked order (docs/risk-rules.md): one's own account's, an admin's all
    _r("GET", "/v1/risk/utilisation", "risk", VIEWER, "risk"),
    # conditional orders (docs/conditional-orders.md), held by execution: traders create and cancel their own
    # account's, everyone reads their own (admins all, and cancel any)
    _r("POST", "/v1/oco-orders", "execution", TRADER, "orders", body=True),
    _r("POST", "/v1/conditional-orders", "execution", TRADER, "orders", body=True),
    _r("GET", "/v1/conditional-orders", "execution", VIEWER, "orders"),
    _r("GET", "/v1/conditional-orders/{conditional_id}", "execution", VIEWER, "orders"),
    _r("POST", "/v1/conditional-orders/{conditional_id}/cancel", "execution", TRADER, "orders"),
    # stops (docs/risk-stops.md): traders set and cancel their own account's, everyone reads their own (admins all)
    _r("POST", "/v1/risk/stops", "risk", TRADER, "risk", body=True),
    _r("GET", "/v1/risk/stops", "risk", VIEWER, "risk"),
    _r("GET", "/v1/risk/stops/{stop_id}", "risk", VIEWER, "risk"),
    _r("DELETE", "/v1/risk/stops/{stop_id}", "risk", TRADER, "risk"),
    # risk rule sets: admins change a level (a new version); everyone reads global's and their own (admins all)
    _r("GET", "/v1/risk/rules", "risk", VIEWER, "risk"),
    _r("PUT", "/v1/risk/rules/{scope}", "risk", ADMIN, "risk", body=True),
    _r("DELETE", "/v1/risk/rules/{scope}", "risk", ADMIN, "risk", body=True),
    _r("GET", "/v1/risk/rules/{scope}/history", "risk", VIEWER, "risk"),
    _r("GET", "/v1/orders", "execution", VIEWER, "orders"),
    # the ticket's figures (amount, fees, the most shares): a read that places nothing, so a viewer may see them for
    # the own account as for GET /v1/account; before {order_id}
    _r("GET", "/v1/orders/estimate", "execution", VIEWER, "orders"),
    _r("GET", "/v1/orders/{order_id}", "execution", VIEWER, "orders"),
    _r("POST", "/v1/orders/cancel-all", "execution", TRADER, "orders", body=True),  # before {order_id}
    _r("POST", "/v1/orders/{order_id}/cancel", "execution", TRADER, "orders"),
    # amend as cancel-replace (docs/order-path.md "Amending an order"): traders amend their own open limit orders
    _r("POST", "/v1/orders/{order_id}/amend", "execution", TRADER, "orders", body=True),
    _r("GET", "/v1/amends/{amend_id}", "execution", VIEWER, "orders"),
    _r("GET", "/v1/trades", "execution", VIEWER, "orders"),
    _r("GET", "/v1/positions", "execution", VIEWER, "orders"),
    _r("GET", "/v1/positions/adjustments", "execution", VIEWER, "orders"),  # corporate actions applied
    _r("GET", "/v1/account", "execution", VIEWER, "orders"),  # cash and the summary: value, P&L
    # transaction cost analysis (docs/tca.md): one's own account's orders, an admin's all
    _r("GET", "/v1/tca/orders", "execution", VIEWER, "orders"),
    _r("GET", "/v1/tca/summary", "execution", VIEWER, "orders"),
    _r("POST", "/v1/account/cash", "execution", ADMIN, "orders", body=True),
    _r("GET", "/v1/account/paper-settings", "execution", VIEWER, "orders"),
    _r("POST", "/v1/account/paper-settings", "execution", ADMIN, "orders", body=True),
    # brokers (docs/qmt-bridge.md, "Execution"): admins choose an account's broker and run the QMT bridges; everyone
    # reads their own account's broker (admins any)
    _r("GET", "/v1/accounts/{account_id}/broker", "execution", VIEWER, "brokers"),
    _r("PUT", "/v1/accounts/{account_id}/broker", "execution", ADMIN, "brokers", body=True),
    _r("GET", "/v1/bridges", "execution", ADMIN, "brokers"),
    _r("GET", "/v1/bridges/{bridge_id}/reconciliations", "execution", ADMIN, "brokers"),
    _r("POST", "/v1/bridges/{bridge_id}/trading", "execution", ADMIN, "brokers", body=True),
    # market data
    _r("GET", "/v1/securities", "data", VIEWER, "market data"),
    _r("GET", "/v1/securities/search", "data", VIEWER, "market data"),  # code, name or pinyin initials
    _r("GET", "/v1/bars", "data", VIEWER, "market data"),
    _r("GET", "/v1/bars/many", "data", VIEWER, "market data"),
    _r("GET", "/v1/bars/limits", "data", VIEWER, "market data"),  # the days closed at a limit (the Market chart)
    _r("GET", "/v1/bars/bulk", "data", VIEWER, "market data", streamed=True),
    _r("GET", "/v1/cross-section", "data", VIEWER, "market data"),
    _r("GET", "/v1/calendar", "data", VIEWER, "market data"),
    _r("GET", "/v1/indexes/{ts_code}/constituents", "data", VIEWER, "market data"),
    _r("GET", "/v1/indexes/{ts_code}/bars", "data", VIEWER, "market data"),
    _r("GET", "/v1/quotes/live", "data", VIEWER, "market data"),  # several codes' live quotes in one read
    _r("GET", "/v1/quotes/{ts_code}", "data", VIEWER, "market data"),
    _r("GET", "/v1/quotes/{ts_code}/live", "data", VIEWER, "market data"),  # real-time (docs/quotes.md)
    _r("GET", "/v1/quotes/{ts_code}/bars", "data", VIEWER, "market data"),
    # ingestion and data quality
    _r("POST", "/v1/ingest/backfill", "data", ADMIN, "ingest", body=True),
    _r("POST", "/v1/ingest/update", "data", ADMIN, "ingest"),
    _r("POST", "/v1/ingest/limits", "data", ADMIN, "ingest", body=True),
    _r("GET", "/v1/ingest/runs", "data", ADMIN, "ingest"),
    _r("GET", "/v1/ingest/runs/{run_id}", "data", ADMIN, "ingest"),
    _r("POST", "/v1/quality/run", "data", ADMIN, "ingest", body=True),
    _r("GET", "/v1/data/status", "data", VIEWER, "ingest"),  # update lag and the real-time feed (docs/data-ingest.md)
    _r("GET", "/v1/quality/reports", "data", VIEWER, "ingest"),
    _r("GET", "/v1/quality/reports/{run_id}", "data", VIEWER, "ingest"),
    # backtests
    _r("POST", "/v1/backtests", "backtest", TRADER, "backtests", body=True),
    _r("GET", "/v1/backtests", "backtest", VIEWER, "backtests"),
    _r("POST", "/v1/backtests/{backtest_id}/cancel", "backtest", TRADER, "backtests"),
    _r("GET", "/v1/backtests/{backtest_id}/trades", "backtest", VIEWER, "backtests"),
    _r("GET", "/v1/backtests/{backtest_id}/tca", "backtest", VIEWER, "backtests"),  # cost analysis (docs/tca.md)
    _r("GET", "/v1/backtests/{backtest_id}/report", "backtest", VIEWER, "backtests"),
    _r("GET", "/v1/backtests/{backtest_id}/report.html", "backtest", VIEWER, "backtests", streamed=True),
    _r("GET", "/v1/backtests/{backtest_id}", "backtest", VIEWER, "backtests"),
    # parameter optimisation
    _r("POST", "/v1/optimisations", "backtest", TRADER, "optimisations", body=True),
    _r("GET", "/v1/optimisations", "backtest", VIEWER, "optimisations"),
    _r("GET", "/v1/optimisations/{optimisation_id}", "backtest", VIEWER, "optimisations"),
    _r("GET", "/v1/optimisations/{optimisation_id}/points", "backtest", VIEWER, "optimisations"),
    _r(
        "GET",
        "/v1/optimisations/{optimisation_id}/report.html",
        "backtest",
        VIEWER,
        "optimisations",
        streamed=True,
    ),
    _r("POST", "/v1/optimisations/{optimisation_id}/cancel", "backtest", TRADER, "optimisations"),
    # strategies and indicators
    _r("GET", "/v1/strategies", "strategy", VIEWER, "backtests"),
    _r("GET", "/v1/strategies/{name}", "strategy", VIEWER, "backtests"),
    _r("GET", "/v1/indicators", "strategy", VIEWER, "backtests"),
    _r("GET", "/v1/indicators/{name}", "strategy", VIEWER, "backtests"),
    _r("POST", "/v1/indicators/series", "strategy", VIEWER, "backtests", body=True),  # computed for a chart
    # strategy instances: the strategy service scopes them (a trader's own; viewers read all; admins act on all)
    _r("POST", "/v1/strategy-instances", "strategy", TRADER, "strategy instances", body=True),
    _r("GET", "/v1/strategy-instances", "strategy", VIEWER, "strategy instances"),
    _r("GET", "/v1/strategy-allocation", "strategy", VIEWER, "strategy instances"),
    _r("GET", "/v1/strategy-instances/{instance_id}/versions", "strategy", VIEWER, "strategy instances"),
    _r("GET", "/v1/strategy-instances/{instance_id}/audit", "strategy", VIEWER, "strategy instances"),
    _r(
        "POST",
        "/v1/strategy-instances/{instance_id}/start",
        "strategy",
        TRADER,
        "strategy instances",
        optional_body=True,
    ),
    _r("GET", "/v1/strategy-instances/{instance_id}/sleeve", "strategy", VIEWER, "strategy instances"),
    _r("GET", "/v1/strategy-instances/{instance_id}/performance", "strategy", VIEWER, "strategy instances"),
    _r("GET", "/v1/strategy-instances/{instance_id}/days", "strategy", VIEWER, "strategy instances"),
    _r("GET", "/v1/strategy-instances/{instance_id}/days/{trade_date}", "strategy", VIEWER, "strategy instances"),
    _r(
        "GET",
        "/v1/strategy-instances/{instance_id}/report.html",
        "strategy",
        VIEWER,
        "strategy instances",
        streamed=True,
    ),
    _r("POST", "/v1/strategy-instances/{instance_id}/pause", "strategy", TRADER, "strategy instances"),
    _r("POST", "/v1/strategy-instances/{instance_id}/resume", "strategy", TRADER, "strategy instances"),
    _r(
        "POST",
        "/v1/strategy-instances/{instance_id}/stop",
        "strategy",
        TRADER,
        "strategy instances",
        optional_body=True,
    ),
    _r("GET", "/v1/strategy-instances/{instance_id}", "strategy", VIEWER, "strategy instances"),
    _r("PATCH", "/v1/strategy-instances/{instance_id}", "strategy", TRADER, "strategy instances", body=True),
    _r("DELETE", "/v1/strategy-instances/{instance_id}", "strategy", TRADER, "strategy instances"),
)

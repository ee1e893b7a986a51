"""The public routes that belong to the services behind the gateway: each one checks the caller's role, mints the
internal token for them and passes the service's answer back as it came (status and JSON body)."""

from __future__ import annotations

import logging
from typing import Annotated, Any
from urllib.parse import quote

import httpx
from fastapi import APIRouter, Body, Path, Query, Request, Response
from fastapi.responses import HTMLResponse, StreamingResponse
from starlette.background import BackgroundTask

from gateway.auth import Admin, CurrentUser, Trader, Viewer
from shared.errors import ServiceError, Unavailable
from shared.internal_auth import INTERNAL_HEADER, mint_internal_token
from shared.request_model import CLIENT_ORDER_ID_PATTERN

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1")

# Ids that reach a service's URL path: no slashes, no dot segments, nothing that needs escaping.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
PASSED_HEADERS = ("retry-after",)

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "not authenticated: `{code: unauthenticated}`"},
    403: {"description": "the role is too low: `{code: forbidden}`"},
    429: {"description": "rate limited: `{code: rate_limited}`, with Retry-After"},
    503: {
        "description": "the service behind, or a dependency of it, cannot answer now; try again later: "
        "`{code: <service>_unavailable}` or the service's own code (`database_unavailable`, `cache_unavailable`, ...)"
    },
}

ORDER_EXAMPLE = {
    "client_order_id": "web-5f1c2a9e",
    "ts_code": "600405.SH",
    "side": "buy",
    "order_type": "limit",
    "qty": 100,
    "price": "10.50",
}
ORDER_BODY = (
    "`{client_order_id, ts_code, side, order_type, qty, price?}` and nothing else (an unknown field is 422 naming it); "
    f"`client_order_id` matches `{CLIENT_ORDER_ID_PATTERN}`, `qty` is a JSON integer, `price` a decimal string like "
    '"10.50" or a JSON number. Passed to risk as sent, which validates it: docs/order-path.md'
)
Id = Annotated[str, Path(pattern=ID_PATTERN)]


async def forward(
    request: Request, user: CurrentUser, service: str, method: str, path: str, *, with_body: bool = False
) -> Response:
    """Call `service` on the user's behalf and relay its status and JSON body unchanged."""
    state = request.app.state
    headers = {INTERNAL_HEADER: mint_internal_token(state.settings.internal_secret, user.principal)}
    kwargs: dict[str, Any] = {"headers": headers}
    if with_body:
        # The raw bytes, not the parsed dict: the service sees exactly what the client sent (e.g. "10.10" stays).
        kwargs["content"] = await request.body()
        headers["Content-Type"] = "application/json"
    target = f"{path}?{request.url.query}" if request.url.query else path
    try:
        upstream = await state.infra.services.client(service).request(method, target, **kwargs)
    except Unavailable as exc:
        if method != "GET" and isinstance(exc.__cause__, httpx.TimeoutException):
            raise Unavailable(
                exc.code,
                f"{exc.message}; the request may or may not have been carried out. Send it again with the same "
                "client_order_id to find out (it is idempotent)",
            ) from exc
        raise
    return relay(service, upstream)


# Answers streamed through as they are (not JSON): bulk market data, and the HTML backtest reports.
STREAMED_TYPES = ("application/vnd.apache.arrow.stream", "application/vnd.apache.parquet", "text/html")
STREAMED_HEADERS = ("content-length", "x-lh-data-version", "content-disposition")


async def forward_stream(
    request: Request, user: CurrentUser, service: str, path: str, *, query: str | None = None
) -> Response:
    """GET a non-JSON answer (Arrow, Parquet, an HTML report) and stream it through without holding it: a whole
    market is hundreds of MB. Errors (JSON) are relayed as `forward` does. The request's query string is passed on
    unless `query` is given."""
    state = request.app.state
    headers = {INTERNAL_HEADER: mint_internal_token(state.settings.internal_secret, user.principal)}
    query = request.url.query if query is None else query
    target = f"{path}?{query}" if query else path
    upstream = await state.infra.services.client(service).open_stream("GET", target, headers=headers)
    content_type = upstream.headers.get("content-type", "")
    if upstream.status_code != 200 or content_type.split(";")[0].strip() not in STREAMED_TYPES:
        await upstream.aread()
        await upstream.aclose()
        return relay(service, upstream)
    passed = {k: v for k, v in upstream.headers.items() if k.lower() in STREAMED_HEADERS}
    return StreamingResponse(
        upstream.aiter_raw(), media_type=content_type, headers=passed, background=BackgroundTask(upstream.aclose)
    )


def relay(service: str, upstream: httpx.Response) -> Response:
    content_type = upstream.headers.get("content-type", "")
    if upstream.status_code == 401:
        # The service refused the gateway's own internal token: the two disagree on LH_INTERNAL_SECRET. Passing the 401
        # on would tell the user their login is bad (and log them out) when the fault is the deployment's.
        log.error("service rejected the internal token", extra={"service": service, "body": upstream.text[:200]})
        raise ServiceError(
            "internal_auth_failed",
            f"the {service} service did not accept the gateway's credentials (check LH_INTERNAL_SECRET)",
            status_code=502,
        )
    if upstream.content and "json" not in content_type:
        log.error(
            "service answered without JSON",
            extra={"service": service, "status": upstream.status_code, "content_type": content_type},
        )
        if upstream.status_code == 503:
            # Not one of ours (every service answers its 503s in JSON with a code): something in front of it.
            raise Unavailable(f"{service}_unavailable", f"the {service} service is unavailable (HTTP 503)")
        raise ServiceError(
            f"{service}_error",
            f"the {service} service answered HTTP {upstream.status_code} without a JSON body",
            status_code=502,
        )
    headers = {k: v for k, v in upstream.headers.items() if k.lower() in PASSED_HEADERS}
    return Response(
        content=upstream.content,
        status_code=upstream.status_code,
        headers=headers,
        media_type=content_type or None,
    )


# --- orders and trades: risk (placing) and execution (reading, cancelling) ------------------------------------


@router.post(
    "/orders",
    tags=["orders"],
    status_code=201,
    responses={
        201: {"description": "approved by risk and accepted by execution: `{decision, order}`"},
        422: {"description": "`{code: order_rejected, message, decision}` or `{code: invalid_request}`"},
        **ERRORS,
    },
)
async def place_order(
    request: Request,
    user: Trader,
    order: Annotated[dict[str, Any], Body(examples=[ORDER_EXAMPLE], description=ORDER_BODY)],
) -> Response:
    """Place an order for your account (trader). It goes through the risk service, which decides and, when it
    approves, hands it to execution. `client_order_id` makes a retry safe: the same id never makes two orders."""
    return await forward(request, user, "risk", "POST", "/v1/orders", with_body=True)


@router.get("/orders", tags=["orders"], responses=ERRORS)
async def list_orders(request: Request, user: Viewer) -> Response:
    """Your orders (all accounts for an admin); query parameters go to the execution service as sent."""
    return await forward(request, user, "execution", "GET", "/v1/orders")


@router.get("/orders/{order_id}", tags=["orders"], responses={404: {"description": "no such order"}, **ERRORS})
async def get_order(request: Request, user: Viewer, order_id: Id) -> Response:
    return await forward(request, user, "execution", "GET", f"/v1/orders/{quote(order_id, safe='')}")


@router.post("/orders/{order_id}/cancel", tags=["orders"], responses={404: {"description": "no such order"}, **ERRORS})
async def cancel_order(request: Request, user: Trader, order_id: Id) -> Response:
    """Ask to cancel an order that is still open (trader)."""
    return await forward(request, user, "execution", "POST", f"/v1/orders/{quote(order_id, safe='')}/cancel")


@router.get("/trades", tags=["orders"], responses=ERRORS)
async def list_trades(request: Request, user: Viewer) -> Response:
    """Your fills; query parameters go to the execution service as sent."""
    return await forward(request, user, "execution", "GET", "/v1/trades")


@router.get("/positions", tags=["orders"], responses=ERRORS)
async def list_positions(request: Request, user: Viewer) -> Response:
    """Your positions: `[{ts_code, qty, sellable_qty}]` (sellable under T+1, less what open sells hold back). An
    admin may name another account with `?account_id=`."""
    return await forward(request, user, "execution", "GET", "/v1/positions")


@router.get("/account", tags=["orders"], responses=ERRORS)
async def get_account(request: Request, user: Viewer) -> Response:
    """Your account's cash in CNY: `{account_id, currency, balance, reserved, available}` (reserved: what open buys
    hold back). An admin may name another account with `?account_id=`."""
    return await forward(request, user, "execution", "GET", "/v1/account")


@router.post(
    "/account/cash",
    tags=["orders"],
    status_code=201,
    responses={
        200: {"description": "the idempotency_key was used already: the same movement"},
        409: {"description": "`{code: idempotency_key_conflict}`: the key was used for another movement"},
        422: {"description": "`{code: insufficient_cash}` for a withdrawal beyond the available cash"},
        **ERRORS,
    },
)
async def move_cash(
    request: Request,
    user: Admin,
    movement: Annotated[
        dict[str, Any],
        Body(
            examples=[
                {"account_id": "acct-alice", "kind": "deposit", "amount": "100000.00", "idempotency_key": "dep-1"}
            ]
        ),
    ],
) -> Response:
    """Deposit or withdraw an account's cash (admin). `idempotency_key` makes a retry safe."""
    return await forward(request, user, "execution", "POST", "/v1/account/cash", with_body=True)


# --- market data -------------------------------------------------------------------------------------------


@router.get("/securities", tags=["market data"], responses=ERRORS)
async def list_securities(request: Request, user: Viewer) -> Response:
    """`[{ts_code, name, exchange, board, is_st, list_date}]`"""
    return await forward(request, user, "data", "GET", "/v1/securities")


@router.get("/bars", tags=["market data"], responses=ERRORS)
async def get_bars(
    request: Request,
    user: Viewer,
    ts_code: Annotated[str, Query(examples=["600405.SH"])],
    start: Annotated[str | None, Query(description="YYYY-MM-DD")] = None,
    end: Annotated[str | None, Query(description="YYYY-MM-DD")] = None,
) -> Response:
    """Daily bars, unadjusted: `{ts_code, bars: [{trade_date, open, high, low, close, pre_close, vol, amount,
    adj_factor}]}` (prices as decimal strings)."""
    return await forward(request, user, "data", "GET", "/v1/bars")


@router.get("/bars/many", tags=["market data"], responses=ERRORS)
async def get_many_bars(
    request: Request,
    user: Viewer,
    ts_codes: Annotated[str, Query(examples=["600405.SH,000212.SZ"])],
    start: Annotated[str | None, Query(description="YYYY-MM-DD")] = None,
    end: Annotated[str | None, Query(description="YYYY-MM-DD")] = None,
) -> Response:
    """Bars of up to 200 symbols: `{start, end, adjust, series: [{ts_code, bars}]}`; `adjust=qfq|hfq` and
    `anchor=` as for /bars."""
    return await forward(request, user, "data", "GET", "/v1/bars/many")


@router.get(
    "/bars/bulk",
    tags=["market data"],
    responses={200: {"description": "an Arrow IPC stream or a Parquet file"}, **ERRORS},
)
async def get_bulk_bars(request: Request, user: Viewer) -> Response:
    """Bars of many symbols (default the whole market) as Arrow (`format=arrow`) or Parquet, streamed through;
    `start`, `end`, `ts_codes`, `adjust`, `anchor`, `fields` (daily_basic columns) as the data service takes them."""
    return await forward_stream(request, user, "data", "/v1/bars/bulk")


@router.get("/cross-section", tags=["market data"], responses=ERRORS)
async def get_cross_section(request: Request, user: Viewer, trade_date: Annotated[str, Query()]) -> Response:
    """Every stock's bar on one trading day, with its limit prices."""
    return await forward(request, user, "data", "GET", "/v1/cross-section")


@router.get("/calendar", tags=["market data"], responses=ERRORS)
async def get_calendar(request: Request, user: Viewer) -> Response:
    """`{exchange, start, end, trading_days}` for `start` and `end`."""
    return await forward(request, user, "data", "GET", "/v1/calendar")


@router.get("/indexes/{ts_code}/constituents", tags=["market data"], responses=ERRORS)
async def get_index_constituents(request: Request, user: Viewer, ts_code: Id) -> Response:
    """The index's newest published weights on or before `trade_date`."""
    return await forward(request, user, "data", "GET", f"/v1/indexes/{quote(ts_code, safe='')}/constituents")


@router.get("/indexes/{ts_code}/bars", tags=["market data"], responses=ERRORS)
async def get_index_bars(request: Request, user: Viewer, ts_code: Id) -> Response:
    return await forward(request, user, "data", "GET", f"/v1/indexes/{quote(ts_code, safe='')}/bars")


@router.get("/quotes/{ts_code}", tags=["market data"], responses={404: {"description": "unknown code"}, **ERRORS})
async def get_quote(request: Request, user: Viewer, ts_code: Id) -> Response:
    """The last close and the next session's price limits."""
    return await forward(request, user, "data", "GET", f"/v1/quotes/{quote(ts_code, safe='')}")


# --- ingestion and data quality (data service) -------------------------------------------------------------


@router.post(
    "/ingest/backfill",
    tags=["ingest"],
    status_code=202,
    responses={202: {"description": "`{run_id}`"}, 409: {"description": "another ingest run is active"}, **ERRORS},
)
async def start_backfill(
    request: Request, user: Admin, body: Annotated[dict[str, Any], Body(description="`{start, end}`")]
) -> Response:
    """Backfill the market by trade date over [start, end] in the background (admin)."""
    return await forward(request, user, "data", "POST", "/v1/ingest/backfill", with_body=True)


@router.post("/ingest/update", tags=["ingest"], status_code=202, responses=ERRORS)
async def start_update(request: Request, user: Admin) -> Response:
    """Fetch the trading days missing since the newest stored one, in the background (admin)."""
    return await forward(request, user, "data", "POST", "/v1/ingest/update")


@router.get("/ingest/runs", tags=["ingest"], responses=ERRORS)
async def list_ingest_runs(request: Request, user: Admin) -> Response:
    return await forward(request, user, "data", "GET", "/v1/ingest/runs")


@router.get("/ingest/runs/{run_id}", tags=["ingest"], responses=ERRORS)
async def get_ingest_run(request: Request, user: Admin, run_id: Id) -> Response:
    """A run's status and progress (percent, rows, rows/s, current day)."""
    return await forward(request, user, "data", "GET", f"/v1/ingest/runs/{quote(run_id, safe='')}")


@router.post("/quality/run", tags=["ingest"], responses=ERRORS)
async def run_quality(
    request: Request, user: Admin, body: Annotated[dict[str, Any], Body(description="`{start, end}`")]
) -> Response:
    """Run the quality checks over [start, end] now and store the report (admin)."""
    return await forward(request, user, "data", "POST", "/v1/quality/run", with_body=True)


@router.get("/quality/reports", tags=["ingest"], responses=ERRORS)
async def list_quality_reports(request: Request, user: Viewer) -> Response:
    return await forward(request, user, "data", "GET", "/v1/quality/reports")


@router.get("/quality/reports/{run_id}", tags=["ingest"], responses=ERRORS)
async def get_quality_report(request: Request, user: Viewer, run_id: Id) -> Response:
    """One report with its findings (each names the ts_code, the date and the rule)."""
    return await forward(request, user, "data", "GET", f"/v1/quality/reports/{quote(run_id, safe='')}")


# --- backtests and strategies ------------------------------------------------------------------------------


@router.post(
    "/backtests",
    tags=["backtests"],
    status_code=202,
    responses={202: {"description": "`{backtest_id, status: queued}`"}, **ERRORS},
)
async def start_backtest(
    request: Request, user: Trader, spec: Annotated[dict[str, Any], Body(description="the backtest service's spec")]
) -> Response:
    """Queue a backtest (trader); follow it with GET /api/v1/backtests/{id} or the `backtest.*` events on /ws."""
    return await forward(request, user, "backtest", "POST", "/v1/backtests", with_body=True)


@router.get("/backtests", tags=["backtests"], responses=ERRORS)
async def list_backtests(request: Request, user: Viewer) -> Response:
    """Newest first, the caller's own (an admin's: all). Query: strategy, status, q (id, name, strategy or universe),
    created_from, created_to, limit, offset."""
    return await forward(request, user, "backtest", "GET", "/v1/backtests")


@router.post(
    "/backtests/{backtest_id}/cancel",
    tags=["backtests"],
    responses={
        404: {"description": "no such backtest"},
        409: {"description": "`{code: backtest_finished}`: it finished already"},
        **ERRORS,
    },
)
async def cancel_backtest(request: Request, user: Trader, backtest_id: Id) -> Response:
    """Cancel a queued or running backtest (its owner or an admin); a running one stops within about a second and
    ends `cancelled` with a `backtest.finished` event."""
    return await forward(request, user, "backtest", "POST", f"/v1/backtests/{quote(backtest_id, safe='')}/cancel")


@router.get(
    "/backtests/{backtest_id}/trades",
    tags=["backtests"],
    responses={404: {"description": "no such backtest"}, **ERRORS},
)
async def get_backtest_trades(request: Request, user: Viewer, backtest_id: Id) -> Response:
    """`{backtest_id, total, limit, offset, trades: [...]}`; query limit (default 500), offset."""
    return await forward(request, user, "backtest", "GET", f"/v1/backtests/{quote(backtest_id, safe='')}/trades")


@router.get(
    "/backtests/{backtest_id}/report",
    tags=["backtests"],
    responses={409: {"description": "the backtest has not succeeded"}, **ERRORS},
)
async def get_backtest_report(request: Request, user: Viewer, backtest_id: Id) -> Response:
    """The report data as JSON (equity vs benchmark, drawdown, monthly returns, rolling Sharpe, exposure, metrics,
    manifest); the trades through `/trades`."""
    return await forward(request, user, "backtest", "GET", f"/v1/backtests/{quote(backtest_id, safe='')}/report")


@router.get(
    "/backtests/{backtest_id}/report.html",
    tags=["backtests"],
    response_class=HTMLResponse,
    responses={409: {"description": "the backtest has not succeeded"}, **ERRORS},
)
async def get_backtest_report_html(request: Request, user: Viewer, backtest_id: Id) -> Response:
    """The report as one self-contained HTML page; `?download=true` to save it."""
    path = f"/v1/backtests/{quote(backtest_id, safe='')}/report.html"
    return await forward_stream(request, user, "backtest", path)


@router.get(
    "/backtests/{backtest_id}", tags=["backtests"], responses={404: {"description": "no such backtest"}, **ERRORS}
)
async def get_backtest(request: Request, user: Viewer, backtest_id: Id) -> Response:
    return await forward(request, user, "backtest", "GET", f"/v1/backtests/{quote(backtest_id, safe='')}")


# --- parameter optimisation (backtest service) -------------------------------------------------------------


@router.post(
    "/optimisations",
    tags=["optimisations"],
    status_code=202,
    responses={202: {"description": "the optimisation, queued"}, **ERRORS},
)
async def start_optimisation(
    request: Request, user: Trader, spec: Annotated[dict[str, Any], Body(description="the optimisation's spec")]
) -> Response:
    """Queue a grid search, genetic algorithm or walk-forward analysis (trader); see docs/optimisation.md."""
    return await forward(request, user, "backtest", "POST", "/v1/optimisations", with_body=True)


@router.get("/optimisations/{optimisation_id}", tags=["optimisations"], responses=ERRORS)
async def get_optimisation(request: Request, user: Viewer, optimisation_id: Id) -> Response:
    return await forward(request, user, "backtest", "GET", f"/v1/optimisations/{quote(optimisation_id, safe='')}")


@router.get("/optimisations/{optimisation_id}/points", tags=["optimisations"], responses=ERRORS)
async def get_optimisation_points(request: Request, user: Viewer, optimisation_id: Id) -> Response:
    """The evaluated points, best first; query limit, offset."""
    path = f"/v1/optimisations/{quote(optimisation_id, safe='')}/points"
    return await forward(request, user, "backtest", "GET", path)


@router.get(
    "/optimisations/{optimisation_id}/report.html",
    tags=["optimisations"],
    response_class=HTMLResponse,
    responses=ERRORS,
)
async def get_optimisation_report(request: Request, user: Viewer, optimisation_id: Id) -> Response:
    """The results as a table and a heatmap of the objective over two parameters, one self-contained page."""
    path = f"/v1/optimisations/{quote(optimisation_id, safe='')}/report.html"
    return await forward_stream(request, user, "backtest", path)


@router.post("/optimisations/{optimisation_id}/cancel", tags=["optimisations"], responses=ERRORS)
async def cancel_optimisation(request: Request, user: Trader, optimisation_id: Id) -> Response:
    path = f"/v1/optimisations/{quote(optimisation_id, safe='')}/cancel"
    return await forward(request, user, "backtest", "POST", path)


@router.get("/strategies", tags=["backtests"], responses=ERRORS)
async def list_strategies(request: Request, user: Viewer) -> Response:
    """`[{name, title, description, parameters (JSON schema)}]`"""
    return await forward(request, user, "strategy", "GET", "/v1/strategies")


@router.get("/indicators", tags=["backtests"], responses=ERRORS)
async def list_indicators(request: Request, user: Viewer) -> Response:
    """`[{name, group, display_name, source, inputs, parameters, outputs, lookback, description}]`: the TA-Lib
    functions and the A-share staples strategies can compute (docs/indicators.md)."""
    return await forward(request, user, "strategy", "GET", "/v1/indicators")


@router.get(
    "/indicators/{name}", tags=["backtests"], responses={404: {"description": "`{code: unknown_indicator}`"}, **ERRORS}
)
async def get_indicator(request: Request, user: Viewer, name: Id) -> Response:
    return await forward(request, user, "strategy", "GET", f"/v1/indicators/{quote(name, safe='')}")

"""Execution's routes: thin wrappers over the order desk. All require the internal token."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from services.execution.amend.store import AmendStore
from services.execution.cash import cny
from services.execution.conditional.api import cancel_all_held
from services.execution.deps import CurrentPrincipal, Desk
from services.execution.desk import AccountCash
from services.execution.schemas import (
    AccountOut,
    AdjustmentOut,
    CancelAllIn,
    CancelAllOut,
    CashMovementIn,
    CashMovementOut,
    EstimateOut,
    FeesOut,
    LedgerEntryOut,
    OrderOut,
    OrderSubmission,
    OrderSubmissionBatch,
    OrderTcaOut,
    PaperSessionIn,
    PaperSessionOut,
    PaperSettingsIn,
    PaperSettingsOut,
    PositionOut,
    RiskSnapshotOut,
    SubmissionBatchOut,
    SubmissionItemOut,
    TcaGroupOut,
    TcaSummaryOut,
    TradeOut,
)
from services.execution.store import StoredOrder
from services.execution.tca import OrderTca
from services.execution.valuation import AccountSummary
from shared.core.domain import FEN, OrderSide, OrderStatus
from shared.core.market import tca as market_tca
from shared.platform.request_model import STRATEGY_INSTANCE_ID_PATTERN, TradeDate

router = APIRouter(prefix="/v1", tags=["execution"])


@router.post(
    "/orders",
    status_code=201,
    response_model=OrderOut,
    responses={200: {"description": "the order existed already (repeated client_order_id)"}},
)
async def submit_order(
    submission: OrderSubmission,
    principal: CurrentPrincipal,
    desk: Desk,
) -> JSONResponse:
    result = await desk.submit(submission, principal)
    body = OrderOut.of(result.stored).model_dump(mode="json")
    return JSONResponse(body, status_code=201 if result.created else 200)


@router.post("/order-submissions", response_model=SubmissionBatchOut)
async def submit_orders(batch: OrderSubmissionBatch, principal: CurrentPrincipal, desk: Desk) -> JSONResponse:
    """Risk's approved orders of one batch, each submitted as by `POST /v1/orders` (its answer in `items`, in the
    order given); one request instead of one per order. Those after an item answered 5xx are not tried (503
    `not_sent`)."""
    items = await desk.submit_many(batch.orders, principal)
    out = SubmissionBatchOut(
        items=[
            SubmissionItemOut(
                index=i.index, status_code=i.status_code, code=i.code, message=i.message, details=i.details,
                order=None if i.stored is None else OrderOut.of(i.stored),
            )
            for i in items
        ]
    )  # fmt: skip
    return JSONResponse(out.model_dump(mode="json"))


InstanceFilter = Annotated[
    str | None,
    Query(pattern=STRATEGY_INSTANCE_ID_PATTERN, description="only the orders (trades) of this strategy instance"),
]
AccountFilter = Annotated[
    str | None,
    Query(min_length=1, max_length=64, description="only this account's (services and admins; people see their own)"),
]
OldestFirst = Annotated[bool, Query(description="in creation order, oldest first (default: newest first)")]


@router.get(
    "/orders",
    response_model=list[OrderOut],
    responses={
        403: {"description": "`forbidden`: another account named by a person"},
        404: {"description": "`order_not_found`: no order `after`"},
    },
)
async def list_orders(
    principal: CurrentPrincipal,
    desk: Desk,
    request: Request,
    status: OrderStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    strategy_instance_id: InstanceFilter = None,
    account_id: AccountFilter = None,
    oldest_first: OldestFirst = False,
    after: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=32,
            description="an order_id: the orders created after it, oldest first (page through all of them with the "
            "last order_id of each page)",
        ),
    ] = None,
) -> list[OrderOut]:
    """The caller's orders (services and admins: everyone's), newest first; `oldest_first` or `after` lists them
    in creation order, page by page."""
    listed = await desk.list_orders(
        principal,
        status,
        limit,
        strategy_instance_id=strategy_instance_id,
        account_id=account_id,
        oldest_first=oldest_first,
        after=after,
    )
    return await _linked(request, listed)


async def _linked(request: Request, listed: list[StoredOrder]) -> list[OrderOut]:
    """The orders with their amends' links: `replaced_by` on an amended order, `replaces_order_id` on its
    replacement (one read for the page)."""
    amends: AmendStore = request.app.state.amend_store
    replaced_by, replaces = await amends.links([o.order.order_id for o in listed])
    return [
        OrderOut.of(o, replaced_by=replaced_by.get(o.order.order_id), replaces_order_id=replaces.get(o.order.order_id))
        for o in listed
    ]


@router.get(
    "/orders/estimate",
    response_model=EstimateOut,
    responses={
        403: {"description": "`forbidden`: another account named by a person"},
        404: {"description": "`account_not_found`: an account named that was never seen"},
        422: {
            "description": "`invalid_request` (a parameter, named in `details`); `unknown_security`; for a buy "
            "without a price: `price_cap_unknown` or `limits_unknown` (no limit-up price to reckon it at)"
        },
        503: {"description": "`market_data_unavailable`, `calendar_unavailable`"},
    },
)
async def estimate_order(
    principal: CurrentPrincipal,
    desk: Desk,
    ts_code: Annotated[str, Query(pattern=r"^\d{6}\.(SH|SZ|BJ)$", description="e.g. 600000.SH")],
    side: OrderSide,
    price: Annotated[
        Decimal | None,
        Query(gt=0, max_digits=12, decimal_places=2, description="the limit price; none for a market order"),
    ] = None,
    qty: Annotated[int | None, Query(ge=1, le=100_000_000, description="shares")] = None,
    account_id: AccountFilter = None,
) -> EstimateOut:
    """An order's figures before it is placed, for the order ticket: the amount (price x qty), the fees (commission,
    transfer fee, stamp duty on a sell: the same rule as the trades', on the date of the session an order placed now
    is for) and the most shares it may take (a buy: what the available cash pays for, fees included, on the code's
    lot; a sell: the sellable shares). A buy without a price is reckoned at the limit-up price (what a market buy
    reserves). The caller's own account; services and admins may name one. Nothing is placed or reserved."""
    e = await desk.estimate(principal, account_id, ts_code, side, price, qty)
    fees = e.fees
    return EstimateOut(
        account_id=e.account_id,
        ts_code=e.ts_code,
        side=e.side,
        trade_date=e.trade_date,
        price=None if e.price is None else str(e.price.quantize(FEN)),
        price_basis=e.price_basis,  # type: ignore[arg-type]
        qty=e.qty,
        amount=None if e.amount is None else str(e.amount.quantize(FEN)),
        fees=None
        if fees is None
        else FeesOut(
            commission=str(fees.commission),
            transfer_fee=str(fees.transfer_fee),
            stamp_duty=str(fees.stamp_duty),
            total=str(fees.total),
        ),
        max_qty=e.max_qty,
        available=cny(e.available_fen),
    )


@router.get("/orders/{order_id}", response_model=OrderOut, responses={404: {"description": "`order_not_found`"}})
async def get_order(order_id: str, principal: CurrentPrincipal, desk: Desk, request: Request) -> OrderOut:
    """An order; an amended one names its replacement (`replaced_by`), a replacement the order it replaces."""
    [out] = await _linked(request, [await desk.get(order_id, principal)])
    return out


@router.post(
    "/orders/cancel-all",
    response_model=CancelAllOut,
    responses={
        403: {"description": "`forbidden`: a viewer, or a trader naming another account"},
        422: {"description": "`invalid_request`: an unknown field, a malformed filter; a service naming no account"},
    },
)
async def cancel_all(body: CancelAllIn, principal: CurrentPrincipal, desk: Desk, request: Request) -> dict[str, Any]:
    """Cancel every open order of the caller's account (an admin's or a service's: `account_id`'s) matching the
    filters (`strategy_instance_id`, `ts_code`; none: all), each through the single cancel's path, and first its
    waiting and armed conditional orders matching (`include_conditional`, default true), so that none triggers a
    new order meanwhile. One that cannot be cancelled is listed in `failed` with the single cancel's code; the
    others are cancelled all the same (docs/order-management.md)."""
    account = desk.cancel_all_account(principal, body.account_id)
    conditional: tuple[list[str], list[dict[str, str]]] = ([], [])
    if body.include_conditional and body.strategy_instance_id is None:
        conditional = await cancel_all_held(request, principal, account, body.ts_code)
    done = await desk.cancel_all(
        principal, account, strategy_instance_id=body.strategy_instance_id, ts_code=body.ts_code
    )
    return {
        "account_id": account,
        "requested": done.requested + len(conditional[0]) + len(conditional[1]),
        "cancelled": done.cancelled,
        "cancel_requested": done.cancel_requested,
        "conditional_cancelled": conditional[0],
        "failed": [*conditional[1], *done.failed],
    }


@router.post(
    "/orders/{order_id}/cancel",
    response_model=OrderOut,
    responses={
        202: {
            "description": "a QMT account: the cancel was asked of the broker, the order is still open "
            "(`cancel_requested`); its outcome comes with the broker's report (`order.cancelled`, or fills)",
            "model": OrderOut,
        },
        404: {"description": "`order_not_found`"},
        409: {"description": "`order_not_cancellable`"},
        503: {"description": "`broker_unavailable`: nothing was cancelled"},
    },
)
async def cancel_order(order_id: str, principal: CurrentPrincipal, desk: Desk) -> JSONResponse:
    """Cancel what rests of an order. 200: the order as the cancel left it (`cancelled`). 202: a broker that cancels
    asynchronously (QMT) took the request; the order is still open, with `cancel_requested` true."""
    stored, requested = await desk.cancel_order(order_id, principal)
    body = OrderOut.of(stored, cancel_requested=requested).model_dump(mode="json")
    return JSONResponse(body, status_code=202 if requested else 200)


@router.get(
    "/trades",
    response_model=list[TradeOut],
    responses={
        403: {"description": "`forbidden`: another account named by a person"},
        404: {"description": "`trade_not_found`: no trade `after`"},
    },
)
async def list_trades(
    principal: CurrentPrincipal,
    desk: Desk,
    order_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    strategy_instance_id: InstanceFilter = None,
    account_id: AccountFilter = None,
    oldest_first: OldestFirst = False,
    after: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=64,
            description="a trade_id: the trades recorded after it, oldest first (page through all of them with the "
            "last trade_id of each page)",
        ),
    ] = None,
    ts_code: Annotated[
        str | None, Query(pattern=r"^\d{6}\.(SH|SZ|BJ)$", description="only this security's trades (e.g. 600000.SH)")
    ] = None,
) -> list[TradeOut]:
    """The caller's trades (services and admins: everyone's), newest first by trade time; `oldest_first` or
    `after` lists them in the order they were recorded, page by page."""
    listed = await desk.list_trades(
        principal,
        order_id,
        limit,
        strategy_instance_id=strategy_instance_id,
        account_id=account_id,
        oldest_first=oldest_first,
        after=after,
        ts_code=ts_code,
    )
    return [TradeOut.of(t) for t in listed]


@router.get("/positions", response_model=list[PositionOut], responses={403: {"description": "`forbidden`"}})
async def list_positions(
    principal: CurrentPrincipal,
    desk: Desk,
    account_id: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
) -> list[PositionOut]:
    """The caller's positions; services and admins name the account with `account_id`. Each with its shares (held,
    sellable, frozen by open sells, bought and sold today), its average cost, its value at the latest price (the
    live quote when the feed has one, else the last close: `price_source`, `price_as_of`) and its P&L (realised,
    unrealised, today). The prices are read in one request; without any, the values are null."""
    positions, _ = await desk.valued_positions(principal, account_id)
    return [PositionOut.of(p) for p in positions]


@router.get("/positions/adjustments", response_model=list[AdjustmentOut])
async def list_adjustments(
    principal: CurrentPrincipal,
    desk: Desk,
    account_id: AccountFilter = None,
    strategy_instance_id: Annotated[
        str | None, Query(pattern=STRATEGY_INSTANCE_ID_PATTERN, description="only this strategy instance's part")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
) -> list[AdjustmentOut]:
    """The corporate actions (bonus shares, splits, dividends as the adj_factor shows them) applied to the caller's
    positions on their ex-dates, oldest first; services and admins name the account with `account_id` (or see
    everyone's)."""
    listed = await desk.adjustments(principal, account_id, strategy_instance_id, limit)
    return [AdjustmentOut.of(a) for a in listed]


def _account_out(account: AccountCash, summary: AccountSummary | None = None) -> AccountOut:
    c = account.cash
    out = AccountOut(
        account_id=account.account_id,
        balance=cny(c.balance_fen),
        reserved=cny(c.reserved_fen),
        available=cny(c.available_fen),
    )
    if summary is None:
        return out
    out.realised_pnl = cny(summary.realised_fen)
    out.unpriced = summary.unpriced
    mv, unrealised, today = summary.market_value_fen, summary.unrealised_fen, summary.pnl_today_fen
    if mv is not None and unrealised is not None and today is not None:
        out.market_value = cny(mv)
        out.total_assets = cny(c.balance_fen + mv)
        out.unrealised_pnl = cny(unrealised)
        out.pnl_total = cny(summary.realised_fen + unrealised)
        out.pnl_today = cny(today)
    return out


@router.get("/account", response_model=AccountOut, responses={404: {"description": "`account_not_found`"}})
async def get_account(
    principal: CurrentPrincipal,
    desk: Desk,
    account_id: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
) -> AccountOut:
    """The caller's cash and summary (market value, total assets, P&L realised, unrealised, in total and today);
    services and admins name the account with `account_id`. An account seen for the first time starts with the
    paper opening cash (LH_PAPER_OPENING_CASH, shared settings)."""
    account = await desk.account(principal, account_id)
    return _account_out(account, await desk.account_valuation(account.account_id))


@router.post(
    "/account/cash",
    status_code=201,
    response_model=CashMovementOut,
    responses={200: {"description": "the idempotency_key was used already: the same movement"}},
)
async def move_cash(
    movement: CashMovementIn,
    principal: CurrentPrincipal,
    desk: Desk,
) -> JSONResponse:
    """Deposit or withdraw cash (admins and services). A withdrawal may not exceed the available cash."""
    result = await desk.move_cash(
        principal, movement.account_id, movement.kind, movement.amount, movement.idempotency_key
    )
    e = result.entry
    body = CashMovementOut(
        entry=LedgerEntryOut(
            entry_id=e.entry_id,
            account_id=e.account_id,
            kind=e.kind,
            amount=cny(e.amount_fen),
            idempotency_key=e.idempotency_key,
            trade_id=e.trade_id,
            created_by=e.created_by,
            created_at=e.created_at,
        ),
        account=_account_out(result.account),
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=201 if result.created else 200)


@router.get(
    "/risk-snapshot",
    response_model=RiskSnapshotOut,
    responses={
        403: {"description": "`forbidden`: the risk service only"},
        404: {"description": "`account_not_found`"},
        503: {"description": "`calendar_unavailable`: the sessions of the recent buys cannot be told"},
    },
)
async def get_risk_snapshot(
    principal: CurrentPrincipal,
    desk: Desk,
    account_id: Annotated[str, Query(min_length=1, max_length=64)],
) -> RiskSnapshotOut:
    """The account as risk's hot book is seeded from, read in one transaction: its balance (the ledger's sum), its
    open orders and those that became final in the last 7 days, its shares (the last 7 days' buys by the session
    they count in for T+1, the rest as `base`) and the ids of the trades, adjustments and cash movements of the last
    7 days it counts (so that their events, arriving after the seed, are not counted twice). The risk service only."""
    return await desk.risk_snapshot(principal, account_id)


@router.get(
    "/account/paper-settings",
    response_model=PaperSettingsOut,
    responses={409: {"description": "`not_paper`: the account trades through a real broker (QMT)"}},
)
async def get_paper_settings(
    principal: CurrentPrincipal,
    desk: Desk,
    account_id: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
) -> PaperSettingsOut:
    """The caller's paper account settings (services and admins name the account): how an order placed while the
    market is closed is treated on the real clock, `rest` until its session (the default) or `refuse`."""
    account, closed_market = await desk.paper_settings(principal, account_id)
    return PaperSettingsOut(account_id=account, closed_market=closed_market)  # type: ignore[arg-type]


@router.post(
    "/account/paper-settings",
    response_model=PaperSettingsOut,
    responses={403: {"description": "`forbidden`: admins and services"}, 409: {"description": "`not_paper`"}},
)
async def put_paper_settings(body: PaperSettingsIn, principal: CurrentPrincipal, desk: Desk) -> PaperSettingsOut:
    """Set a paper account's settings (admins and services)."""
    account, closed_market = await desk.set_paper_settings(principal, body.account_id, body.closed_market)
    return PaperSettingsOut(account_id=account, closed_market=closed_market)  # type: ignore[arg-type]


@router.post(
    "/paper/session",
    response_model=PaperSessionOut,
    responses={
        403: {"description": "`forbidden`: services only"},
        409: {"description": "`not_replay` (the real clock); `session_in_the_past`"},
        422: {"description": "`not_a_trading_day`"},
        503: {"description": "`calendar_unavailable`"},
    },
)
async def set_paper_session(
    body: PaperSessionIn, principal: CurrentPrincipal, desk: Desk, request: Request
) -> PaperSessionOut:
    """Move the replay clock (LH_MARKET_CLOCK=replay, standalone mode) to a trading day: the day orders of the sessions
    before it expire, and paper orders waiting for a suspended symbol are matched on it. Services only (the strategy
    service's replayer)."""
    clock = request.app.state.infra.clock
    day = await desk.replay_session(principal, clock, body.session, rewind=body.rewind)
    return PaperSessionOut(session=day, now=clock.now())


TcaDay = Annotated[TradeDate | None, Query(description="YYYY-MM-DD: orders created from this day (Asia/Shanghai)")]
TcaEnd = Annotated[TradeDate | None, Query(description="YYYY-MM-DD: orders created up to this day, included")]
SUMMARY_ROWS = 5000  # filled orders one summary reads at most (`truncated` says when more matched)


@router.get(
    "/tca/orders",
    response_model=list[OrderTcaOut],
    responses={
        403: {"description": "`forbidden`: another account named by a person"},
        422: {"description": "`invalid_range` (start after end), a malformed parameter"},
    },
)
async def tca_orders(
    principal: CurrentPrincipal,
    desk: Desk,
    start: TcaDay = None,
    end: TcaEnd = None,
    strategy_instance_id: InstanceFilter = None,
    account_id: AccountFilter = None,
    order_id: Annotated[str | None, Query(min_length=1, max_length=32, description="one order only")] = None,
    filled_only: Annotated[bool, Query(description="only orders with fills")] = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[OrderTcaOut]:
    """Each order's transaction cost analysis (docs/tca.md), oldest first: its arrival price (recorded when it was
    created: the live quote, else the last close), its fills' VWAP and fees, and its slippage against the arrival
    price and against the market's VWAP over its life (the data service's 1-minute bars), in CNY and in bps."""
    analysed = await desk.tca_orders(
        principal, account_id=account_id, strategy_instance_id=strategy_instance_id, start=start, end=end,
        order_id=order_id, filled_only=filled_only, limit=limit,
    )  # fmt: skip
    return [OrderTcaOut.of(t) for t in analysed]


@router.get(
    "/tca/summary",
    response_model=TcaSummaryOut,
    responses={
        403: {"description": "`forbidden`: another account named by a person"},
        422: {"description": "`invalid_range` (start after end), `by` not day or instance"},
    },
)
async def tca_summary(
    principal: CurrentPrincipal,
    desk: Desk,
    by: Annotated[Literal["day", "instance"], Query(description="group by the orders' day or strategy instance")],
    start: TcaDay = None,
    end: TcaEnd = None,
    strategy_instance_id: InstanceFilter = None,
    account_id: AccountFilter = None,
) -> TcaSummaryOut:
    """The filled orders' costs by day or by strategy instance, and over all of them: fills, fees and slippage
    against arrival and against the market's interval VWAP, added in fen and divided once (notional-weighted bps,
    2 places half-up)."""
    analysed = await desk.tca_orders(
        principal, account_id=account_id, strategy_instance_id=strategy_instance_id, start=start, end=end,
        filled_only=True, limit=SUMMARY_ROWS + 1,
    )  # fmt: skip
    truncated = len(analysed) > SUMMARY_ROWS
    analysed = analysed[:SUMMARY_ROWS]

    def key(t: OrderTca) -> str:
        return t.day.isoformat() if by == "day" else (t.row.strategy_instance_id or "")

    groups = market_tca.summarise((key(t), t.cost) for t in analysed)
    total = market_tca.CostSummary()
    for t in analysed:
        total = total.add(t.cost)
    return TcaSummaryOut(
        by=by,
        start=start,
        end=end,
        truncated=truncated,
        groups=[TcaGroupOut.of(k or None, g) for k, g in groups.items()],
        total=TcaGroupOut.of(None, total),
    )

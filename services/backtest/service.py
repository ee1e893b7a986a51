"""What the backtest API does, without HTTP: accept a request (strategy and parameters checked, or each sleeve's for
several strategies side by side; row stored, job queued), and read backtests back for the principal allowed to
see them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import pandas as pd
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from services.backtest import tca as backtest_tca
from services.backtest.events import JOB_QUEUE, backtest_finished
from services.backtest.runner import PORTFOLIO_STRATEGY
from services.backtest.schemas import (
    BacktestBrief,
    BacktestDetail,
    BacktestOrderTca,
    BacktestRequest,
    BacktestTca,
    EquityPoint,
    TcaGroup,
    TradeRow,
    TradesPage,
    Universe,
)
from services.backtest.store import BacktestKind, BacktestRecord, BacktestStatus, BacktestStore
from shared.core.domain import from_fen
from shared.core.market.tca import CostSummary, cny_of_fen
from shared.platform.bus import EventBus
from shared.platform.errors import NotFound, ServiceError, Unavailable
from shared.platform.internal_auth import Principal
from shared.platform.observability import new_id
from shared.platform.outbox import OutboxRelay
from shared.platform.roles import Role
from shared.research.engine import BacktestConfig
from shared.research.engine.portfolio import PortfolioError, Sleeve, resolve_sleeves, split_capital
from shared.research.report import ReportData, build_report
from shared.research.strategy import Strategy

log = logging.getLogger(__name__)

# The longest run of calendar days without a trading day in the A-share calendar is the Spring Festival week with
# its weekends (about 10 days): a range whose first trading day comes later than this after its start begins before
# the stored data does.
MAX_CLOSED_DAYS = 14


@dataclass(frozen=True)
class StoredDays:
    """What the data service holds for a range: its trading days and the last day whose bars are complete."""

    trading_days: list[date]
    complete_through: date | None


# Asks the data service for the trading days of [start, end]; None when it cannot say (unavailable, an error).
DataRange = Callable[[date, date], Awaitable[StoredDays | None]]


class BacktestService:
    def __init__(
        self,
        store: BacktestStore,
        bus: EventBus,
        strategies: Mapping[str, type[Strategy]],
        relay: OutboxRelay,
        data_range: DataRange | None = None,
    ) -> None:
        self.store = store
        self.bus = bus
        self.strategies = strategies
        self.relay = relay
        self.data_range = data_range

    async def _check_data_range(self, start: date, end: date) -> None:
        """Refuse (422 `outside_data_range`, the message starting with the field) a run outside the stored data: no
        trading day in it, a last trading day (on or before `end`) after the last complete day, or a start before the
        first stored day. An end on a weekend or holiday after the last complete day is accepted when no trading day
        lies between; an end more than MAX_CLOSED_DAYS after the last complete day is refused even where the stored
        calendar does not reach it. When the data service cannot say, the run is accepted and its worker reports
        missing bars as it does today."""
        if self.data_range is None:
            return
        stored = await self.data_range(start, end)
        if stored is None:
            return
        if not stored.trading_days:
            raise ServiceError(
                "outside_data_range", f"start: no trading day is stored between {start} and {end}", status_code=422
            )
        complete = stored.complete_through
        last = stored.trading_days[-1]  # the calendar's days are those of [start, end]: the last is on or before end
        if complete is not None and (last > complete or end - complete > timedelta(days=MAX_CLOSED_DAYS)):
            raise ServiceError(
                "outside_data_range",
                f"end: {end} is after {complete}, the last day whose data is complete"
                + (f" (the trading day {last} is not complete)" if last > complete else ""),
                status_code=422,
            )
        first = stored.trading_days[0]
        if first - start > timedelta(days=MAX_CLOSED_DAYS):
            raise ServiceError(
                "outside_data_range",
                f"start: {start} is before the stored data, which begins on {first}",
                status_code=422,
            )

    def _strategy(self, name: str, field: str) -> type[Strategy]:
        strategy = self.strategies.get(name)
        if strategy is None:
            raise ServiceError(
                "unknown_strategy",
                f"{field}: there is no strategy named {name!r} (known: {', '.join(sorted(self.strategies))})",
                status_code=422,
            )
        return strategy

    def _sleeves(self, request: BacktestRequest) -> dict[str, Any]:
        """The stored params of a run with several strategies: {"sleeves": [{label, strategy, params, weight}]}, each
        sleeve's params validated against its strategy (422 naming `sleeves.1.params.fast`), the weights and labels
        as `shared.research.engine.portfolio` will take them (422 naming `sleeves.0.weight`, `sleeves`,
        `sleeves.2.label`)."""
        assert request.sleeves is not None
        both = sorted(request.model_fields_set & {"strategy", "params"})
        if both:
            raise RequestValidationError(
                [
                    {
                        "loc": ("body", "sleeves"),
                        "msg": f"give either sleeves or strategy and params, not both (got {' and '.join(both)} too)",
                        "type": "value_error",
                    }
                ]
            )
        sleeves = []
        for i, spec in enumerate(request.sleeves):
            strategy = self._strategy(spec.strategy, f"sleeves.{i}.strategy")
            try:
                params = strategy.parse_params(spec.params)
            except ValidationError as exc:
                raise _field_errors(exc, "sleeves", i, "params") from exc
            sleeves.append((strategy, params, Sleeve(strategy(params), weight=spec.weight, label=spec.label)))
        try:
            resolved = resolve_sleeves([s for _, _, s in sleeves])
            split_capital(int(request.initial_cash * 100), [w for _, w in resolved])
        except PortfolioError as exc:
            raise RequestValidationError(
                [{"loc": ("body", *exc.loc), "msg": exc.reason, "type": "value_error"}]
            ) from exc
        return {
            "sleeves": [
                {
                    "label": label,
                    "strategy": strategy.name,
                    "params": params.model_dump(mode="json"),
                    "weight": None if sleeve.weight is None else str(sleeve.weight),
                }
                for (strategy, params, sleeve), (label, _) in zip(sleeves, resolved, strict=True)
            ]
        }

    async def submit(self, principal: Principal, request: BacktestRequest) -> BacktestRecord:
        sleeve_strategies: list[str] = []
        kind = BacktestKind.SINGLE
        if request.sleeves is not None:
            kind = BacktestKind.PORTFOLIO
            strategy_name, params = PORTFOLIO_STRATEGY, self._sleeves(request)
            sleeve_strategies = [sleeve["strategy"] for sleeve in params["sleeves"]]
        else:
            strategy = self._strategy(request.strategy, "strategy")
            try:
                parsed = strategy.parse_params(request.params)
            except ValidationError as exc:
                # Reported like any other request field, e.g. "params.cash_reserve: Input should be less than 1".
                raise _field_errors(exc, "params") from exc
            strategy_name, params = strategy.name, parsed.model_dump(mode="json")
        universe = _universe(request)
        costs = request.costs.config_fields()
        try:
            BacktestConfig(initial_cash=request.initial_cash, start=request.start, end=request.end, **costs)
        except ValidationError as exc:
            raise _field_errors(exc, "costs") from exc
        await self._check_data_range(request.start, request.end)
        backtest_id = new_id()
        record = await self.store.create(
            backtest_id=backtest_id,
            owner=principal.subject,
            strategy=strategy_name,
            params=params,
            ts_codes=universe.ts_codes or [],
            start=request.start,
            end=request.end,
            initial_cash=request.initial_cash,
            name=request.name,
            universe={**universe.model_dump(mode="json", exclude_none=True), "label": universe.label()},
            config={"costs": costs, "benchmark_required": request.benchmark_required},
            benchmark=request.benchmark,
            sleeve_strategies=sleeve_strategies,
            kind=kind,
        )
        try:
            await self.bus.enqueue(JOB_QUEUE, {"backtest_id": backtest_id}, message_id=backtest_id)
        except Exception as exc:
            log.exception("could not queue a backtest; recording it as failed", extra={"backtest_id": backtest_id})
            reason = f"queue_unavailable: the job could not be queued ({type(exc).__name__}: {exc})"
            event = backtest_finished(backtest_id, BacktestStatus.FAILED.value, owner=principal.subject, error=reason)
            await self.store.finish(
                backtest_id, status=BacktestStatus.FAILED, from_status=BacktestStatus.QUEUED, error=reason, event=event
            )
            self.relay.notify()
            raise Unavailable(
                "queue_unavailable",
                f"the backtest queue is unavailable; backtest {backtest_id} was recorded as failed, try again later",
            ) from exc
        return record

    async def cancel(self, principal: Principal, backtest_id: str) -> BacktestBrief:
        """A queued backtest is cancelled at once; a running one is flagged, and its worker stops it at the next
        progress report (the status turns `cancelled` then); a finished one is a 409."""
        record = await self.store.get(backtest_id)
        if record is None or not self._visible(principal, record):
            raise NotFound("backtest_not_found", f"there is no backtest {backtest_id!r}")
        if record.owner != principal.subject and not principal.at_least(Role.ADMIN):
            raise ServiceError("forbidden", "only the owner or an admin may cancel a backtest", status_code=403)
        event = backtest_finished(backtest_id, BacktestStatus.CANCELLED.value, owner=record.owner)
        if await self.store.cancel_queued(backtest_id, event):
            self.relay.notify()
        elif not await self.store.request_cancel(backtest_id):
            current = await self.store.get(backtest_id)
            status = current.status.value if current is not None else "gone"
            raise ServiceError(
                "backtest_finished", f"backtest {backtest_id} is {status} already; only a queued or running one can "
                "be cancelled", status_code=409,
            )  # fmt: skip
        updated = await self.store.get(backtest_id)
        assert updated is not None
        return brief(updated)

    def _visible(self, principal: Principal, record: BacktestRecord | None) -> bool:
        return record is not None and (principal.acts_for_everyone or record.owner == principal.subject)

    async def get(self, principal: Principal, backtest_id: str) -> BacktestDetail:
        record = await self.store.get(backtest_id)
        if record is None or not self._visible(principal, record):
            raise NotFound("backtest_not_found", f"there is no backtest {backtest_id!r}")
        curve = await self.store.equity_curve(backtest_id)
        return BacktestDetail(
            **brief(record).model_dump(),
            equity_curve=[EquityPoint(trade_date=p.trade_date, equity=p.equity) for p in curve],
        )

    async def list(
        self,
        principal: Principal,
        *,
        limit: int = 50,
        offset: int = 0,
        owner: str | None = None,
        strategy: str | None = None,
        status: BacktestStatus | None = None,
        q: str | None = None,
        created_from: datetime | None = None,
        created_to: datetime | None = None,
    ) -> list[BacktestBrief]:
        if not principal.acts_for_everyone:
            if owner is not None and owner != principal.subject:
                return []  # another user's runs are not the caller's to see: none match
            owner = principal.subject
        records = await self.store.search(
            owner=owner,
            strategy=strategy,
            status=status,
            q=q,
            created_from=created_from,
            created_to=created_to,
            limit=limit,
            offset=offset,
        )
        return [brief(r) for r in records]

    async def trades(self, principal: Principal, backtest_id: str, *, limit: int, offset: int) -> TradesPage:
        record = await self.store.get(backtest_id)
        if record is None or not self._visible(principal, record):
            raise NotFound("backtest_not_found", f"there is no backtest {backtest_id!r}")
        frame = await self.store.trades_frame(backtest_id)
        if frame is None:
            if record.status is BacktestStatus.SUCCEEDED:
                raise NotFound("no_trades_stored", f"backtest {backtest_id} finished before trades were stored")
            raise ServiceError(
                "backtest_not_succeeded", f"backtest {backtest_id} is {record.status.value}: it has no trades",
                status_code=409,
            )  # fmt: skip
        page = frame.iloc[offset : offset + limit]
        rows = [
            TradeRow.model_validate({k: (None if v is None or v != v else v) for k, v in row.items()})
            for row in page.to_dict("records")
        ]
        return TradesPage(backtest_id=backtest_id, total=len(frame), limit=limit, offset=offset, trades=rows)

    async def tca(self, principal: Principal, backtest_id: str, *, limit: int, offset: int) -> BacktestTca:
        """The backtest's transaction cost analysis (services/backtest/tca.py): its orders against their decisions'
        closes, by the decision's day and in all."""
        record = await self.store.get(backtest_id)
        if record is None or not self._visible(principal, record):
            raise NotFound("backtest_not_found", f"there is no backtest {backtest_id!r}")
        if record.status is not BacktestStatus.SUCCEEDED:
            raise ServiceError(
                "backtest_not_succeeded", f"backtest {backtest_id} is {record.status.value}: it has no trades",
                status_code=409,
            )  # fmt: skip
        trades = await self.store.trades_frame(backtest_id)
        decisions = await self.store.decisions_frame(backtest_id)
        if trades is None or decisions is None:
            raise NotFound(
                "no_tca_data", f"backtest {backtest_id} finished before its decisions were stored: run it again"
            )
        costs = await asyncio.to_thread(backtest_tca.order_costs, trades, decisions)
        page = costs[offset : offset + limit]
        return BacktestTca(
            backtest_id=backtest_id, total_orders=len(costs), limit=limit, offset=offset,
            orders=[_order_tca(c) for c in page],
            by_day=[_tca_group(k, g) for k, g in backtest_tca.by_day(costs).items()],
            total=_tca_group(None, backtest_tca.total(costs)),
        )  # fmt: skip

    async def report(self, principal: Principal, backtest_id: str) -> ReportData:
        """The report of a succeeded backtest, built from its stored artifacts (shared.research.report)."""
        record = await self.store.get(backtest_id)
        if record is None or not self._visible(principal, record):
            raise NotFound("backtest_not_found", f"there is no backtest {backtest_id!r}")
        if record.status is not BacktestStatus.SUCCEEDED or record.summary is None:
            raise ServiceError(
                "backtest_not_succeeded",
                f"backtest {backtest_id} is {record.status.value}: only a succeeded backtest has a report",
                status_code=409,
            )
        daily = await self.store.daily_frame(backtest_id)
        if daily is None:
            raise NotFound("no_report_data", f"backtest {backtest_id} finished before report data was stored")
        trades = await self.store.trades_frame(backtest_id)
        summary = dict(record.summary)
        title = f"{record.name or record.strategy} {record.start.isoformat()} to {record.end.isoformat()}"
        return await asyncio.to_thread(_build_report, daily, trades, summary, title)


def _tca_group(key: str | None, g: CostSummary) -> TcaGroup:
    return TcaGroup(
        key=key, orders=g.orders, filled_amount=from_fen(g.filled_amount_fen), fees=from_fen(g.fees_fen),
        fees_bps=g.fees_bps, arrival_orders=g.arrival_orders,
        slippage_vs_arrival=cny_of_fen(g.arrival_cost_fen, 2), slippage_vs_arrival_bps=g.arrival_bps,
    )  # fmt: skip


def _order_tca(c: backtest_tca.BacktestOrderCost) -> BacktestOrderTca:
    cost, arrival, vwap = c.cost, c.cost.arrival, c.cost.fill_vwap_fen
    assert vwap is not None  # a traded order
    return BacktestOrderTca(
        sleeve=c.sleeve, order_id=c.order_id, ts_code=c.ts_code, side=c.side, decision_date=c.decision_date,
        arrival_price=c.decision_close, first_fill_date=c.first_fill, last_fill_date=c.last_fill,
        filled_qty=cost.filled_qty, filled_amount=from_fen(cost.filled_amount_fen), fill_vwap=cny_of_fen(vwap),
        fees=from_fen(cost.fees_fen), fees_bps=cost.fees_bps,
        slippage_vs_arrival=None if arrival is None else cny_of_fen(arrival[0], 2),
        slippage_vs_arrival_bps=cost.arrival_bps,
    )  # fmt: skip


def _build_report(daily: pd.DataFrame, trades: pd.DataFrame | None, summary: dict[str, Any], title: str) -> ReportData:
    # The stored daily frame keeps money in fen; the report reads CNY.
    daily = daily.copy()
    for column in ("cash", "market_value", "equity"):
        daily[column] = daily[column].astype("int64") / 100
    if "benchmark" in daily and daily["benchmark"].isna().all():
        daily = daily.drop(columns=["benchmark"])
    manifest = summary.get("manifest") or {}
    config = manifest.get("config") or {}
    sleeves = None
    if isinstance(summary.get("sleeves"), list):
        # a run with several strategies: daily's equity_<n> is the n-th sleeve's equity in fen
        sleeves = [
            {
                **{k: sleeve.get(k) for k in ("label", "strategy", "params", "weight", "initial_cash", "metrics")},
                "trades": sleeve.get("trades"),
                "equity": (daily[f"equity_{number}"].astype("int64") / 100).tolist(),
            }
            for number, sleeve in enumerate(summary["sleeves"], start=1)
        ]
    return build_report(
        daily,
        trades,
        metrics=summary.get("metrics") or {},
        summary={k: v for k, v in summary.items() if k not in ("metrics", "manifest", "data_report", "sleeves")},
        manifest=manifest,
        title=title,
        risk_free_rate=float(config.get("risk_free_rate", 0.0)),
        sleeves=sleeves,
    )


def _field_errors(exc: ValidationError, *prefix: str | int) -> RequestValidationError:
    errors = [{**e, "loc": ("body", *prefix, *e["loc"])} for e in exc.errors(include_url=False)]
    return RequestValidationError(errors)


def _universe(request: BacktestRequest) -> Universe:
    """The request's universe; the top-level `ts_codes` (the first version of this API) is a list universe."""
    if request.universe is not None and request.ts_codes is not None:
        raise RequestValidationError(
            [{"loc": ("body", "ts_codes"), "msg": "give either ts_codes or universe, not both", "type": "value_error"}]
        )
    if request.universe is not None:
        return request.universe
    if request.ts_codes is not None:
        return Universe(ts_codes=request.ts_codes)
    raise RequestValidationError(
        [
            {
                "loc": ("body", "universe"),
                "msg": "Field required: a universe {ts_codes: [...]} | {index: '000300.SH'} | {filter: {...}}",
                "type": "missing",
            }
        ]
    )


def brief(record: BacktestRecord) -> BacktestBrief:
    return BacktestBrief(
        backtest_id=record.backtest_id,
        status=record.status.value,
        owner=record.owner,
        strategy=record.strategy,
        name=record.name,
        params=record.params,
        universe=record.universe,
        ts_codes=record.ts_codes,
        costs=(record.config or {}).get("costs", {}),
        benchmark=record.benchmark,
        cancel_requested=record.cancel_requested,
        start=record.start,
        end=record.end,
        initial_cash=record.initial_cash,
        summary=record.summary,
        error=record.error,
        attempts=record.attempts,
        created_at=record.created_at,
        started_at=record.started_at,
        finished_at=record.finished_at,
    )

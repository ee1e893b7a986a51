"""What the backtest API does, without HTTP: accept a request (strategy and parameters checked, row stored,
job queued), and read backtests back for the principal allowed to see them."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from services.backtest.events import JOB_QUEUE, backtest_finished
from services.backtest.schemas import BacktestBrief, BacktestDetail, BacktestRequest, EquityPoint
from services.backtest.store import BacktestRecord, BacktestStatus, BacktestStore, as_utc
from shared.bus import EventBus
from shared.errors import NotFound, Unavailable
from shared.internal_auth import Principal
from shared.observability import new_id
from shared.outbox import OutboxRelay
from shared.strategy import Strategy

log = logging.getLogger(__name__)

# Roles that see every user's backtests; others see their own.
SEE_ALL_ROLES = frozenset({"admin", "service"})


class BacktestService:
    def __init__(
        self, store: BacktestStore, bus: EventBus, strategies: Mapping[str, type[Strategy]], relay: OutboxRelay
    ) -> None:
        self.store = store
        self.bus = bus
        self.strategies = strategies
        self.relay = relay

    async def submit(self, principal: Principal, request: BacktestRequest) -> BacktestRecord:
        strategy = self.strategies.get(request.strategy)
        if strategy is None:
            raise NotFound("unknown_strategy", f"there is no strategy named {request.strategy!r}")
        try:
            params = strategy.parse_params(request.params)
        except ValidationError as exc:
            # Reported like any other request field, e.g. "params.cash_reserve: Input should be less than 1".
            errors = [{**e, "loc": ("body", "params", *e["loc"])} for e in exc.errors(include_url=False)]
            raise RequestValidationError(errors) from exc
        backtest_id = new_id()
        record = await self.store.create(
            backtest_id=backtest_id,
            owner=principal.subject,
            strategy=strategy.name,
            params=params.model_dump(mode="json"),
            ts_codes=request.ts_codes,
            start=request.start,
            end=request.end,
            initial_cash=request.initial_cash,
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

    def _visible(self, principal: Principal, record: BacktestRecord | None) -> bool:
        return record is not None and (principal.role in SEE_ALL_ROLES or record.owner == principal.subject)

    async def get(self, principal: Principal, backtest_id: str) -> BacktestDetail:
        record = await self.store.get(backtest_id)
        if record is None or not self._visible(principal, record):
            raise NotFound("backtest_not_found", f"there is no backtest {backtest_id!r}")
        curve = await self.store.equity_curve(backtest_id)
        return BacktestDetail(
            **brief(record).model_dump(),
            equity_curve=[EquityPoint(trade_date=p.trade_date, equity=p.equity) for p in curve],
        )

    async def list(self, principal: Principal, limit: int) -> list[BacktestBrief]:
        owner = None if principal.role in SEE_ALL_ROLES else principal.subject
        return [brief(r) for r in await self.store.list_recent(owner=owner, limit=limit)]


def brief(record: BacktestRecord) -> BacktestBrief:
    return BacktestBrief(
        backtest_id=record.backtest_id,
        status=record.status.value,
        owner=record.owner,
        strategy=record.strategy,
        params=record.params,
        ts_codes=record.ts_codes,
        start=record.start,
        end=record.end,
        initial_cash=record.initial_cash,
        summary=record.summary,
        error=record.error,
        attempts=record.attempts,
        created_at=as_utc(record.created_at),
        started_at=None if record.started_at is None else as_utc(record.started_at),
        finished_at=None if record.finished_at is None else as_utc(record.finished_at),
    )

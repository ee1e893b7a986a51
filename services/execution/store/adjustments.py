"""Corporate actions applied to positions: the table (one row per account, holder, code and ex-date) and the
transaction that records one with its cash in lieu (the cash ledger) and its `position.adjusted` event (the
outbox). Positions read them with the trades (trades.py)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, Column, Date, Index, Numeric, String, Table, UniqueConstraint, select
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError

from services.execution.cash import CASH_IN_LIEU
from services.execution.corporate import Adjustment
from services.execution.store.accounts import AccountStore
from services.execution.store.base import AutoId, metadata, outbox
from shared.core.domain import from_fen
from shared.platform.clock import UtcDateTime, utcnow
from shared.platform.columns import CnyFen
from shared.platform.events import PositionAdjusted, make_event
from shared.platform.observability import current_correlation_id
from shared.platform.outbox import add_to_outbox

# One row per (account, holder, code, ex-date): `adjustment_key` is "adjust:<strategy_instance_id or ->:<ts_code>:
# <ex_date>" (services.execution.corporate.adjustment_key), unique per account, so applying a session twice changes
# nothing (and the ledger entry of its cash uses the same key). qty_after - qty_before is what it adds to the
# holder's position from the ex-date on; the new shares are sellable that day, as in the backtest engine.
position_adjustments = Table(
    "position_adjustments",
    metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("account_id", String(64), nullable=False),
    Column("strategy_instance_id", String(32), nullable=True),  # NULL: the account's own part (its people's trades)
    Column("ts_code", String(16), nullable=False),
    Column("ex_date", Date, nullable=False),
    Column("adjustment_key", String(80), nullable=False),
    Column("qty_before", BigInteger, nullable=False),
    Column("qty_after", BigInteger, nullable=False),
    Column("adj_factor", Numeric(20, 6), nullable=False),
    Column("previous_adj_factor", Numeric(20, 6), nullable=False),
    Column("pre_close_fen", CnyFen, key="pre_close", nullable=False),
    Column("cash_in_lieu_fen", CnyFen, key="cash_in_lieu", nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("account_id", "adjustment_key", name="uq_position_adjustments_account_key"),
    Index("ix_position_adjustments_ex_date", "ex_date"),
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AdjustmentRecord:
    account_id: str
    strategy_instance_id: str | None
    ts_code: str
    ex_date: date
    qty_before: int
    qty_after: int
    adj_factor: Decimal
    previous_adj_factor: Decimal
    pre_close: Decimal
    cash_in_lieu: Decimal
    created_at: datetime


def _record(row: Row[Any]) -> AdjustmentRecord:
    return AdjustmentRecord(
        account_id=row.account_id, strategy_instance_id=row.strategy_instance_id, ts_code=row.ts_code,
        ex_date=row.ex_date, qty_before=int(row.qty_before), qty_after=int(row.qty_after),
        adj_factor=Decimal(row.adj_factor), previous_adj_factor=Decimal(row.previous_adj_factor),
        pre_close=row.pre_close, cash_in_lieu=row.cash_in_lieu, created_at=row.created_at,
    )  # fmt: skip


class AdjustmentStore(AccountStore):
    async def record_adjustment(self, adjustment: Adjustment) -> bool:
        """Record one holder's adjustment, its cash in lieu (a ledger entry under the same key) and its
        `position.adjusted` event, in one transaction; False when it was recorded already (nothing changes)."""
        a = adjustment
        key = a.key
        now = utcnow()
        try:
            async for attempt in self.db.transaction():
                async with attempt as s:
                    done = (
                        await s.execute(
                            select(position_adjustments.c.id).where(
                                position_adjustments.c.account_id == a.account_id,
                                position_adjustments.c.adjustment_key == key,
                            )
                        )
                    ).first()
                    if done is not None:
                        return False
                    await s.execute(
                        position_adjustments.insert().values(
                            account_id=a.account_id, strategy_instance_id=a.strategy_instance_id, ts_code=a.ts_code,
                            ex_date=a.ex_date, adjustment_key=key, qty_before=a.qty_before, qty_after=a.qty_after,
                            adj_factor=a.adj_factor, previous_adj_factor=a.previous_adj_factor,
                            pre_close=from_fen(a.pre_close_fen), cash_in_lieu=from_fen(a.cash_in_lieu_fen),
                            created_at=now,
                        )
                    )  # fmt: skip
                    if a.cash_in_lieu_fen:
                        await self._add_entry(
                            s, a.account_id, a.cash_in_lieu_fen, kind=CASH_IN_LIEU, idempotency_key=key,
                            trade_id=None, created_by=self.source, correlation_id=current_correlation_id(),
                            created_at=now,
                        )  # fmt: skip
                    await add_to_outbox(s, outbox, adjusted_event(a, now, source=self.source))
        except IntegrityError:
            # recorded at the same moment by another pass; else the ledger key was taken by an entry made before
            # `adjust:` keys were execution's own (a deposit's): say so, the adjustment cannot be recorded
            async for attempt in self.db.transaction():
                async with attempt as s:
                    recorded = await s.scalar(
                        select(position_adjustments.c.id).where(
                            position_adjustments.c.account_id == a.account_id,
                            position_adjustments.c.adjustment_key == key,
                        )
                    )
            if recorded is None:
                log.error("a corporate action could not be recorded: its ledger key is taken",
                          extra={"account_id": a.account_id, "key": key})  # fmt: skip
            return False
        return True

    async def list_adjustments(
        self, *, account_id: str | None, strategy_instance_id: str | None = None, limit: int = 500
    ) -> list[AdjustmentRecord]:
        """Adjustments oldest first (by ex-date), of one account (None: all) and optionally one instance."""
        query = select(position_adjustments).order_by(position_adjustments.c.ex_date, position_adjustments.c.id)
        if account_id is not None:
            query = query.where(position_adjustments.c.account_id == account_id)
        if strategy_instance_id is not None:
            query = query.where(position_adjustments.c.strategy_instance_id == strategy_instance_id)
        async for attempt in self.db.transaction():
            async with attempt as s:
                rows = (await s.execute(query.limit(limit))).all()
        return [_record(r) for r in rows]


def adjusted_event(a: Adjustment, at: datetime, *, source: str) -> Any:
    payload = PositionAdjusted(
        account_id=a.account_id, strategy_instance_id=a.strategy_instance_id, ts_code=a.ts_code, ex_date=a.ex_date,
        qty_before=a.qty_before, qty_after=a.qty_after, adj_factor=a.adj_factor,
        previous_adj_factor=a.previous_adj_factor, pre_close=from_fen(a.pre_close_fen),
        cash_in_lieu=from_fen(a.cash_in_lieu_fen), adjusted_at=at,
    )  # fmt: skip
    return make_event("position.adjusted", payload, source=source)


__all__ = ["AdjustmentRecord", "AdjustmentStore", "adjusted_event", "position_adjustments"]

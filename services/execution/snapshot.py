"""Risk's snapshot of an account (`GET /v1/risk-snapshot`): what risk seeds its hot book from (docs/risk-rules.md,
"Hot state"), after which execution's events keep the book. Pure: the store reads the rows in one transaction
(store/snapshot.py), this module shapes them.

The window. Risk seeds a book from the snapshot and then applies every event it receives, each once: a trade by its
id, an adjustment by its key, a deposit or withdrawal by its ledger entry id. An event of something the snapshot
counts already may still arrive after the seed (the outbox relay publishes after the commit, and a consumer may be
behind), so the snapshot lists the ids it counted — but only those recorded within the last 7 days (`WINDOW`), and
it lists the orders that became final within them (an order's late event then finds its order and moves nothing
back), so that its size stays that of a week's trading, not of the account's history. An event older than that
arriving after a seed (a relay or a consumer stopped for a week) would be counted twice: that is reconciliation's
to find and correct (the book is dropped and seeded again), not the seed's. The same window splits the shares: the
window's buys by the session they count in for T+1 (`bought_by_session`; a buy of an older session is sellable in
any session to come), every other share in `base`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta

from services.execution.schemas import RiskSnapshotOut, SnapshotLotsOut, SnapshotOrderOut
from services.execution.store import SnapshotRows
from services.execution.store.snapshot import SnapshotOrderRow
from shared.core.domain import OrderSide, OrderStatus

WINDOW = timedelta(days=7)


def risk_snapshot(
    account_id: str, as_of: datetime, since: datetime, rows: SnapshotRows, session_of: Callable[[datetime], date]
) -> RiskSnapshotOut:
    """`session_of`: the session a fill at a moment counts in for T+1, by the rule execution's positions use
    (`shared.platform.clock.fill_session` with the calendar's trading days, or by calendar date without them)."""
    base = dict(rows.older)
    bought: dict[str, dict[date, int]] = {}
    for t in rows.recent:
        if t.side is OrderSide.SELL:
            base[t.ts_code] = base.get(t.ts_code, 0) - t.qty
        else:
            by_session = bought.setdefault(t.ts_code, {})
            day = session_of(t.traded_at)
            by_session[day] = by_session.get(day, 0) + t.qty
    lots = []
    for code in sorted(base.keys() | bought.keys()):
        shares, by_day = base.get(code, 0), bought.get(code, {})
        if shares or by_day:
            lots.append(SnapshotLotsOut(ts_code=code, base=shares, bought_by_session=dict(sorted(by_day.items()))))
    return RiskSnapshotOut(
        account_id=account_id,
        as_of=as_of,
        since=since,
        balance_fen=rows.balance_fen,
        orders=[_order(o) for o in rows.orders],
        lots=lots,
        trade_ids=sorted(t.trade_id for t in rows.recent),
        entry_keys=sorted(rows.entry_keys),
    )


def _order(o: SnapshotOrderRow) -> SnapshotOrderOut:
    return SnapshotOrderOut(
        client_order_id=o.client_order_id, ts_code=o.ts_code, side=o.side, qty=o.qty,
        cap_fen=o.cap_fen if o.side is OrderSide.BUY else 0, status=OrderStatus(o.status), filled_qty=o.filled_qty,
        traded_qty=o.traded_qty,
    )  # fmt: skip

"""What the backtest service publishes: `backtest.finished` when a backtest succeeds, fails or is cancelled (through
the outbox, with the state change), and `backtest.progress` while it runs (straight on the bus: ephemeral)."""

from __future__ import annotations

from decimal import Decimal

from shared.platform.events import BacktestFinished, Envelope, make_event
from shared.platform.events.schemas import BacktestProgress

SOURCE = "backtest"
JOB_QUEUE = "backtests"  # the work queue `<ns>.jobs.backtests`
EVENT_ERROR_MAX_CHARS = 500


def short_error(error: str) -> str:
    """The line of an error (or traceback) that says what went wrong, for the event; the row keeps it all."""
    lines = [line.strip() for line in error.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else "failed"
    return last[:EVENT_ERROR_MAX_CHARS]


def backtest_finished(
    backtest_id: str,
    status: str,
    *,
    owner: str | None,
    total_return: Decimal | None = None,
    error: str | None = None,
) -> Envelope:
    payload = BacktestFinished(
        backtest_id=backtest_id,
        owner=owner,
        status=status,
        total_return=total_return,
        error=None if error is None else short_error(error),
    )
    return make_event("backtest.finished", payload, source=SOURCE)


def backtest_progress(backtest_id: str, *, owner: str | None, days_done: int, days: int, elapsed_s: float) -> Envelope:
    """Percent of the trading days simulated; the ETA assumes the pace so far holds (None before any day)."""
    percent = round(100.0 * days_done / days, 1) if days else 100.0
    eta_s = round(elapsed_s / days_done * (days - days_done), 1) if days_done else None
    payload = BacktestProgress(
        backtest_id=backtest_id, owner=owner, percent=percent, eta_s=eta_s, days_done=days_done, days=days
    )
    return make_event("backtest.progress", payload, source=SOURCE)

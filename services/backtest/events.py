"""What the backtest service publishes: `backtest.finished` when a backtest succeeds or fails."""

from __future__ import annotations

from decimal import Decimal

from shared.events import BacktestFinished, Envelope, make_event

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

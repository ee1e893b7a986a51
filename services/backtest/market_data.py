"""Daily bars for a backtest, from the data service (`GET /v1/bars`), with retries for a service that is down.

A data-service outage is transient, but the job queue can only acknowledge or dead-letter a job, and a
dead-lettered job would never run again. So the outage is ridden out here: a failing request is retried with
exponential backoff a few times; if the service is still unavailable, the backtest fails with an error that says
so (the user resubmits), rather than blocking the queue for longer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import date

from shared.domain.models import Bar
from shared.errors import ServiceError, Unavailable
from shared.http import ServiceClient

log = logging.getLogger(__name__)


class BarsUnavailable(Exception):
    """The data service could not give the bars: still down after the retries, or it refused the request."""


async def fetch_bars(
    client: ServiceClient,
    headers: Callable[[], dict[str, str]],
    ts_code: str,
    start: date,
    end: date,
    *,
    attempts: int = 4,
    backoff_s: float = 0.5,
) -> list[Bar]:
    """The unadjusted daily bars of `ts_code` in [start, end], oldest first. Waits backoff_s, 2*backoff_s, ...
    between attempts (0.5 + 1 + 2 s by default)."""
    params = {"ts_code": ts_code, "start": start.isoformat(), "end": end.isoformat()}
    for attempt in range(1, attempts + 1):
        try:
            body = await client.get_json("/v1/bars", params=params, headers=headers())
            break
        except Unavailable as exc:  # no answer, or a 5xx
            if attempt == attempts:
                raise BarsUnavailable(
                    f"data_unavailable: the data service did not give the bars of {ts_code} after {attempts} "
                    f"attempts ({exc.code}: {exc.message})"
                ) from exc
            delay = backoff_s * 2 ** (attempt - 1)
            log.warning(
                "data service unavailable; retrying",
                extra={"ts_code": ts_code, "attempt": attempt, "retry_in_s": delay, "error": exc.message},
            )
            await asyncio.sleep(delay)
        except ServiceError as exc:  # a 4xx: asking again will not help
            raise BarsUnavailable(
                f"data_refused: the data service refused the bars of {ts_code} ({exc.code}: {exc.message})"
            ) from exc
    rows = body["bars"]
    if not isinstance(rows, list):
        raise ValueError(f"the data service answered bars of {ts_code} with {type(rows).__name__}, not a list")
    bars = [Bar.model_validate({**_without_nulls(row), "ts_code": ts_code}) for row in rows]
    bars.sort(key=lambda b: b.trade_date)
    return bars


def _without_nulls(row: dict[str, object]) -> dict[str, object]:
    # A missing adj_factor falls back to the model's default of 1; any other missing field is an error.
    return {k: v for k, v in row.items() if v is not None or k != "adj_factor"}

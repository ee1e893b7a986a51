"""The data service's quote (`GET /v1/quotes/{ts_code}`): the one schema the data service answers with and its
consumers (risk, the paper broker) parse the answer into."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, StrictBool

from shared.core.domain.codes import Board


class Quote(BaseModel):
    """A security as of the newest session in the data service's store, and its limits for the next session.

    Every field is required: a quote missing one cannot be trusted (consumers fail closed). Prices in CNY."""

    model_config = ConfigDict(frozen=True)

    ts_code: str
    name: str
    board: Board
    is_st: StrictBool
    last_trade_date: date | None  # None: the security never traded
    last_close: Decimal | None  # None only for a security that never traded (then it is suspended)
    next_trade_date: date | None  # None: beyond the stored calendar
    suspended: StrictBool  # no bar on the newest session in the store
    limit_up: Decimal | None  # for next_trade_date; None when that session has no limits (or nothing is known)
    limit_down: Decimal | None

"""Corporate actions on execution's positions: on a session's ex-dates (a bar whose adj_factor differs from the
symbol's previous bar's), every holder's position at the start of the session — the account's own part and each
strategy instance's part, each on its own — becomes what `shared.core.market.corporate.adjusted_holding` says (the
backtest engine's rule), the fraction paid to the account in cash at the ex-date's pre_close. This module plans the
adjustments (pure) and reads a session's ex-date ratios from the data service (one read per session for all the
held codes); the store records them (services/execution/store/adjustments.py)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any, Protocol

from services.execution.cash import ADJUSTMENT_KEY_PREFIX
from shared.core.domain import price, to_fen
from shared.core.market.corporate import adjusted_holding, ex_ratio
from shared.platform.errors import ServiceError
from shared.platform.http import ServiceDirectory
from shared.platform.internal_auth import service_headers

RATIO_LOOKBACK = timedelta(days=45)  # bars read back from the session to find each code's previous bar
LONG_LOOKBACK = timedelta(days=3660)  # for the few codes suspended longer than that
CODES_PER_READ = 200  # the data service's JSON limit of symbols per /v1/bars/many


class RatiosUnavailable(Exception):
    """The session's adj factors could not be read: nothing is adjusted on a guess (the next pass tries again)."""


@dataclass(frozen=True)
class ExDate:
    """A symbol going ex on a session: its bar's adj_factor against its previous bar's, and the session's pre_close
    (the exchange's ex-rights reference price)."""

    ts_code: str
    day: date
    adj_factor: Decimal
    previous_adj_factor: Decimal
    pre_close_fen: int

    @property
    def ratio(self) -> float:
        # floats of the 6-decimal factors, as the backtest's panel holds them: the same ratio to the last bit
        return ex_ratio(float(self.adj_factor), float(self.previous_adj_factor))


@dataclass(frozen=True)
class HolderPosition:
    """One holder's shares of one code at the start of a session: the account's own (`strategy_instance_id` None,
    its people's trades) or one strategy instance's."""

    account_id: str
    strategy_instance_id: str | None
    ts_code: str
    qty: int


@dataclass(frozen=True)
class Adjustment:
    account_id: str
    strategy_instance_id: str | None
    ts_code: str
    ex_date: date
    qty_before: int
    qty_after: int
    cash_in_lieu_fen: int
    adj_factor: Decimal
    previous_adj_factor: Decimal
    pre_close_fen: int

    @property
    def key(self) -> str:
        """Unique per (account, holder, code, ex-date): the adjustment's and its ledger entry's idempotency key."""
        return adjustment_key(self.strategy_instance_id, self.ts_code, self.ex_date)


def adjustment_key(strategy_instance_id: str | None, ts_code: str, ex_date: date) -> str:
    return f"{ADJUSTMENT_KEY_PREFIX}{strategy_instance_id or '-'}:{ts_code}:{ex_date.isoformat()}"


def plan_adjustments(holders: Iterable[HolderPosition], ex_dates: dict[str, ExDate]) -> list[Adjustment]:
    """The adjustments of a session: every holder with shares of a code going ex, each part floored on its own (the
    sum of the floors, not the floor of the sum). A part below zero (the account's people sold shares one of its
    instances bought: admission checks the account's total) is adjusted as the mirror of a holding of its size, so
    that parts which cancel out stay cancelled: +1,000 and -1,000 become +2,105 and -2,105, with +1.25 and -1.25 CNY,
    and the account gains nothing it does not hold. Holders of codes not going ex, and empty parts, are left alone."""
    out: list[Adjustment] = []
    for h in holders:
        ex = ex_dates.get(h.ts_code)
        if ex is None or h.qty == 0 or ex.ratio == 1.0:
            continue
        new, cash = adjusted_holding(abs(h.qty), ex.ratio, ex.pre_close_fen)
        if h.qty < 0:
            new, cash = -new, -cash
        out.append(
            Adjustment(
                account_id=h.account_id, strategy_instance_id=h.strategy_instance_id, ts_code=h.ts_code,
                ex_date=ex.day, qty_before=h.qty, qty_after=new, cash_in_lieu_fen=cash, adj_factor=ex.adj_factor,
                previous_adj_factor=ex.previous_adj_factor, pre_close_fen=ex.pre_close_fen,
            )
        )  # fmt: skip
    return out


def ex_dates_of(day: date, series: Mapping[str, Sequence[dict[str, Any]]]) -> tuple[dict[str, ExDate], list[str]]:
    """From each code's bars up to `day` (oldest first, as /v1/bars gives them): the codes going ex on `day`, and the
    codes with a bar on `day` but none before it in the bars given (read further back). A code without a bar on
    `day` (suspended) does not go ex that day: it does on the day it trades again, against its last bar before the
    halt, as the backtest's panel (its factor carried over the halt) has it."""
    found: dict[str, ExDate] = {}
    short: list[str] = []
    for code, bars in series.items():
        rows = sorted(bars, key=lambda b: str(b["trade_date"]))
        if not rows or str(rows[-1]["trade_date"]) != day.isoformat():
            continue
        if len(rows) < 2:
            short.append(code)
            continue
        today, before = rows[-1], rows[-2]
        factor, previous = Decimal(str(today["adj_factor"])), Decimal(str(before["adj_factor"]))
        if factor <= 0 or previous <= 0:
            raise ValueError(f"{code}: a non-positive adj_factor around {day.isoformat()}")
        if factor != previous:
            found[code] = ExDate(code, day, factor, previous, to_fen(price(str(today["pre_close"]))))
    return found, short


class ExDateSource(Protocol):
    async def ex_dates(self, day: date, codes: Sequence[str], previous: date | None = None) -> dict[str, ExDate]:
        """The codes among `codes` going ex on trading day `day` (`previous`: the trading day before it, when the
        caller knows it). Raises RatiosUnavailable."""


class DataServiceExDates:
    """A session's ex-dates from the data service's `GET /v1/bars/many` (unadjusted bars with their adj_factor and
    pre_close): one read per session for up to 200 held codes, of the session and the trading day before it (a few
    weeks back when that day is not known); the few codes without a bar that day (suspended) are read again further
    back."""

    def __init__(self, services: ServiceDirectory, internal_secret: str) -> None:
        self.services = services
        self.internal_secret = internal_secret

    async def _series(self, codes: Sequence[str], start: date, end: date) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        client = self.services.client("data")
        for k in range(0, len(codes), CODES_PER_READ):
            chunk = codes[k : k + CODES_PER_READ]
            try:
                body = await client.get_json(
                    "/v1/bars/many",
                    params={"ts_codes": ",".join(chunk), "start": start.isoformat(), "end": end.isoformat()},
                    headers=service_headers(self.internal_secret, "execution"),
                )
                for item in body["series"]:
                    out[str(item["ts_code"])] = list(item["bars"])
            except ServiceError as exc:
                raise RatiosUnavailable(f"the data service answered {exc.code}: {exc.message}") from exc
            except (ValueError, KeyError, TypeError) as exc:
                raise RatiosUnavailable(f"the data service's bars are malformed: {exc!r}") from exc
        return out

    async def ex_dates(self, day: date, codes: Sequence[str], previous: date | None = None) -> dict[str, ExDate]:
        if not codes:
            return {}
        try:
            start = previous if previous is not None and previous < day else day - RATIO_LOOKBACK
            found, short = ex_dates_of(day, await self._series(sorted(codes), start, day))
            if short:
                more, _ = ex_dates_of(day, await self._series(short, day - LONG_LOOKBACK, day))
                found.update(more)
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            raise RatiosUnavailable(f"the data service's bars of {day.isoformat()} are malformed: {exc!r}") from exc
        return found

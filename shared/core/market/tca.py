"""Transaction cost analysis: what an order's fills cost against a benchmark price, live (execution) and in a backtest
(the backtest service), by the same arithmetic. Pure and exact: amounts are integer fen, ratios are Fractions, and only
the answer is rounded, half-up:

- a VWAP (fills' or the market's) = amount / qty, shown to 4 decimal places;
- a cost in bps = cost / notional x 10,000, shown to 2 decimal places;
- slippage is signed as a cost: positive when the fills were worse than the benchmark (a buy paid more, a sell
  received less), negative when better. Against a benchmark price B for `qty` shares filled for `amount`:
  a buy's cost = amount - B x qty, a sell's = B x qty - amount; its bps = cost / (B x qty) x 10,000.

A summary adds the orders' costs and notionals in fen and divides once (a notional-weighted mean of the orders' bps),
never averages rounded figures."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

BPS = 10_000
VWAP_PLACES = 4
BPS_PLACES = 2


def round_half_up(value: Fraction, places: int) -> Decimal:
    """`value` rounded half-up (away from zero on a tie) to `places` decimal places, exactly."""
    scale = 10**places
    scaled = abs(value) * scale
    whole = (2 * scaled.numerator + scaled.denominator) // (2 * scaled.denominator)
    signed = -whole if value < 0 else whole
    return Decimal(signed).scaleb(-places).quantize(Decimal(1).scaleb(-places))


def vwap_fen(amount_fen: Fraction | int, qty: int) -> Fraction | None:
    """The volume-weighted average price in fen a share (exact), None with no volume."""
    return None if qty <= 0 else Fraction(amount_fen, qty)


def cny_of_fen(value: Fraction, places: int = VWAP_PLACES) -> Decimal:
    """A price or amount in fen (a Fraction) as CNY rounded half-up to `places`."""
    return round_half_up(value / 100, places)


def bps(cost_fen: Fraction | int, notional_fen: Fraction | int) -> Decimal | None:
    """cost / notional x 10,000 rounded half-up to 2 places; None when the notional is zero."""
    if notional_fen == 0:
        return None
    return round_half_up(Fraction(cost_fen) / Fraction(notional_fen) * BPS, BPS_PLACES)


def slippage_cost_fen(is_buy: bool, amount_fen: int, qty: int, benchmark_fen: Fraction) -> Fraction:
    """What the fills cost against the benchmark price (fen a share), signed as a cost (positive: worse)."""
    at_benchmark = benchmark_fen * qty
    return amount_fen - at_benchmark if is_buy else at_benchmark - amount_fen


@dataclass(frozen=True)
class Bar:
    """A market bar's traded volume (shares) and amount (fen; a feed's amount may hold fractions of a fen) for an
    interval VWAP."""

    volume: int
    amount_fen: Fraction | int


def interval_vwap_fen(bars: Iterable[Bar]) -> Fraction | None:
    """The market's VWAP over bars: their summed amount over their summed volume (None: nothing traded)."""
    volume, amount = 0, Fraction(0)
    for bar in bars:
        volume += bar.volume
        amount += bar.amount_fen
    return None if volume <= 0 else amount / volume


@dataclass(frozen=True)
class OrderCost:
    """One order's fills against its benchmarks (`None`: that benchmark is unknown)."""

    is_buy: bool
    filled_qty: int
    filled_amount_fen: int
    fees_fen: int
    arrival_fen: Fraction | None
    interval_vwap_fen: Fraction | None = None

    @property
    def fill_vwap_fen(self) -> Fraction | None:
        return vwap_fen(self.filled_amount_fen, self.filled_qty)

    def _against(self, benchmark: Fraction | None) -> tuple[Fraction, Fraction] | None:
        if benchmark is None or self.filled_qty <= 0:
            return None
        cost = slippage_cost_fen(self.is_buy, self.filled_amount_fen, self.filled_qty, benchmark)
        return cost, benchmark * self.filled_qty

    @property
    def arrival(self) -> tuple[Fraction, Fraction] | None:
        """(cost, notional at the arrival price) in fen, None without an arrival price or fills."""
        return self._against(self.arrival_fen)

    @property
    def interval(self) -> tuple[Fraction, Fraction] | None:
        """(cost, notional at the market's interval VWAP) in fen, None without one or without fills."""
        return self._against(self.interval_vwap_fen)

    @property
    def arrival_bps(self) -> Decimal | None:
        got = self.arrival
        return None if got is None else bps(*got)

    @property
    def interval_bps(self) -> Decimal | None:
        got = self.interval
        return None if got is None else bps(*got)

    @property
    def fees_bps(self) -> Decimal | None:
        return None if self.filled_qty <= 0 else bps(self.fees_fen, self.filled_amount_fen)


@dataclass(frozen=True)
class CostSummary:
    """Orders' costs added up: fills, fees, and the costs and notionals of those with each benchmark."""

    orders: int = 0
    filled_orders: int = 0
    filled_amount_fen: int = 0
    fees_fen: int = 0
    arrival_orders: int = 0
    arrival_cost_fen: Fraction = Fraction(0)
    arrival_notional_fen: Fraction = Fraction(0)
    interval_orders: int = 0
    interval_cost_fen: Fraction = Fraction(0)
    interval_notional_fen: Fraction = Fraction(0)

    def add(self, cost: OrderCost) -> CostSummary:
        arrival, interval = cost.arrival, cost.interval
        return CostSummary(
            orders=self.orders + 1,
            filled_orders=self.filled_orders + (1 if cost.filled_qty > 0 else 0),
            filled_amount_fen=self.filled_amount_fen + cost.filled_amount_fen,
            fees_fen=self.fees_fen + cost.fees_fen,
            arrival_orders=self.arrival_orders + (arrival is not None),
            arrival_cost_fen=self.arrival_cost_fen + (arrival[0] if arrival else 0),
            arrival_notional_fen=self.arrival_notional_fen + (arrival[1] if arrival else 0),
            interval_orders=self.interval_orders + (interval is not None),
            interval_cost_fen=self.interval_cost_fen + (interval[0] if interval else 0),
            interval_notional_fen=self.interval_notional_fen + (interval[1] if interval else 0),
        )

    @property
    def arrival_bps(self) -> Decimal | None:
        return bps(self.arrival_cost_fen, self.arrival_notional_fen)

    @property
    def interval_bps(self) -> Decimal | None:
        return bps(self.interval_cost_fen, self.interval_notional_fen)

    @property
    def fees_bps(self) -> Decimal | None:
        return bps(self.fees_fen, self.filled_amount_fen)


def summarise(costs: Iterable[tuple[str, OrderCost]]) -> dict[str, CostSummary]:
    """The summaries of (group key, order cost) pairs, by key, keys sorted."""
    groups: dict[str, CostSummary] = {}
    for key, cost in costs:
        groups[key] = groups.get(key, CostSummary()).add(cost)
    return dict(sorted(groups.items()))

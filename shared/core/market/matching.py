"""How an order meets a daily bar: the fill price of the day (open, close or VWAP), slippage, the limit band, lots,
T+1, the volume cap, and the cash a buy may spend, fees included. One implementation for the backtest engines
(shared.research.engine.core and .batch, vectorised over a day's orders) and the paper broker (`match_order`, one
order on one bar), so a paper fill and a backtest fill of the same order on the same bar are the same fill.

Money is integer fen; a price is on the 0.01 tick. Pure numpy/int code: no I/O, no import from the layers above."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Literal

import numpy as np
import numpy.typing as npt

from shared.core.market.fees import FenFees
from shared.core.market.rules import board_lots, lot_sizes

__all__ = [
    "KIND_CLOSE",
    "KIND_NAMES",
    "KIND_SHARES",
    "KIND_TARGET",
    "KIND_VALUE",
    "NO_LIMIT_UP",
    "REASONS",
    "REASON_CODES",
    "STATUS_NAMES",
    "BookFill",
    "FillRules",
    "MarketMatch",
    "Match",
    "SessionBar",
    "affordable",
    "board_lots",
    "buys_paid_for",
    "fill_prices",
    "fill_rounds",
    "fillable",
    "lot_sizes",
    "lots_down",
    "match_market_on_book",
    "match_on_book",
    "match_order",
    "sells_paid_for",
    "size_orders",
    "slipped",
]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

# "no upper limit": far above any price, safe to compare (and the no-limit down price is 0)
NO_LIMIT_UP = np.iinfo(np.int64).max // 4

# --- how an order ends: its status, its kind and the reason it was not (fully) filled, as small ints in a run's arrays
STATUS_FILLED, STATUS_PARTIAL, STATUS_CANCELLED, STATUS_REJECTED = 0, 1, 2, 3
STATUS_NAMES = ("filled", "partially_filled", "cancelled", "rejected")
KIND_SHARES, KIND_VALUE, KIND_TARGET, KIND_CLOSE = 0, 1, 2, 3
KIND_NAMES = ("shares", "value", "target_value", "close")

R_NONE = 0
R_SUSPENDED = 1
R_LIMIT_UP = 2
R_LIMIT_DOWN = 3
R_T1 = 4
R_NO_POSITION = 5
R_BELOW_LOT = 6
R_CASH = 7
R_VOLUME_CAP = 8
R_NO_VOLUME = 9
R_END = 10
R_TARGET_REACHED = 11
R_BAD_LOT = 12
R_OVERSOLD = 13
R_FEES = 14
R_LIMIT_NOT_REACHED = 15
# what a backtest result shows, by reason code
REASONS = (
    "",
    "suspended: no bar on the fill day",
    "limit-up: the fill price is at or above the limit-up price",
    "limit-down: the fill price is at or below the limit-down price",
    "T+1: shares bought today are sellable from the next trading day",
    "no position to sell",
    "below the smallest lot the board allows",
    "cash: not enough cash for the quantity, fees included",
    "volume cap: the fill may take only the configured fraction of the bar's volume",
    "no volume on the fill bar",
    "end of data: no bar left to fill on",
    "the target is already held: nothing to trade",
    "the quantity is not a valid lot for the board (odd lots only when selling the whole position)",
    "more than the position: the whole position was sold",
    "fees_exceed_cash: the sale's fees exceed its amount and the cash cannot pay the difference",
    "limit price not reached: the execution price is above a buy's limit (below a sell's)",
)
# the same reasons as machine-readable names (`Match.reason`), by reason code
REASON_CODES = (
    "",
    "suspended",
    "limit_up",
    "limit_down",
    "t_plus_one",
    "no_position",
    "below_lot",
    "cash",
    "volume_cap",
    "no_volume",
    "end_of_data",
    "target_reached",
    "bad_lot",
    "oversold",
    "fees_exceed_cash",
    "limit_not_reached",
)


@dataclass(frozen=True)
class FillRules:
    """What decides a fill, whoever fills: the price of the bar an order takes (`fill_price`), the slippage on it
    (`slippage` "bps" or "ticks" of 0.01 CNY, by `slippage_amount`), the most of the bar's volume a fill may take
    (`volume_cap`, a fraction; None: no cap), and which A-share rules apply (`price_limits`, `lots`, `t_plus_one`).
    `suspended_orders`: an order with no bar on its fill day waits for the next bar or is cancelled (the engines)."""

    fill_price: Literal["open", "close", "vwap"] = "open"
    slippage: Literal["none", "bps", "ticks"] = "none"
    slippage_amount: Decimal = Decimal(0)
    volume_cap: Decimal | None = None
    price_limits: bool = True
    lots: bool = True
    t_plus_one: bool = True
    suspended_orders: Literal["wait", "cancel"] = "wait"


def fill_prices(
    fill_price: str, open_: IntArray, close: IntArray, vol: FloatArray, amount: FloatArray, fen_per_amount: float
) -> IntArray:
    """The price an order fills at on each bar, in fen: the open, the close, or the VWAP (amount / vol, rounded
    half-up to the fen; 0, meaning no fill, when the bar has no volume). `amount` is in any unit with
    `fen_per_amount` fen to the unit (100.0 for CNY, 1.0 for fen). Any shape: a panel or one bar."""
    if fill_price == "open":
        return open_
    if fill_price == "close":
        return close
    with np.errstate(divide="ignore", invalid="ignore"):
        vwap = np.floor(amount * fen_per_amount / vol + 0.5)
    return np.where(vol > 0, vwap, 0).astype(np.int64)


def fillable(rules: FillRules, has_bar: BoolArray, prices: IntArray) -> tuple[BoolArray, IntArray]:
    """Which orders can fill on their fill day (`has_bar`, `prices`: their symbol's bar and fill price that day), and
    for those that cannot, why: no bar (R_SUSPENDED), or a VWAP fill on a bar without volume, which has no VWAP
    (R_NO_VOLUME; treated like a suspension)."""
    ok = has_bar.copy()
    why = np.full(len(ok), R_SUSPENDED, dtype=np.int64)
    if rules.fill_price == "vwap":
        why[ok] = R_NO_VOLUME
        ok &= prices > 0
    return ok, why


def fill_rounds(keys: IntArray) -> list[IntArray]:
    """Positions of the day's orders (given in order-id order) grouped in rounds: round r holds the r-th order of
    every key (a symbol, or a portfolio and symbol), in the given order. One round when every key is distinct."""
    if len(np.unique(keys)) == len(keys):
        return [np.arange(len(keys))]
    order = np.lexsort((np.arange(len(keys)), keys))
    first = np.r_[True, keys[order][1:] != keys[order][:-1]]
    start = np.maximum.accumulate(np.where(first, np.arange(len(order)), 0))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order)) - start
    return [np.sort(np.flatnonzero(rank == r)) for r in range(int(rank.max()) + 1)]


def slipped(rules: FillRules, px: IntArray, buy: BoolArray) -> IntArray:
    """The price after slippage, against the order: up for a buy, down for a sell (not yet clamped to the band)."""
    if rules.slippage == "bps":
        bps = rules.slippage_amount.as_integer_ratio()
        num, den = bps[0], bps[1] * 10_000
        # price x (1 +- bps / 10000), rounded half-up to the tick
        up = (2 * px * (den + num) + den) // (2 * den)
        down = (2 * px * (den - num) + den) // (2 * den)
        return np.where(buy, up, down)
    if rules.slippage == "ticks":
        ticks = int(rules.slippage_amount)
        return np.where(buy, px + ticks, px - ticks)
    return px


def size_orders(
    rules: FillRules,
    prices: IntArray,
    up_limit: IntArray,
    down_limit: IntArray,
    vol: FloatArray,
    lot_min: IntArray,
    lot_step: IntArray,
    syms: IntArray,
    kinds: IntArray,
    amts: IntArray,
    pos: IntArray,
    sellable: IntArray,
) -> tuple[IntArray, IntArray, BoolArray, BoolArray, IntArray, BoolArray]:
    """One round of orders (at most one per symbol and portfolio) against the book before it: the quantity each
    may trade (before cash), the execution price, the side, the reason code and the bad-lot rejections.

    `prices` (the fill price, `fill_prices`), `up_limit`/`down_limit` (fen; NO_LIMIT_UP and 0 when the day has no
    limit), `vol` (shares) and `lot_min`/`lot_step` are the fill day's values by symbol column; `syms` the column of
    each order, `kinds`/`amts` its kind and amount (shares, or fen for a value or target), `pos`/`sellable` the
    shares held and sellable now in its symbol."""
    raw = prices[syms]
    lot_min, lot_step = lot_min[syms], lot_step[syms]
    reason = np.zeros(len(syms), dtype=np.int64)

    # side from the raw price; then the execution price by side; then the quantity at the execution price
    want = np.where(
        kinds == KIND_SHARES,
        amts,
        np.where(
            kinds == KIND_VALUE,
            np.sign(amts) * (np.abs(amts) // raw),
            np.where(kinds == KIND_TARGET, amts // raw - pos, -pos),
        ),
    )
    buy = want > 0
    px = slipped(rules, raw, buy)
    up, down = up_limit[syms], down_limit[syms]
    # A fill price printed outside the day's band contradicts the band: the data (ST flag, pre_close, list date or
    # the given limits) is wrong, not the print. Such a bar is traded at its printed price, without the band
    # (run_backtest reports it, see shared.research.engine.core.outside_band).
    banded = (raw <= up) & (raw >= down) if rules.price_limits else np.zeros(len(syms), dtype=np.bool_)
    # a slipped price stays a price the exchange would accept that day: inside the limits, at least one tick
    px = np.where(banded, np.maximum(np.minimum(px, up), np.maximum(down, 1)), np.maximum(px, 1))
    target_qty = amts // px
    qty = np.where(
        kinds == KIND_VALUE,
        np.abs(amts) // px,
        np.where(
            kinds == KIND_TARGET,
            np.where(buy, np.maximum(target_qty - pos, 0), np.maximum(pos - target_qty, 0)),
            np.abs(want),
        ),
    )
    sell = want < 0
    reason[(qty == 0) & (kinds == KIND_CLOSE)] = R_NO_POSITION
    reason[(qty == 0) & (kinds == KIND_TARGET)] = R_TARGET_REACHED
    reason[(qty == 0) & (kinds == KIND_VALUE)] = R_BELOW_LOT
    if rules.price_limits:
        blocked_up = buy & banded & (raw >= up)
        blocked_down = sell & banded & (raw <= down)
        reason[blocked_up] = R_LIMIT_UP
        reason[blocked_down] = R_LIMIT_DOWN
        qty[blocked_up | blocked_down] = 0

    explicit = kinds == KIND_SHARES
    # buys: an explicit quantity must be a valid lot; a sized one rounds down to one
    bad_lot = explicit & buy & (qty > 0) & ((qty < lot_min) | (qty % lot_step != 0))
    sized_buy = buy & ~explicit & (qty > 0)
    reason[sized_buy & (lots_down(qty, lot_min, lot_step) == 0)] = R_BELOW_LOT
    qty = np.where(sized_buy, lots_down(qty, lot_min, lot_step), qty)
    # sells: at most what is held and sellable; an odd lot only as the whole position
    selling = sell & (qty > 0)
    bad_lot |= explicit & selling & (qty < pos) & ((qty < lot_min) | (qty % lot_step != 0))
    reason[selling & (pos == 0)] = R_NO_POSITION
    reason[selling & (pos > 0) & (qty > pos)] = R_OVERSOLD
    qty = np.where(selling, np.minimum(qty, pos), qty)
    short = selling & (qty > sellable)
    reason[short & (reason == 0)] = R_T1
    qty = np.where(short, sellable, qty)
    partial_sell = selling & (qty < pos)
    qty = np.where(partial_sell, lots_down(qty, lot_min, lot_step), qty)
    # a sized sell of less than a lot (a value or a target a few shares away) that is not the whole position
    reason[partial_sell & (qty == 0) & (reason == 0)] = R_BELOW_LOT
    reason[bad_lot] = R_BAD_LOT
    qty[bad_lot] = 0
    if rules.volume_cap is not None:
        num, den = rules.volume_cap.as_integer_ratio()
        cap = np.floor(vol[syms] * num / den + 1e-9).astype(np.int64)
        capped = qty > cap
        reason[capped & (reason == 0)] = R_VOLUME_CAP
        qty = np.where(capped, lots_down(cap, lot_min, lot_step), qty)
    return qty, px, buy, sell, reason, bad_lot


def lots_down(qty: IntArray, lot_min: IntArray, lot_step: IntArray) -> IntArray:
    """`qty` rounded down to a valid lot (a multiple of the step, at least the minimum), 0 when less than one."""
    rounded = qty - qty % lot_step
    return np.where(rounded >= lot_min, rounded, 0)


def sells_paid_for(cash_fen: int, proceeds: IntArray) -> BoolArray:
    """Which of one portfolio's sells of a round (in order-id order) go through, so that cash never goes negative:
    every sell with proceeds >= 0, and a sell whose fees exceed its amount (the 5 CNY minimum commission on a tiny
    sale) only if the cash, with the round's other proceeds and in order-id order, pays the difference."""
    keep = np.ones(len(proceeds), dtype=np.bool_)
    costly = np.flatnonzero(proceeds < 0)
    if len(costly) == 0:
        return keep
    cash = cash_fen + int(proceeds[proceeds >= 0].sum())
    for i in costly.tolist():
        if cash + int(proceeds[i]) >= 0:
            cash += int(proceeds[i])
        else:
            keep[i] = False
    return keep


def affordable(fees: FenFees, cash: int, px: int, lot_min: int, lot_step: int) -> int:
    """The most shares (a valid lot) that `cash` pays for at `px`, fees included; 0 if not even the smallest lot."""
    q = cash // px
    q -= q % lot_step
    while q >= lot_min:
        if q * px + fees.buy_total(q * px) <= cash:
            return q
        # fees are a fraction of the amount plus at most the minimum commission: jump close to the answer
        q -= max(lot_step, ((q * px + fees.buy_total(q * px) - cash) // px) // lot_step * lot_step)
    return 0


def buys_paid_for(
    fees: FenFees, cash_fen: int, qty: IntArray, px: IntArray, total: IntArray, lot_min: IntArray, lot_step: IntArray
) -> IntArray:
    """One portfolio's buys of a round (in order-id order, `total` = amount + fees of each) when the cash cannot pay
    for all: settled one by one, a buy the remaining cash covers goes through whole, the others shrink to the largest
    lot the remaining cash pays for, fees included (`affordable`; 0 when not even one lot). `lot_min`/`lot_step` are
    per order. Returns the quantities."""
    qty = qty.copy()
    cash = cash_fen
    for i in range(len(qty)):
        if int(total[i]) <= cash:
            cash -= int(total[i])
            continue
        price = int(px[i])
        q = min(affordable(fees, cash, price, int(lot_min[i]), int(lot_step[i])), int(qty[i]))
        qty[i] = q
        cash -= q * price + (fees.buy_total(q * price) if q else 0)
    return qty


# --- one order on one bar (the paper broker) -------------------------------------------------------------------------
@dataclass(frozen=True)
class SessionBar:
    """One symbol on one trading day, prices in fen, `vol` in shares. `up_limit`/`down_limit` None: no limit that
    day (a new listing's first days, or before 1996-12-16)."""

    trade_date: date
    open: int
    high: int
    low: int
    close: int
    vol: int
    amount_fen: int
    up_limit: int | None
    down_limit: int | None


@dataclass(frozen=True)
class Match:
    """What an order gets on a bar: `qty` shares trade now (0: none) at `price_fen` (slippage applied, inside the
    band; 0 when nothing trades); `reason` is "" or a name from REASON_CODES saying why not all of it traded."""

    qty: int
    price_fen: int
    reason: str


def match_order(
    rules: FillRules,
    bar: SessionBar | None,
    *,
    side: str,
    qty: int,
    limit_price_fen: int | None,
    lot_min: int,
    lot_step: int,
) -> Match:
    """One order of `qty` shares (`side` "buy" or "sell") on one bar: exactly what the backtest engine's `size_orders`
    gives an explicit-quantity order on that bar (the fill price by `rules.fill_price`, slippage, the band, the lot
    rules of a buy, the volume cap), and then the order's own limit: a limit buy trades only at an execution price
    <= `limit_price_fen` (a sell >=), otherwise nothing trades ("limit_not_reached"). `limit_price_fen` None: a
    market order.

    What the engine's book checks (the position, T+1, the cash) are the caller's: a sell is matched as if `qty`
    were sellable, and an odd-lot sell is taken as the sale of a whole position. `bar` None: no bar that day
    ("suspended")."""
    if side not in ("buy", "sell"):
        raise ValueError(f"side must be 'buy' or 'sell', got {side!r}")
    if qty <= 0:
        raise ValueError(f"qty must be positive, got {qty}")
    if bar is None:
        return Match(0, 0, REASON_CODES[R_SUSPENDED])
    if not rules.lots:
        lot_min = lot_step = 1
    price = fill_prices(
        rules.fill_price,
        np.array([bar.open], dtype=np.int64),
        np.array([bar.close], dtype=np.int64),
        np.array([bar.vol], dtype=np.float64),
        np.array([bar.amount_fen], dtype=np.float64),
        1.0,
    )
    ok, no_fill = fillable(rules, np.ones(1, dtype=np.bool_), price)
    if not ok[0]:
        return Match(0, 0, REASON_CODES[int(no_fill[0])])
    one = np.zeros(1, dtype=np.int64)
    held = np.array([qty if side == "sell" else 0], dtype=np.int64)
    got, px, _, _, reason, _ = size_orders(
        rules,
        price,
        np.array([NO_LIMIT_UP if bar.up_limit is None else bar.up_limit], dtype=np.int64),
        np.array([0 if bar.down_limit is None else bar.down_limit], dtype=np.int64),
        np.array([bar.vol], dtype=np.float64),
        np.array([lot_min], dtype=np.int64),
        np.array([lot_step], dtype=np.int64),
        one,
        np.array([KIND_SHARES], dtype=np.int64),
        np.array([qty if side == "buy" else -qty], dtype=np.int64),
        held,
        held,
    )
    shares, fen, why = int(got[0]), int(px[0]), int(reason[0])
    if shares == 0 and why != R_VOLUME_CAP:
        return Match(0, 0, REASON_CODES[why])
    if limit_price_fen is not None and (fen > limit_price_fen if side == "buy" else fen < limit_price_fen):
        return Match(0, 0, REASON_CODES[R_LIMIT_NOT_REACHED])
    if shares == 0:
        return Match(0, 0, REASON_CODES[why])
    return Match(shares, fen, REASON_CODES[why])


# --- one order against a quote's book (the paper broker on live or replayed quotes) -----------------------------------
@dataclass(frozen=True)
class BookFill:
    """Part of an order traded at one level of a quote's book: `qty` shares at `price_fen`, the level's index (0:
    the best)."""

    level: int
    price_fen: int
    qty: int


def match_on_book(
    *,
    side: str,
    qty: int,
    limit_price_fen: int | None,
    levels: Sequence[tuple[int, int]],
    consumed: Mapping[int, int] | None = None,
    price_cap_fen: int | None = None,
    up_limit: int | None = None,
    down_limit: int | None = None,
    lot_step: int = 100,
    rules: FillRules | None = None,
    most: int | None = None,
) -> tuple[BookFill, ...]:
    """What `qty` shares still open of an order (`side` "buy" or "sell") take from the other side of a quote's book:
    `levels` are its (price fen, shares) best first (the asks for a buy, the bids for a sell), `consumed` the shares
    per price that earlier fills on the same quote have taken already (not offered again).

    A buy takes the levels priced at or below its limit (`limit_price_fen`; None: a market order), its `price_cap_fen`
    (the price its cash was reserved at) and the day's `up_limit`; a sell those at or above its limit and the day's
    `down_limit` (with `rules.price_limits`; a level outside the band is one the exchange would not show, never
    taken). At each level it takes at most what is left there. A fill is in whole lots of `lot_step` (the board's,
    `board_lots`; 1 without `rules.lots`) unless it completes the order: the odd shares of a sell (a whole position's
    odd lot, `sell_qty_error`) trade only with its last part, never alone before it. What is not filled is the
    caller's: a limit order rests, a market order's rest is cancelled. Position, T+1 and cash are checked before
    (execution's admission), as `match_order` leaves them to its caller.

    `most`: the most shares it may take in all (a resting order on live quotes: the volume that traded since the
    previous round and is left of it; None: no bound but the levels'). Under it the fills stay in whole lots unless
    they complete the order."""
    if side not in ("buy", "sell"):
        raise ValueError(f"side must be 'buy' or 'sell', got {side!r}")
    if qty <= 0:
        raise ValueError(f"qty must be positive, got {qty}")
    rules = rules or FillRules()
    step = lot_step if rules.lots else 1
    if step <= 0:
        raise ValueError(f"lot_step must be positive, got {lot_step}")
    taken = dict(consumed or {})
    buy = side == "buy"
    bounds = [limit_price_fen, price_cap_fen if buy else None]
    if rules.price_limits:
        bounds.append(up_limit if buy else down_limit)
    known = [b for b in bounds if b is not None]
    bound = (min(known) if buy else max(known)) if known else None
    odd = 0 if buy else qty % step
    remaining = qty
    room = qty if most is None else max(0, min(qty, most))
    fills: list[BookFill] = []
    for i, (px, volume) in enumerate(levels):
        if remaining == 0 or room == 0:
            break
        if px <= 0 or volume <= 0:
            continue
        if bound is not None and (px > bound if buy else px < bound):
            break  # best first: every level after it is further away
        left = min(volume - taken.get(px, 0), room)
        if left <= 0:
            continue
        # all that is left of the order, or whole lots of it keeping back the odd shares of a sell for its last part
        got = remaining if left >= remaining else (min(left, remaining - odd) // step) * step
        if got <= 0:
            continue
        fills.append(BookFill(i, px, got))
        taken[px] = taken.get(px, 0) + got
        remaining -= got
        room -= got
    return tuple(fills)


@dataclass(frozen=True)
class MarketMatch:
    """What a market order of a `market_type` gets on arrival against a quote's book (`match_market_on_book`):
    its `fills`, then what becomes of the rest: `rest_price_fen` set — it rests as a limit (day) order at that
    price; None — it is cancelled. `why` says, for a rest cancelled, which rule cancelled it ("" when nothing is
    left)."""

    fills: tuple[BookFill, ...]
    rest_price_fen: int | None
    why: str


def _first_price(levels: Sequence[tuple[int, int]], consumed: Mapping[int, int] | None) -> int | None:
    """The best price with shares left on it (after what earlier fills on the same quote took), or None."""
    taken = consumed or {}
    for px, volume in levels:
        if px > 0 and volume - taken.get(px, 0) > 0:
            return px
    return None


def match_market_on_book(
    market_type: str,
    *,
    side: str,
    qty: int,
    levels: Sequence[tuple[int, int]],
    own_levels: Sequence[tuple[int, int]] = (),
    protection_fen: int | None = None,
    consumed: Mapping[int, int] | None = None,
    price_cap_fen: int | None = None,
    up_limit: int | None = None,
    down_limit: int | None = None,
    lot_step: int = 100,
    rules: FillRules | None = None,
) -> MarketMatch:
    """A market order of `market_type` (`shared.core.market.order_types`) arriving against a quote's book: `levels`
    the other side best first (the asks for a buy), `own_levels` its own side (the bids for a buy), both the
    displayed depth (five levels). `protection_fen`: a STAR market order's protection price (a buy fills and rests
    at no more, a sell at no less). The other bounds, lots and `consumed` are `match_on_book`'s.

    - `best5_cancel`: up to the best five levels, the rest cancelled.
    - `ioc`: every level shown (the quote shows five: the same as best5_cancel on displayed depth), rest cancelled.
    - `fok`: the whole qty from the levels shown, or nothing (cancelled).
    - `best5_limit`: up to five levels; the rest rests as a limit at the last fill's price, or with no fill at the
      best own-side price; cancelled when there is neither.
    - `counterparty_best`: a limit at the best opposite price: it takes that level, the rest rests there;
      cancelled when the other side is empty.
    - `own_best`: a limit at the best own-side price (which does not cross: it rests whole); cancelled when its own
      side is empty.

    A resting price is bounded by the protection price (a buy never rests above it, a sell never below)."""
    buy = side == "buy"
    common = dict(
        side=side, qty=qty, consumed=consumed, price_cap_fen=price_cap_fen, up_limit=up_limit,
        down_limit=down_limit, lot_step=lot_step, rules=rules,
    )  # fmt: skip

    def take(depth: Sequence[tuple[int, int]], limit: int | None) -> tuple[BookFill, ...]:
        return match_on_book(limit_price_fen=limit, levels=depth, **common)  # type: ignore[arg-type]

    def bounded(px: int) -> int:
        if protection_fen is None:
            return px
        return min(px, protection_fen) if buy else max(px, protection_fen)

    def done(fills: tuple[BookFill, ...], rest_at: int | None, why: str) -> MarketMatch:
        left = qty - sum(f.qty for f in fills)
        if left == 0:
            return MarketMatch(fills, None, "")
        return MarketMatch(fills, rest_at, "" if rest_at is not None else why)

    if market_type in ("best5_cancel", "ioc"):
        depth = levels[:5] if market_type == "best5_cancel" else levels
        return done(take(depth, protection_fen), None, "no_liquidity")
    if market_type == "fok":
        fills = take(levels, protection_fen)
        if sum(f.qty for f in fills) < qty:
            return MarketMatch((), None, "fok_not_filled")
        return MarketMatch(fills, None, "")
    if market_type == "best5_limit":
        fills = take(levels[:5], protection_fen)
        if fills:
            return done(fills, bounded(fills[-1].price_fen), "")
        own = _first_price(own_levels, None)
        return done((), None if own is None else bounded(own), "no_liquidity")
    if market_type == "counterparty_best":
        best = _first_price(levels, consumed)
        if best is None:
            return MarketMatch((), None, "no_counterparty")
        price = bounded(best)
        return done(take(levels, price), price, "")
    if market_type == "own_best":
        own = _first_price(own_levels, None)
        if own is None:
            return MarketMatch((), None, "no_own_side")
        price = bounded(own)
        return done(take(levels, price), price, "")
    raise ValueError(f"unknown market_type {market_type!r}")

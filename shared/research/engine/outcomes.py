"""How an order ends in the engine: its status, its kind and the reason it was not (fully) filled, as small ints in
the run's arrays and as the names a result shows. A leaf module, so the engine and the result both read it."""

STATUS_FILLED, STATUS_PARTIAL, STATUS_CANCELLED, STATUS_REJECTED = 0, 1, 2, 3
STATUS_NAMES = ("filled", "partially_filled", "cancelled", "rejected")
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
)

"""Exact money: Decimal at the edges, integer fen (0.01 CNY) inside hot loops. Never float."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

FEN = Decimal("0.01")
PRICE_TICK = Decimal("0.01")  # A-share stocks quote in fen (SSE/SZSE trading rules)


def money(value: Decimal | int | str) -> Decimal:
    """A CNY amount rounded half-up to the fen (the rounding the exchanges and brokers use for fees)."""
    try:
        return Decimal(value).quantize(FEN, rounding=ROUND_HALF_UP)
    except InvalidOperation as exc:
        raise ValueError(f"{value!r} is not an amount") from exc


def price(value: Decimal | int | str) -> Decimal:
    """A price that must already lie on the 0.01 tick; refuses to round silently."""
    try:
        d = Decimal(str(value)) if not isinstance(value, Decimal) else value
    except InvalidOperation as exc:
        raise ValueError(f"{value!r} is not a price") from exc
    if d != d.quantize(PRICE_TICK):
        raise ValueError(f"{value} is not on the {PRICE_TICK} tick")
    return d.quantize(PRICE_TICK)


def to_fen(value: Decimal) -> int:
    """Exact conversion; refuses amounts with fractions of a fen."""
    fen = value * 100
    if fen != fen.to_integral_value():
        raise ValueError(f"{value} has fractions of a fen")
    return int(fen)


def from_fen(fen: int) -> Decimal:
    return (Decimal(fen) / 100).quantize(FEN)

"""The one money column type. `CnyFen` stores a CNY amount as a whole number of fen in a BIGINT column (exact on
MariaDB and SQLite alike, and summable in SQL) and hands the code a `Decimal` with two places, so no table code
converts by hand. An amount with a fraction of a fen, a float or a bool is refused on the way in, never rounded.

Every money column is stored this way: execution's, the paper broker's and the backtest's (the canonical form,
docs/design.md). Risk's decisions keep the price as the client asked it in exact text
(`services.risk.store.DecimalText`): it may be off the tick, which is why it was refused, so it is not an amount this
type could hold. The timestamp column type is `shared.platform.clock.UtcDateTime`.

`JsonDocument` is a JSON column for large documents written often (a strategy instance's book): written by orjson,
several times faster than the standard library's encoder, read as any JSON column."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import JSON, BigInteger, Dialect
from sqlalchemy.types import TypeDecorator

from shared.core.domain.money import from_fen, to_fen


class CnyFen(TypeDecorator[Decimal]):
    """A CNY amount column: binds a Decimal as integer fen, reads a Decimal to the fen. An int is refused too: it
    could be fen already, and would be stored a hundred times over."""

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> int | None:
        if value is None:
            return None
        if not isinstance(value, Decimal):
            raise TypeError(f"a money column takes a Decimal amount, not {type(value).__name__} {value!r}")
        return to_fen(value)  # ValueError for a fraction of a fen

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        # MariaDB answers SUM() over a BIGINT as a DECIMAL: a whole number of fen all the same.
        return None if value is None else from_fen(int(value))


def _refuse(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON")


# What the standard library writes, orjson writes the same; what the standard library refuses (a date, a dataclass, a
# numpy value), orjson passes to `_refuse` rather than write it its own way, and the standard library then raises as
# a JSON column would.
_ORJSON = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_SUBCLASS


def json_text(value: Any, *, sort_keys: bool = False) -> str:
    """`value` as JSON text: orjson's, or the standard library's where orjson does not write it (an integer beyond
    64 bits; a key that is not a string; a subclass of str, int, float, dict or list), which raises for what JSON
    cannot hold. A float that is not finite is written null (JSON has no NaN; the standard library wrote `NaN`, which
    MariaDB's JSON columns refuse): a numpy float array reads it back as NaN."""
    option = _ORJSON | orjson.OPT_SORT_KEYS if sort_keys else _ORJSON
    try:
        return orjson.dumps(value, default=_refuse, option=option).decode()
    except TypeError:
        return json.dumps(value, sort_keys=sort_keys)


class JsonDocument(TypeDecorator[Any]):
    """A JSON column (the same DDL as `JSON`) whose values are written by orjson (`json_text`) and read as
    `JSON` reads them."""

    impl = JSON
    cache_ok = True

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], str | None]:
        def process(value: Any) -> str | None:
            return json_text(value)  # None as JSON's null, as a JSON column writes it

        return process

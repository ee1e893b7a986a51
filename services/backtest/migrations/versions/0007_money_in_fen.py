"""Money in whole fen: backtests.initial_cash and backtest_equity.equity (DECIMAL(20,2) on MariaDB, text on SQLite)
become initial_cash_fen and equity_fen, BIGINT (the one money column type, shared.platform.columns.CnyFen). Every
stored amount is converted exactly (CNY x 100) and checked before anything changes: one with a fraction of a fen stops
the migration rather than being rounded. The downgrade converts back.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from collections.abc import Iterator, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 500
# The money columns (as named before this revision; after it, <name>_fen) and the keys of their tables.
COLUMNS = (
    ("backtests", ("backtest_id",), "initial_cash"),
    ("backtest_equity", ("backtest_id", "trade_date"), "equity"),
)
# Tables other tables reference (ON DELETE CASCADE): SQLite's batch mode must not copy-and-drop them (_swap).
REFERENCED = frozenset({"backtests"})
# The type the columns had before this revision (0001), written out here so that the downgrade restores it.
OLD_MONEY = sa.Numeric(20, 2).with_variant(sa.String(24), "sqlite")


class FractionOfAFen(ValueError):
    """A stored amount that is not a whole number of fen: converting it would change it."""


def to_fen(table: str, key: tuple[Any, ...], value: Any) -> int:
    try:
        fen = Decimal(str(value)) * 100  # MariaDB hands back a Decimal, SQLite the text the service wrote
    except InvalidOperation as exc:
        raise FractionOfAFen(f"{table} {key}: {value!r} is not an amount") from exc
    if not fen.is_finite() or fen != fen.to_integral_value():
        raise FractionOfAFen(f"{table} {key}: {value!r} CNY is not a whole number of fen; fix it before migrating")
    return int(fen)


def from_fen(fen: Any) -> str:
    return str((Decimal(int(fen)) / 100).quantize(Decimal("0.01")))  # text: exact into DECIMAL and into SQLite


def _rows(bind: sa.Connection, table: str, keys: tuple[str, ...], column: str) -> Iterator[Sequence[Any]]:
    """The table's keys and `column`, in batches by key (keyset paging: memory stays flat however many rows)."""
    t = sa.table(table, *(sa.column(k) for k in keys), sa.column(column))
    key_columns = [t.c[k] for k in keys]
    after: tuple[Any, ...] | None = None
    while True:
        query = sa.select(*key_columns, t.c[column]).order_by(*key_columns).limit(BATCH)
        if after is not None:
            query = query.where(sa.tuple_(*key_columns) > sa.tuple_(*after))
        rows = bind.execute(query).all()
        if not rows:
            return
        yield rows
        after = tuple(rows[-1][: len(keys)])


def _convert(table: str, keys: tuple[str, ...], source: str, target: str, convert: Any) -> None:
    bind = op.get_bind()
    t = sa.table(table, *(sa.column(k) for k in keys), sa.column(target))
    update = (
        sa.update(t).where(*(t.c[k] == sa.bindparam(f"k_{k}") for k in keys)).values({target: sa.bindparam("v_value")})
    )
    for rows in _rows(bind, table, keys, source):
        values = []
        for row in rows:
            key = tuple(row[: len(keys)])
            keyed = {f"k_{k}": v for k, v in zip(keys, key, strict=True)}
            values.append({**keyed, "v_value": convert(table, key, row[-1])})
        bind.execute(update, values)


def _swap(table: str, source: str, target: str, target_type: sa.types.TypeEngine[Any], convert: Any) -> None:
    """Add `target` of `target_type`, fill it from `source` through `convert`, drop `source`."""
    keys = next(k for t, k, _ in COLUMNS if t == table)
    bind = op.get_bind()
    if bind.dialect.name == "sqlite" and table in REFERENCED:
        # Not batch mode, which copies the table and drops the original: with foreign_keys=ON (every connection,
        # shared/platform/db.py; the pragma cannot be turned off inside the migration's transaction) that DROP deletes
        # the rows referencing it (ON DELETE CASCADE: the equity curves, the artifacts). Native ADD/DROP COLUMN
        # (SQLite >= 3.35) change the table in place. SQLite adds a column NOT NULL only with a default, and a
        # default amount would hide a missing one: this column stays nullable on SQLite (the service always writes it).
        version = tuple(int(part) for part in bind.exec_driver_sql("SELECT sqlite_version()").scalar_one().split("."))
        if version < (3, 35, 0):
            raise RuntimeError(f"this migration of {table} needs SQLite 3.35 or newer (DROP COLUMN), not {version}")
        op.add_column(table, sa.Column(target, target_type, nullable=True))
        _convert(table, keys, source, target, convert)
        op.drop_column(table, source)
        return
    with op.batch_alter_table(table) as batch:
        batch.add_column(sa.Column(target, target_type, nullable=True))
    _convert(table, keys, source, target, convert)
    with op.batch_alter_table(table) as batch:
        batch.drop_column(source)
        batch.alter_column(target, existing_type=target_type, nullable=False)


def upgrade() -> None:
    bind = op.get_bind()
    for table, keys, column in COLUMNS:  # every amount checked before anything changes (MariaDB commits DDL at once)
        for rows in _rows(bind, table, keys, column):
            for row in rows:
                to_fen(table, tuple(row[: len(keys)]), row[-1])
    for table, _, column in COLUMNS:
        _swap(table, column, f"{column}_fen", sa.BigInteger(), to_fen)


def downgrade() -> None:
    for table, _, column in COLUMNS:
        _swap(table, f"{column}_fen", column, OLD_MONEY, lambda _t, _k, fen: from_fen(fen))

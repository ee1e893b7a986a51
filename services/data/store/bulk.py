"""Bulk writes: whole columns (in storage units) as idempotent upserts in executemany batches; on MariaDB straight
to the asyncmy driver over a few connections at once, in the table's key order (docs/data-ingest.md)."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Column, Date, Float, Numeric, Table

from services.data import units
from services.data.store.base import StoreBase, upsert_statement

log = logging.getLogger(__name__)

# The bulk path: rows per batch, and statement bytes per round trip (asyncmy folds a batch into multi-row INSERTs
# of at most this size; 4 MB stays well inside MariaDB's default 16 MB max_allowed_packet).
BULK_BATCH_ROWS = 20_000
BULK_STATEMENT_BYTES = 4_000_000
# Connections writing at once: while the server inserts one batch, Python encodes the next (measured on 2 cores:
# 1 connection ~140k rows/s, 2 ~220k, 3 no better).
BULK_CONNECTIONS = 2

_MULTI_ROW_INSERT = re.compile(r"^\s*INSERT\b.+\bVALUES\s*\((?:%s, )*%s\)\s*ON DUPLICATE KEY UPDATE [^;]+$", re.S)


def key_order(columns: dict[str, np.ndarray], keys: Sequence[str]) -> np.ndarray | None:
    """The row permutation that puts `columns` in the order of `keys` (a table's primary key), or None when the rows
    are in that order already.

    Bulk writes go to MariaDB in key order: the per-stock tables are clustered by (ts_code, trade_date), and rows in
    another order (a day of the whole market, a file sorted by date) land one per page all over the table; once it
    outgrows the buffer pool every such row waits for a page read. In key order a stock's rows fill its pages
    together (docs/data-ingest.md, "Write order": 57,803 -> 108,789 rows/s). Codes compare as the ASCII text they
    are, which is how MariaDB orders them too; a key column holding None makes no order (None is returned)."""
    if not keys or any(k not in columns for k in keys):
        return None
    n = len(columns[keys[0]])
    if n < 2:
        return None
    ranks: list[np.ndarray] = []
    for name in keys:
        try:
            codes, _ = pd.factorize(columns[name], sort=True, use_na_sentinel=True)
        except TypeError:  # values that do not compare (e.g. dates mixed with timestamps): write in the given order
            return None
        if (codes < 0).any():
            return None
        ranks.append(codes)
    # In order when every row is after its predecessor on the first key that differs (or equal on all of them).
    after = np.zeros(n - 1, dtype=bool)
    tied = np.ones(n - 1, dtype=bool)
    for rank in ranks:
        after |= tied & (rank[1:] > rank[:-1])
        tied &= rank[1:] == rank[:-1]
    if bool((after | tied).all()):
        return None
    return np.lexsort(ranks[::-1])  # stable: rows with equal keys keep their order


def driver_rows(params: Sequence[np.ndarray], order: np.ndarray | None, start: int, stop: int) -> list[tuple[Any, ...]]:
    """Rows start..stop of the write (in `order` when given: see `key_order`) as the driver's parameter tuples."""
    picked: slice | np.ndarray = slice(start, stop) if order is None else order[start:stop]
    return list(zip(*(p[picked].tolist() for p in params), strict=True))


def _driver_column(values: np.ndarray, column: Column[Any]) -> np.ndarray:
    """A storage column as the values asyncmy escapes fastest: ints, str, None. Dates go as ISO text (each distinct
    date formatted once) and adj factors, held as int millionths, as exact 6-decimal text."""
    if isinstance(column.type, Date):
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
        table = np.asarray([d.isoformat() for d in uniques.tolist()] + [None], dtype=object)
        return table[codes]
    if isinstance(column.type, Numeric) and not isinstance(column.type, Float) and values.dtype.kind == "i":
        codes, uniques = pd.factorize(values)
        table = np.asarray([_micro_text(int(m)) for m in uniques.tolist()], dtype=object)
        return table[codes]
    return values


def _sqlite_column(values: np.ndarray, column: Column[Any]) -> np.ndarray:
    if isinstance(column.type, Numeric) and not isinstance(column.type, Float) and values.dtype.kind == "i":
        return np.asarray([Decimal(int(m)).scaleb(-6) for m in values.tolist()], dtype=object)
    return values


def _micro_text(micro: int) -> str:
    whole, frac = divmod(micro, units.MICRO)
    return f"{whole}.{frac:06d}"


class BulkWriter(StoreBase):
    """The bulk upsert every `upsert_*` of a frame goes through."""

    async def _bulk_upsert(
        self, table: Table, columns: dict[str, np.ndarray], on_rows: Callable[[int], None] | None = None
    ) -> int:
        """Upsert whole columns (one array per column of `table`, already in storage units) as executemany batches.

        On MariaDB the batches go to the asyncmy driver directly over BULK_CONNECTIONS connections, each batch its
        own transaction: SQLAlchemy's per-row parameter processing cost more than the server's insert, and with two
        connections Python encodes one batch while the server writes the other. A failure part-way leaves whole
        batches behind, never half a row; the same load run again completes it (every write is an upsert).
        Callers convert and validate the whole frame before calling, so bad input writes nothing.
        `on_rows(k)` is told of every batch of k rows committed (a run's progress while a big write goes on).
        """
        names = [c.name for c in table.columns if c.name in columns]
        n = len(columns[names[0]]) if names else 0
        if n == 0:
            return 0
        committed = [0]  # batches committed so far, counted by the writers
        try:
            if self.db.engine.dialect.name in ("mysql", "mariadb"):
                await self._bulk_upsert_mysql(table, names, columns, n, committed, on_rows)
            else:
                await self._bulk_upsert_sqlite(table, names, columns, n, committed, on_rows)
        except BaseException:
            # A later batch failed, but the committed ones changed the market: cached reads and bulk
            # snapshots of the old data must go all the same.
            if committed[0]:
                await asyncio.shield(self._changed_after_partial_write(table))
            raise
        async for attempt in self.db.transaction():
            async with attempt as session:
                await self._bump_version(session)
        if self.on_change is not None:
            await self.on_change()
        return n

    async def _bulk_upsert_sqlite(
        self,
        table: Table,
        names: list[str],
        columns: dict[str, np.ndarray],
        n: int,
        committed: list[int],
        on_rows: Callable[[int], None] | None,
    ) -> None:
        """SQLite (standalone): SQLAlchemy's executemany, one transaction per batch as on MariaDB. SQLite has one
        writer at a time: a whole import in one transaction (tens of seconds) would lock out every other write
        meanwhile, the run's own progress heartbeat and another process's included, beyond any busy timeout."""
        statement = upsert_statement(self.db.engine.dialect.name, table)
        for start in range(0, n, BULK_BATCH_ROWS):
            stop = min(n, start + BULK_BATCH_ROWS)
            values = [_sqlite_column(columns[name][start:stop], table.c[name]).tolist() for name in names]
            async for attempt in self.db.transaction():
                async with attempt as session:
                    await session.execute(
                        statement, [dict(zip(names, row, strict=True)) for row in zip(*values, strict=True)]
                    )
            committed[0] += 1
            if on_rows is not None:
                on_rows(stop - start)

    async def _changed_after_partial_write(self, table: Table) -> None:
        """Bump the data version and drop cached reads after a bulk write that failed part-way."""
        try:
            async for attempt in self.db.transaction():
                async with attempt as session:
                    await self._bump_version(session)
            if self.on_change is not None:
                await self.on_change()
        except Exception:
            log.warning("could not record the partial write of %s as a data change", table.name, exc_info=True)

    async def _bulk_upsert_mysql(
        self,
        table: Table,
        names: list[str],
        columns: dict[str, np.ndarray],
        n: int,
        committed: list[int],
        on_rows: Callable[[int], None] | None,
    ) -> None:
        compiled = upsert_statement("mysql", table).compile(dialect=self.db.engine.dialect, column_keys=names)
        sql = str(compiled)
        order = list(compiled.positiontup or [])
        if sorted(order) != sorted(names) or not _MULTI_ROW_INSERT.match(sql):
            # asyncmy folds rows into multi-row INSERTs only for statements its pattern recognises; anything else
            # would silently run one statement per row.
            raise RuntimeError(f"bulk upsert of {table.name}: unexpected statement {sql[:80]}...")
        params = [_driver_column(columns[name], table.c[name]) for name in order]
        rows_in_key_order = key_order(columns, [c.name for c in table.primary_key.columns])
        queue: asyncio.Queue[tuple[int, int] | None] = asyncio.Queue(maxsize=BULK_CONNECTIONS)

        async def writer() -> None:
            async with self.db.engine.connect() as connection:
                raw = await connection.get_raw_connection()
                driver: Any = raw.driver_connection
                cursor = driver.cursor()
                cursor.max_stmt_length = BULK_STATEMENT_BYTES
                try:
                    while (span := await queue.get()) is not None:
                        rows = driver_rows(params, rows_in_key_order, *span)

                        async def write_span(rows: Any = rows) -> None:
                            await cursor.executemany(sql, rows)  # an upsert: running it again changes nothing
                            await driver.commit()

                        await self.db.run_raw(write_span, driver.rollback)
                        committed[0] += 1
                        if on_rows is not None:
                            on_rows(span[1] - span[0])
                except BaseException:
                    await driver.rollback()
                    raise
                finally:
                    await cursor.close()

        async def feeder() -> None:
            for start in range(0, n, BULK_BATCH_ROWS):
                await queue.put((start, min(n, start + BULK_BATCH_ROWS)))
            for _ in range(BULK_CONNECTIONS):
                await queue.put(None)

        workers = [asyncio.create_task(writer()) for _ in range(min(BULK_CONNECTIONS, -(-n // BULK_BATCH_ROWS)))]
        feeding = asyncio.create_task(feeder())
        try:
            await asyncio.gather(*workers)
        finally:
            feeding.cancel()
            for task in workers:
                task.cancel()

"""What every part of execution's store shares: the schema's metadata (one database, one set of migrations), the
outbox table, the auto-increment id type and the store's base class."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import BigInteger, Column, Integer, Select, Table, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.platform.db import Database, new_metadata
from shared.platform.outbox import outbox_table

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"

# Autoincrement needs INTEGER PRIMARY KEY on SQLite; BIGINT elsewhere.
AutoId = BigInteger().with_variant(Integer(), "sqlite")

metadata = new_metadata()

outbox = outbox_table(metadata)


class StoreBase:
    def __init__(self, db: Database, *, source: str = "execution", opening_cash_fen: int = 0) -> None:
        self.db = db
        self.source = source
        self.opening_cash_fen = opening_cash_fen  # the first ledger entry of every account

    # --- for tests and operators ------------------------------------------------------------------------

    async def count(self, table: Table, **where: Any) -> int:
        query = select(func.count()).select_from(table)
        for column, value in where.items():
            query = query.where(table.c[column] == value)
        async for attempt in self.db.transaction():
            async with attempt as s:
                count = int((await s.execute(query)).scalar_one())
        return count


async def listed_after(
    session: AsyncConnection, query: Select[Any], table: Table, key: Column[Any], after: str, account_id: str | None
) -> Select[Any]:
    """`query` narrowed to the rows recorded after row `after` (by `created_at`, then `key`): the cursor of a listing
    in creation order. Raises LookupError when `after` names no row of the listing (another account's is none)."""
    cursor = (await session.execute(select(table.c.created_at, table.c.account_id).where(key == after))).first()
    if cursor is None or (account_id is not None and cursor.account_id != account_id):
        raise LookupError(after)
    return query.where(
        or_(table.c.created_at > cursor.created_at, and_(table.c.created_at == cursor.created_at, key > after))
    )

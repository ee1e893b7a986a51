"""Execution's migration 0002 (cash ledger, admission lock, orders.price_cap_fen) on a database that has orders,
their transitions and trades: upgraded, the orders keep their rows and a buy its reservation (an open market buy
from before has no cap and reserves nothing); downgraded, every row and reference is still there. On MariaDB and
on SQLite (whose foreign keys are on for every connection)."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from services.execution.store import MIGRATIONS, ExecutionStore
from shared.platform.db import Database
from shared.platform.observability import new_id
from tests.conftest import Backing

pytestmark = pytest.mark.integration

AT = datetime(2025, 1, 2, 2, 0)
# (order_id, side, order_type, qty, price_fen, status): a resting limit buy, a market buy left accepted, a sell.
ORDERS = [
    ("o-limit-buy", "buy", "limit", 1000, 1000, "submitted"),
    ("o-market-buy", "buy", "market", 1000, None, "accepted"),
    ("o-sell", "sell", "limit", 500, 1100, "submitted"),
    ("o-filled", "buy", "limit", 200, 1000, "filled"),
]


def _alembic(connection: Connection, action: str, target: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    getattr(command, action)(config, target)


async def _run(db: Database, action: str, target: str) -> None:
    async with db.engine.begin() as conn:
        await conn.run_sync(_alembic, action, target)


def _columns(connection: Connection, table: str) -> set[str]:
    return {c["name"] for c in inspect(connection).get_columns(table)}


async def _check(db: Database) -> None:
    await db.connect()
    try:
        await _run(db, "upgrade", "0001")
        async with db.session() as s:
            for order_id, side, order_type, qty, price_fen, status in ORDERS:
                await s.execute(
                    text(
                        "INSERT INTO orders (order_id, client_order_id, account_id, decision_id, ts_code, side,"
                        " order_type, qty, price_fen, status, filled_qty, filled_amount_fen, version, created_at,"
                        " updated_at) VALUES (:o, :o, 'acct-m', :o, '600000.SH', :side, :type, :qty, :price, :status,"
                        " :filled, :amount, 1, :at, :at)"
                    ),
                    {
                        "o": order_id,
                        "side": side,
                        "type": order_type,
                        "qty": qty,
                        "price": price_fen,
                        "status": status,
                        "filled": qty if status == "filled" else 0,
                        "amount": qty * price_fen if status == "filled" and price_fen else 0,
                        "at": AT,
                    },
                )
                await s.execute(
                    text(
                        "INSERT INTO order_transitions (order_id, from_status, to_status, at) VALUES (:o, NULL, 'accepted', :at)"
                    ),
                    {"o": order_id, "at": AT},
                )
            await s.execute(
                text(
                    "INSERT INTO trades (trade_id, order_id, client_order_id, account_id, ts_code, side, qty, price_fen,"
                    " amount_fen, commission_fen, stamp_duty_fen, transfer_fee_fen, traded_at, created_at) VALUES"
                    " ('f-1', 'o-filled', 'o-filled', 'acct-m', '600000.SH', 'buy', 200, 1000, 200000, 500, 0, 2,"
                    " :at, :at)"
                ),
                {"at": AT},
            )

        await _run(db, "upgrade", "head")
        async with db.session() as s:
            caps = dict((await s.execute(text("SELECT order_id, price_cap_fen FROM orders"))).all())
        # A limit buy is capped at its limit price; a market buy from before has no cap; sells have none.
        assert caps == {"o-limit-buy": 1000, "o-market-buy": None, "o-sell": None, "o-filled": 1000}
        # 0011: the market order from before was placed as counterparty best (written into it); limits have no type;
        # every order is a day order
        async with db.session() as s:
            typed = {r[0]: (r[1], r[2]) for r in await s.execute(
                text("SELECT order_id, market_type, time_in_force FROM orders"))}  # fmt: skip
        assert typed == {"o-limit-buy": (None, "day"), "o-market-buy": ("counterparty_best", "day"),
                         "o-sell": (None, "day"), "o-filled": (None, "day")}  # fmt: skip
        # read back as the domain order: its type and time in force
        market = [o for o in await ExecutionStore(db).open_orders_of("acct-m") if o.order.order_id == "o-market-buy"]
        assert [(o.order.market_type, o.order.time_in_force) for o in market] == [("counterparty_best", "day")]
        # Opening 100,000.00. Reserved: the resting limit buy only, 1,000 x 10.00 + 5.00 + 0.10 = 10,005.10;
        # the market buy without a cap reserves nothing (not even the 5.00 commission minimum); the filled one
        # is final. (0001 had no ledger: the fill before the upgrade is not in the balance.)
        store = ExecutionStore(db, opening_cash_fen=10_000_000)
        # No accounts row yet, but orders: an admin or a service may name the account (GET /v1/account).
        assert await store.known_account("acct-m") is True
        assert await store.known_account("acct-never") is False
        cash = await store.cash("acct-m", date(2025, 1, 2))
        assert (cash.balance_fen, cash.reserved_fen) == (10_000_000, 1_000_510)

        await _run(db, "downgrade", "0001")
        async with db.engine.connect() as conn:
            assert "price_cap_fen" not in await conn.run_sync(_columns, "orders")
            tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
            assert "accounts" not in tables and "cash_ledger" not in tables
        async with db.session() as s:
            assert (await s.execute(text("SELECT count(*) FROM orders"))).scalar_one() == 4
            assert (await s.execute(text("SELECT count(*) FROM order_transitions"))).scalar_one() == 4
            joined = text("SELECT count(*) FROM trades JOIN orders ON orders.order_id = trades.order_id")
            assert (await s.execute(joined)).scalar_one() == 1
            if db.engine.dialect.name == "sqlite":
                assert (await s.execute(text("PRAGMA foreign_key_check"))).all() == []

        await _run(db, "upgrade", "head")  # and back up again
        async with db.session() as s:
            caps = dict((await s.execute(text("SELECT order_id, price_cap_fen FROM orders"))).all())
        assert caps["o-limit-buy"] == 1000 and caps["o-market-buy"] is None
    finally:
        await db.dispose()


async def test_upgrade_and_downgrade_with_orders_on_mariadb(backing: Backing) -> None:
    url = backing.database_url(f"mig{new_id()[:8].lower()}").format(service="execution")
    await _check(Database(url))


async def test_upgrade_and_downgrade_with_orders_on_sqlite(tmp_path: Path) -> None:
    await _check(Database(f"sqlite+aiosqlite:///{tmp_path}/execution.db"))

"""Migration 0007: the backtest's money columns go from DECIMAL(20,2) (text on SQLite) to BIGINT fen (`<name>_fen`),
converting the rows the old schema wrote exactly, refusing an amount with a fraction of a fen, and undone by its downgrade."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from services.backtest.app import create_app
from services.backtest.store import BacktestStore
from shared.platform.app import Infra
from shared.platform.bus import MemoryBus
from shared.platform.cache import MemoryCache
from shared.platform.db import Database
from shared.platform.http import ServiceDirectory
from shared.platform.internal_auth import INTERNAL_HEADER, Principal, mint_internal_token
from tests.conftest import Backing
from tests.integration.backtest.test_backtest_search import _migrate_to, _settings

pytestmark = pytest.mark.integration

DAYS = 300  # two runs' curves: more rows than the migration reads in one batch (500)
FIRST_DAY = date(2024, 1, 1)


def _equity(run: int, day: int) -> str:
    """The old schema's text of a curve point: distinct cents per row, so a row converted from another shows."""
    return f"{1_000_000 + run * 10_000 + day}.{(day * 7 + run) % 100:02d}"


async def _old_rows(db: Database, runs: dict[str, str]) -> None:
    """Rows as revision 0006 stored them: the amounts as DECIMAL(20,2) text (MariaDB) / the text itself (SQLite)."""
    async with db.engine.begin() as conn:
        for run, (backtest_id, cash) in enumerate(runs.items()):
            await conn.execute(
                text(
                    "INSERT INTO backtests (backtest_id, owner, strategy, params, kind, ts_codes, start_date, end_date,"
                    " initial_cash, status, attempts, created_at, cancel_requested) VALUES (:id, 'alice', 'dual_ma',"
                    " '{}', 'single', '[\"600519.SH\"]', '2024-01-01', '2024-12-31', :cash, 'succeeded', 1,"
                    " '2026-01-01 00:00:00.000000', 0)"
                ),
                {"id": backtest_id, "cash": cash},
            )
            await conn.execute(
                text("INSERT INTO backtest_equity (backtest_id, trade_date, equity) VALUES (:id, :day, :equity)"),
                [
                    {"id": backtest_id, "day": FIRST_DAY + timedelta(days=d), "equity": _equity(run, d)}
                    for d in range(DAYS)
                ],
            )


def _raw(connection: Connection, sql: str) -> list[Any]:
    return [tuple(r) for r in connection.execute(text(sql)).all()]


def _type(connection: Connection, table: str, column: str) -> str:
    return str(next(c["type"] for c in inspect(connection).get_columns(table) if c["name"] == column)).upper()


@pytest.mark.parametrize("backend", ["mariadb", "sqlite"])
async def test_the_money_columns_become_whole_fen_and_the_api_answers_the_same(
    backend: str, backing: Backing, tmp_path: Path
) -> None:
    settings = _settings(backend, backing, tmp_path)
    db = Database(settings.database_url_for("backtest"))
    await db.connect()
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(_migrate_to, "0006")
        await _old_rows(db, {"m1": "1234567.89", "m2": "0.01"})
        await BacktestStore(db).migrate()  # 0007

        async with db.engine.begin() as conn:
            assert await conn.run_sync(_raw, "SELECT backtest_id, initial_cash_fen FROM backtests ORDER BY 1") == [
                ("m1", 123456789),
                ("m2", 1),
            ]
            equity = await conn.run_sync(
                _raw, "SELECT backtest_id, trade_date, equity_fen FROM backtest_equity ORDER BY 1, 2"
            )
            assert "INT" in await conn.run_sync(_type, "backtest_equity", "equity_fen")
        assert len(equity) == 2 * DAYS
        for run, backtest_id in enumerate(("m1", "m2")):
            fen = [int(e) for b, _, e in equity if b == backtest_id]
            assert fen == [int(_equity(run, d).replace(".", "")) for d in range(DAYS)]
    finally:
        await db.dispose()

    # the API answers money as it did: decimal strings with two places
    bus = MemoryBus()
    infra = Infra(settings=settings, bus=bus, cache=MemoryCache(), services=ServiceDirectory(settings, {}), shared=True)
    app = create_app(settings, infra, strategies={})
    headers = {INTERNAL_HEADER: mint_internal_token(settings.internal_secret, Principal("alice", "trader"))}
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        detail = (await client.get("/v1/backtests/m1", headers=headers)).json()
        small = (await client.get("/v1/backtests/m2", headers=headers)).json()
    await bus.close()
    assert detail["initial_cash"] == "1234567.89"
    assert small["initial_cash"] == "0.01"
    assert detail["equity_curve"][0] == {"trade_date": "2024-01-01", "equity": "1000000.00"}
    assert [p["equity"] for p in detail["equity_curve"]] == [_equity(0, d) for d in range(DAYS)]

    # and the downgrade puts the amounts back as they were
    db = Database(settings.database_url_for("backtest"))
    await db.connect()
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(_migrate_to, "0006", down=True)
            cash = await conn.run_sync(_raw, "SELECT backtest_id, initial_cash FROM backtests ORDER BY 1")
            equity = await conn.run_sync(_raw, "SELECT equity FROM backtest_equity WHERE backtest_id = 'm2' ORDER BY 1")
            kind = await conn.run_sync(_type, "backtests", "initial_cash")
            columns = await conn.run_sync(lambda c: [col["name"] for col in inspect(c).get_columns("backtests")])
        assert [(b, Decimal(str(c))) for b, c in cash] == [("m1", Decimal("1234567.89")), ("m2", Decimal("0.01"))]
        assert sorted(Decimal(str(e)) for (e,) in equity) == sorted(Decimal(_equity(1, d)) for d in range(DAYS))
        assert kind == ("VARCHAR(24)" if backend == "sqlite" else "DECIMAL(20, 2)")
        assert "initial_cash_fen" not in columns
    finally:
        await db.dispose()


async def test_an_amount_with_a_fraction_of_a_fen_stops_the_migration_and_changes_nothing(tmp_path: Path) -> None:
    # Only SQLite's text column can hold one: MariaDB's DECIMAL(20,2) has two places at most.
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/backtest.db")
    await db.connect()
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(_migrate_to, "0006")
        await _old_rows(db, {"ok": "100.00", "odd": "10.005"})
        with pytest.raises(ValueError, match=r"10\.005.*not a whole number of fen"):
            await BacktestStore(db).migrate()
        async with db.engine.begin() as conn:
            cash = await conn.run_sync(_raw, "SELECT backtest_id, initial_cash FROM backtests ORDER BY 1")
            columns = await conn.run_sync(lambda c: [col["name"] for col in inspect(c).get_columns("backtests")])
            revision = await conn.run_sync(_raw, "SELECT version_num FROM alembic_version")
        assert cash == [("odd", "10.005"), ("ok", "100.00")]
        assert "initial_cash_fen" not in columns
        assert revision == [("0006",)]
    finally:
        await db.dispose()


async def test_downgrading_on_sqlite_keeps_the_rows_that_reference_a_run(tmp_path: Path) -> None:
    # Copying `backtests` and dropping the original (alembic's batch mode) would cascade-delete its curve.
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/backtest.db")
    await db.connect()
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(_migrate_to, "0006")
        await _old_rows(db, {"kept": "500.00"})
        await BacktestStore(db).migrate()
        async with db.engine.begin() as conn:
            await conn.run_sync(_migrate_to, "0005", down=True)  # 0007's and 0006's downgrades
            cash = await conn.run_sync(_raw, "SELECT backtest_id, initial_cash FROM backtests")
            curve = await conn.run_sync(_raw, "SELECT count(*), min(equity) FROM backtest_equity")
        assert cash == [("kept", "500.00")]
        assert curve == [(DAYS, _equity(0, 0))]
    finally:
        await db.dispose()

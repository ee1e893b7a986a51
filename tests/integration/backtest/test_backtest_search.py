"""Listing and searching backtests by strategy finds the runs with several strategies (stored as "portfolio") by the
strategies of their sleeves, on MariaDB and on SQLite; rows stored before the side table existed are back-filled by
the migration."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import JSON, Date, String, column, insert, inspect, select, table
from sqlalchemy.engine import Connection

from services.backtest.app import create_app
from services.backtest.store import MIGRATIONS_DIR, BacktestKind, BacktestStore, backtests, metadata
from shared.platform.app import Infra
from shared.platform.bus import MemoryBus
from shared.platform.cache import MemoryCache
from shared.platform.clock import UtcDateTime
from shared.platform.db import Database
from shared.platform.http import ServiceDirectory
from shared.platform.internal_auth import INTERNAL_HEADER, Principal, mint_internal_token
from shared.platform.settings import Settings
from strategies.bollinger import Bollinger
from strategies.buy_and_hold import BuyAndHold
from strategies.dual_ma import DualMA
from strategies.momentum import Momentum
from tests.conftest import Backing

pytestmark = pytest.mark.integration

STRATEGIES = {"buy_and_hold": BuyAndHold, "dual_ma": DualMA, "bollinger": Bollinger, "momentum": Momentum}
WINDOW = {"ts_codes": ["600519.SH"], "start": "2024-03-04", "end": "2024-03-07"}
_databases = itertools.count(1)


def _settings(backend: str, backing: Backing, tmp_path: Path) -> Settings:
    """A database of this test's own: a fresh MariaDB database (this run's prefix) or a SQLite file."""
    if backend == "mariadb":
        return backing.settings(scope=f"search{next(_databases)}")
    return Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/{{service}}.db", log_json=False)


@dataclass
class Api:
    settings: Settings
    client: httpx.AsyncClient

    def headers(self, subject: str, role: str = "trader") -> dict[str, str]:
        return {INTERNAL_HEADER: mint_internal_token(self.settings.internal_secret, Principal(subject, role))}

    async def submit(self, body: dict[str, Any], subject: str = "alice") -> str:
        resp = await self.client.post("/v1/backtests", json={**WINDOW, **body}, headers=self.headers(subject))
        assert resp.status_code == 202, resp.text
        return str(resp.json()["backtest_id"])

    async def ids(self, query: str, subject: str = "alice", role: str = "trader") -> list[str]:
        resp = await self.client.get(f"/v1/backtests?{query}", headers=self.headers(subject, role))
        assert resp.status_code == 200, resp.text
        return [b["backtest_id"] for b in resp.json()]


@pytest.fixture(params=["mariadb", "sqlite"])
async def api(request: pytest.FixtureRequest, backing: Backing, tmp_path: Path) -> AsyncIterator[Api]:
    # Only the database matters here: the jobs go to an in-memory queue nobody reads, so the runs stay queued.
    settings = _settings(request.param, backing, tmp_path)
    bus = MemoryBus()
    infra = Infra(settings=settings, bus=bus, cache=MemoryCache(), services=ServiceDirectory(settings, {}), shared=True)
    app = create_app(settings, infra, strategies=STRATEGIES)
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield Api(settings, client)
    await bus.close()


def _sleeves(*specs: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    return {"sleeves": [{"strategy": name, "params": params} for name, params in specs]}


async def test_a_portfolio_is_found_by_each_of_its_strategies_and_by_q(api: Api) -> None:
    # Submitted in this order, so newest first is the reverse. No name or symbol contains a strategy's name and the
    # ids are hex, so q=dual, q=linger and the like can only match a strategy.
    single_dual = await api.submit({"strategy": "dual_ma", "params": {"fast": 5, "slow": 20}, "name": "one"})
    hold = await api.submit({"strategy": "buy_and_hold", "name": "two"})
    mix = await api.submit({**_sleeves(("dual_ma", {}), ("bollinger", {"period": 10})), "name": "mix"})
    momentum = await api.submit({"strategy": "momentum", "name": "three"})
    # one strategy with two parameter sets: one side row, and the run listed once
    two_duals = await api.submit({**_sleeves(("dual_ma", {"fast": 5}), ("dual_ma", {"fast": 10})), "name": "pair"})
    others = await api.submit(_sleeves(("dual_ma", {}), ("bollinger", {})), subject="bob")

    assert await api.ids("") == [two_duals, momentum, mix, hold, single_dual]
    assert await api.ids("strategy=dual_ma") == [two_duals, mix, single_dual]
    assert await api.ids("strategy=bollinger") == [mix]
    assert await api.ids("strategy=portfolio") == [two_duals, mix]  # the stored strategy still finds them all
    assert await api.ids("strategy=momentum") == [momentum]  # a third strategy: not in the portfolio
    assert await api.ids("strategy=buy_and_hold") == [hold]
    assert await api.ids("strategy=dual") == []  # strategy= is the exact name
    assert await api.ids("strategy=Bollinger") == []
    assert await api.ids("q=dual") == [two_duals, mix, single_dual]
    assert await api.ids("q=LINGER") == [mix]  # a case-insensitive substring of a sleeve's strategy
    assert await api.ids("q=momentum") == [momentum]
    assert await api.ids("q=_ma") == [two_duals, mix, single_dual]  # _ is a plain character
    assert await api.ids("q=a%25") == []
    assert await api.ids("strategy=bollinger&q=mix") == [mix]
    assert await api.ids("strategy=bollinger&status=queued") == [mix]
    assert await api.ids("strategy=bollinger&status=succeeded") == []

    # paging counts runs, not sleeves
    assert await api.ids("strategy=dual_ma&limit=2") == [two_duals, mix]
    assert await api.ids("strategy=dual_ma&limit=2&offset=2") == [single_dual]
    assert await api.ids("q=dual&limit=1&offset=1") == [mix]
    assert await api.ids("limit=2&offset=1") == [momentum, mix]

    # a user sees only their own runs; an admin sees everyone's
    assert await api.ids("strategy=bollinger", "bob") == [others]
    assert await api.ids("q=boll", "bob") == [others]
    assert await api.ids("strategy=bollinger", "carol") == []
    assert await api.ids("strategy=bollinger", "root", "admin") == [others, mix]
    # owner= narrows an admin's list to one user's runs; anyone else asking for another user's finds nothing
    assert await api.ids("owner=bob", "root", "admin") == [others]
    assert await api.ids("owner=alice&strategy=bollinger", "root", "admin") == [mix]
    assert await api.ids("owner=nobody", "root", "admin") == []
    assert await api.ids("owner=bob") == []
    assert await api.ids("owner=alice&q=mix") == [mix]
    refused = await api.client.get("/v1/backtests?owner=", headers=api.headers("root", "admin"))
    assert refused.status_code == 422


def _migrate_to(connection: Connection, revision: str, *, down: bool = False) -> None:
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    (command.downgrade if down else command.upgrade)(cfg, revision)


def _side_table_differences(connection: Connection) -> list[Any]:
    """What the migrated backtest_strategies lacks or has beyond its declaration in store.py."""

    def side_table(_: Any, name: str | None, type_: str, *__: Any) -> bool:
        return type_ != "table" or name == "backtest_strategies"

    context = MigrationContext.configure(connection, opts={"compare_type": True, "include_object": side_table})
    return list(compare_metadata(context, metadata))


# The backtests table as revisions 0004-0006 had it (the columns the rows below fill; later ones take their defaults):
# the initial cash in CNY, DECIMAL(20,2) (text on SQLite), which 0007 turns into initial_cash_fen.
OLD_BACKTESTS = table(
    "backtests",
    *(column(name) for name in ("backtest_id", "owner", "strategy", "attempts", "cancel_requested", "status")),
    column("params", JSON), column("ts_codes", JSON), column("start_date", Date), column("end_date", Date),
    column("initial_cash", String), column("created_at", UtcDateTime),
)  # fmt: skip


async def _insert_old_row(
    db: Database, backtest_id: str, strategy: str, params: dict[str, Any], *, owner: str = "alice"
) -> None:
    """A backtests row with only the columns revision 0004 has (later columns take their defaults)."""
    async with db.session() as session:
        await session.execute(
            insert(OLD_BACKTESTS).values(
                backtest_id=backtest_id, owner=owner, strategy=strategy, params=params, ts_codes=["600519.SH"],
                start_date=date(2024, 3, 4), end_date=date(2024, 3, 7), initial_cash="100000.00",
                status="queued", attempts=0, created_at=datetime(2026, 1, 1), cancel_requested=False,
            )
        )  # fmt: skip


@pytest.mark.parametrize("backend", ["mariadb", "sqlite"])
async def test_the_kind_migration_marks_the_runs_with_sleeves_as_portfolios(
    backend: str, backing: Backing, tmp_path: Path
) -> None:
    db = Database(_settings(backend, backing, tmp_path).database_url_for("backtest"))
    await db.connect()
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(_migrate_to, "0005")
        sleeve: dict[str, Any] = {"label": "x", "params": {}, "weight": None}
        await _insert_old_row(db, "k1single", "dual_ma", {"fast": 5, "slow": 20, "cash_reserve": "0"})
        await _insert_old_row(db, "k2mix", "portfolio", {"sleeves": [{**sleeve, "strategy": "dual_ma"}]})
        # a strategy of that name whose params have no sleeves list: one strategy, as the worker ran it
        await _insert_old_row(db, "k3named", "portfolio", {"sleeves": "none"})
        store = BacktestStore(db)
        await store.migrate()  # 0006: the kind column, back-filled
        kinds = {i: (r.kind, r.strategy) for i in ("k1single", "k2mix", "k3named") if (r := await store.get(i))}
        assert kinds == {
            "k1single": (BacktestKind.SINGLE, "dual_ma"),
            "k2mix": (BacktestKind.PORTFOLIO, "portfolio"),
            "k3named": (BacktestKind.SINGLE, "portfolio"),
        }
        async with db.engine.begin() as conn:
            await conn.run_sync(_migrate_to, "0005", down=True)
            columns = await conn.run_sync(lambda c: [col["name"] for col in inspect(c).get_columns("backtests")])
        assert "kind" not in columns
    finally:
        await db.dispose()


@pytest.mark.parametrize("backend", ["mariadb", "sqlite"])
async def test_the_migration_back_fills_the_portfolio_runs_stored_before_it(
    backend: str, backing: Backing, tmp_path: Path
) -> None:
    db = Database(_settings(backend, backing, tmp_path).database_url_for("backtest"))
    await db.connect()
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(_migrate_to, "0004")
            assert "backtest_strategies" not in await conn.run_sync(lambda c: inspect(c).get_table_names())
        store = BacktestStore(db)

        async def old_row(backtest_id: str, strategy: str, params: dict[str, Any], owner: str = "alice") -> None:
            # as the service stored a run before 0005: the backtests row alone, with the columns it had then
            await _insert_old_row(db, backtest_id, strategy, params, owner=owner)

        sleeve: dict[str, Any] = {"label": "x", "params": {}, "weight": None}
        await old_row("r1single", "dual_ma", {"fast": 5, "slow": 20, "cash_reserve": "0"})
        await old_row(
            "r2mix",
            "portfolio",
            {"sleeves": [{**sleeve, "strategy": "dual_ma"}, {**sleeve, "strategy": "bollinger", "label": "y"}]},
        )
        await old_row("r3hold", "buy_and_hold", {"weights": "equal", "cash_reserve": "0"})
        await old_row(
            "r4pair",
            "portfolio",
            {"sleeves": [{**sleeve, "strategy": "dual_ma"}, {**sleeve, "strategy": "dual_ma", "label": "y"}]},
        )
        await old_row("r5bob", "portfolio", {"sleeves": [{**sleeve, "strategy": "bollinger"}]}, owner="bob")
        # more portfolio runs than the migration reads in one batch (500)
        bulk = [
            {
                "backtest_id": f"bulk{n:04d}",
                "owner": "bulk",
                "strategy": "portfolio",
                "params": {"sleeves": [{**sleeve, "strategy": "momentum"}, {**sleeve, "strategy": "dual_ma"}]},
                "ts_codes": [],
                "start_date": date(2024, 3, 4),
                "end_date": date(2024, 3, 7),
                "initial_cash": "100000.00",
                "status": "queued",
                "attempts": 0,
                "created_at": datetime(2026, 1, 1) + timedelta(seconds=n),
                "cancel_requested": False,
            }
            for n in range(1, 1101)
        ]
        async with db.session() as session:
            await session.execute(insert(OLD_BACKTESTS), bulk)

        await store.migrate()  # 0005: the side table, back-filled
        async with db.engine.connect() as conn:
            assert await conn.run_sync(_side_table_differences) == []

        async def ids(owner: str | None = "alice", **filters: Any) -> list[str]:
            return [r.backtest_id for r in await store.search(owner=owner, **filters)]

        assert await ids() == ["r4pair", "r3hold", "r2mix", "r1single"]
        assert await ids(strategy="dual_ma") == ["r4pair", "r2mix", "r1single"]
        assert await ids(strategy="bollinger") == ["r2mix"]
        assert await ids(strategy="buy_and_hold") == ["r3hold"]
        assert await ids(strategy="momentum") == []
        assert await ids(q="BOLL") == ["r2mix"]
        assert await ids(q="dual", limit=2, offset=1) == ["r2mix", "r1single"]
        assert await ids("bob", strategy="bollinger") == ["r5bob"]
        assert await ids(None, strategy="bollinger") == ["r5bob", "r2mix"]
        found = await ids("bulk", strategy="momentum", limit=500) + await ids("bulk", q="dual", limit=500, offset=500)
        found += await ids("bulk", strategy="dual_ma", limit=500, offset=1000)
        assert found == [f"bulk{n:04d}" for n in range(1100, 0, -1)]

        # and a run stored after the migration is found the same way
        await store.create(
            backtest_id="r6new",
            owner="alice",
            strategy="portfolio",
            params={"sleeves": [{**sleeve, "strategy": "momentum"}, {**sleeve, "strategy": "bollinger"}]},
            ts_codes=["600519.SH"],
            start=date(2024, 3, 4),
            end=date(2024, 3, 7),
            initial_cash=Decimal("100000"),
            sleeve_strategies=["momentum", "bollinger"],
        )
        assert await ids(strategy="bollinger") == ["r6new", "r2mix"]
        assert await ids(q="moment") == ["r6new"]

        # 0005 undone: the side table goes, the runs stay
        async with db.engine.begin() as conn:
            await conn.run_sync(_migrate_to, "0004", down=True)
            assert "backtest_strategies" not in await conn.run_sync(lambda c: inspect(c).get_table_names())
        async with db.engine.connect() as conn:
            kept = (
                await conn.execute(
                    select(backtests.c.backtest_id).where(backtests.c.backtest_id.in_(["r2mix", "r6new"]))
                )
            ).scalars()
            assert sorted(kept) == ["r2mix", "r6new"]
    finally:
        await db.dispose()

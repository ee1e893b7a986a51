"""The ingestion pipeline without network or MariaDB: the CLI's arguments and progress output, and a backfill of
the demo market into SQLite (standalone mode) that the quality checks find clean."""

from __future__ import annotations

import io
import re
from datetime import date
from pathlib import Path

import pytest

from services.data.cli import ProgressPrinter, main
from services.data.ingest import Ingestor, Progress
from services.data.providers import DemoProvider
from services.data.store import MIGRATIONS_DIR, DataStore
from shared.platform.db import Database
from shared.platform.settings import Settings


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bad_arguments_exit_2_naming_the_problem(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["backfill", "--start", "2024-13-01", "--end", "2024-01-05"]) == 2
    assert "2024-13-01" in capsys.readouterr().err
    assert main(["teleport"]) == 2
    assert main([]) == 2


def test_progress_is_a_bar_on_a_terminal_and_lines_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")  # the bar's empty part as blanks, not in a second colour
    p = Progress("r", "backfill", steps_done=5, steps_total=20, rows=1234, current="2024-01-08")
    tty = Tty()
    bar = ProgressPrinter(tty)
    bar(p)
    bar.done()
    # What the terminal shows once the control codes are applied: the bar a quarter full (7.5 of its 30 cells), then
    # the numbers; redrawn in place (a carriage return), the last one left standing on its own line.
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", tty.getvalue()).split("\r")[-1]
    assert shown.startswith("━" * 7 + "╸" + " " * 22 + "  25.0%  5/20  1,234 rows")
    assert "\r" in tty.getvalue() and shown.endswith("\n")
    plain = io.StringIO()
    printer = ProgressPrinter(plain)
    printer(p)
    printer(p)  # within the interval: not repeated
    assert plain.getvalue().count("\n") == 1 and plain.getvalue().startswith(" 25.0%  5/20  1,234 rows")


async def test_a_demo_backfill_into_sqlite(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/{{service}}.db", demo_symbols=10)
    db = Database(settings.database_url_for("data"))
    await db.connect()
    try:
        await db.migrate(MIGRATIONS_DIR)
        store = DataStore(db)
        result = await Ingestor(store, DemoProvider(settings)).backfill(date(2024, 1, 2), date(2024, 1, 12))
        assert result.status == "succeeded", result.error
        # 2024-01-02..12 has 9 SSE sessions; 10 demo stocks, less any demo halts (suspend_d says which).
        market = await DemoProvider(settings).market()
        days = market.daily[(market.daily.trade_date >= "20240102") & (market.daily.trade_date <= "20240112")]
        assert result.bar_rows == len(days) and result.symbols == days.ts_code.nunique()
        assert result.quality is not None and result.quality["by_severity"]["error"] == 0
        again = await Ingestor(store, DemoProvider(settings)).backfill(date(2024, 1, 2), date(2024, 1, 12))
        assert again.bar_rows == result.bar_rows and len(await store.list_ingest_runs()) == 2
    finally:
        await db.dispose()


async def test_a_run_whose_final_write_fails_is_reported_failed_not_interrupted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import services.data.ingest as ingest_module

    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/{{service}}.db", demo_symbols=10)
    db = Database(settings.database_url_for("data"))
    await db.connect()
    try:
        await db.migrate(MIGRATIONS_DIR)
        ended: list[str] = []
        ingestor = Ingestor(DataStore(db), DemoProvider(settings), on_finish=lambda p, status, r: ended.append(status))

        async def outbox_down(*_: object, **__: object) -> None:
            raise RuntimeError("the outbox write failed")

        monkeypatch.setattr(ingest_module, "add_to_outbox", outbox_down)  # the success's final transaction
        with pytest.raises(RuntimeError, match="outbox write failed"):
            await ingestor.backfill(date(2024, 1, 2), date(2024, 1, 5))
        assert ended == ["failed"]
    finally:
        await db.dispose()


async def test_the_demo_stores_update_succeeds_in_december_2026(tmp_path: Path) -> None:
    # The demo market is a fixed window: an update long after it has nothing to fetch, but it must not fail on the
    # calendar (the built-in one ended in 2025) nor wait for demo days that will never come.
    from datetime import datetime

    from services.data.loader import load_demo_market
    from services.data.scheduler import SHANGHAI

    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/{{service}}.db", demo_symbols=10,
                        demo_start="2024-06-03", demo_end="2024-12-31")  # fmt: skip
    db = Database(settings.database_url_for("data"))
    await db.connect()
    try:
        await db.migrate(MIGRATIONS_DIR)
        store = DataStore(db)
        await load_demo_market(store, settings)
        ingestor = Ingestor(store, DemoProvider(settings))
        result = await ingestor.update(as_of=datetime(2026, 12, 6, 18, 0, tzinfo=SHANGHAI))
        assert result.status == "succeeded", result.error
        assert result.bar_rows == 0
        assert await store.latest_session() == date(2024, 12, 31)
        # The update stored the calendar through the end of 2026: 243 sessions in 2025, 242 in 2026.
        assert len(await store.open_days(date(2025, 1, 1), date(2025, 12, 31))) == 243
        assert len(await store.open_days(date(2026, 1, 1), date(2026, 12, 31))) == 242
    finally:
        await db.dispose()


async def test_an_import_names_every_bad_file_and_imports_none(tmp_path: Path) -> None:
    header = "ts_code,trade_date,open,high,low,close,pre_close,vol,amount"
    files = {
        "a_good.csv": [header, "600000.SH,20240102,7.05,7.10,6.98,7.03,7.04,301234,211234.567"],
        "b_qfq.csv": [header, "600001.SH,20240102,6.8712,6.92,6.80,6.85,6.86,301234,211234.567"],
        "c_good.csv": [header, "600002.SH,20240102,7.05,7.10,6.98,7.03,7.04,301234,211234.567"],
        "d_amount.csv": [header, "600003.SH,20240102,7.05,7.10,6.98,7.03,7.04,301234,211234.567",
                         "600003.SH,20240103,7.05,7.10,6.98,7.03,7.03,301234,1075742.123456"],
        "e_text.csv": [header, "600004.SH,20240102,7.05,abc,6.98,7.03,7.04,301234,211234.567"],
    }  # fmt: skip
    paths = []
    for name, lines in files.items():
        paths.append(tmp_path / name)
        paths[-1].write_text("\n".join(lines) + "\n", encoding="utf-8")
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/{{service}}.db")
    db = Database(settings.database_url_for("data"))
    await db.connect()
    try:
        await db.migrate(MIGRATIONS_DIR)
        store = DataStore(db)
        result = await Ingestor(store, DemoProvider(settings)).import_files(paths)
        assert result.status == "failed"
        error = result.error or ""
        assert "3 of 5 files cannot be imported, so none was" in error
        assert f"{paths[1]}: line 2: open: price not on the 0.01 CNY tick" in error
        assert f"{paths[3]}: line 3: amount: more decimals than the unit allows" in error
        assert f"{paths[4]}: line 2: high: not a number" in error
        assert "a_good" not in error and "c_good" not in error
        assert await store.latest_session() is None  # all or nothing: the good files were not imported either
        ok = await Ingestor(store, DemoProvider(settings)).import_files([paths[0], paths[2]])
        assert ok.status == "succeeded" and ok.bar_rows == 2
    finally:
        await db.dispose()

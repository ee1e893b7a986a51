"""`python -m services.data <command>`: the data service's ingestion from the command line — backfill, update,
import (bars), import-adj-factors, import-calendar, import-securities, quality, runs — against the configured
database and provider (LH_* settings), with a progress bar on a terminal (plain lines otherwise). Exit status: 0
done, 1 the run failed (reason printed), 2 bad arguments or input."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from datetime import date, timedelta
from typing import TextIO

import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, TaskID, TextColumn
from rich.progress import Progress as RichProgress
from rich.table import Column

from services.data.app import make_provider
from services.data.cache import ReadCache
from services.data.events import outbox
from services.data.ingest import SUCCEEDED, IngestError, IngestOptions, Ingestor, IngestResult, Progress
from services.data.providers import MarketDataProvider, ProviderDataError, ymd
from services.data.providers.files import read_adj_factor_files, read_calendar_files, read_securities_files
from services.data.quality import QualityInputError
from services.data.store import CALENDAR_EXCHANGE, MIGRATIONS_DIR, DataStore
from shared.platform.bus import create_bus
from shared.platform.cache import create_cache
from shared.platform.db import Database
from shared.platform.outbox import OutboxRelay
from shared.platform.settings import Settings

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
BAR_WIDTH = 30


def _date(text: str) -> date:
    try:
        day = ymd(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return date(int(day[:4]), int(day[4:6]), int(day[6:]))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m services.data", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    backfill = commands.add_parser("backfill", help="download [start, end] by trade_date")
    backfill.add_argument("--start", type=_date, required=True, help="first day, YYYY-MM-DD or YYYYMMDD")
    backfill.add_argument("--end", type=_date, required=True, help="last day, inclusive")
    commands.add_parser("update", help="fetch the trading days missing since the newest stored one")
    imp = commands.add_parser("import", help="import daily bars from CSV/Parquet files (Tushare daily layout)")
    imp.add_argument("files", nargs="+", help="files to import; all are validated before any is stored")
    imp.add_argument("--adj-factor", action="store_true", help="the files carry adj_factor: store it as the feed too")
    factors = commands.add_parser(
        "import-adj-factors",
        help="import adjustment factors from CSV/Parquet files (Tushare adj_factor layout: ts_code, trade_date, "
        "adj_factor); stored bars of those days take them",
    )
    factors.add_argument("files", nargs="+", help="files to import; all are validated before any is stored")
    cal = commands.add_parser("import-calendar", help="import a trade calendar from CSV/Parquet files (Tushare "
                              "trade_cal layout: exchange, cal_date, is_open, pretrade_date)")  # fmt: skip
    cal.add_argument("files", nargs="+", help="files to import; all are validated before any is stored")
    sec = commands.add_parser(
        "import-securities",
        help="import the stock list from CSV/Parquet files (Tushare stock_basic layout: ts_code, symbol, name, area, "
        "industry, market, list_date, ...)",
    )
    sec.add_argument("files", nargs="+", help="files to import; all are validated before any is stored")
    quality = commands.add_parser("quality", help="run the quality checks on stored bars and store the report")
    quality.add_argument("--start", type=_date, help="default: the newest stored day")
    quality.add_argument("--end", type=_date, help="default: --start, else the newest stored day")
    runs = commands.add_parser("runs", help="list the newest ingest runs")
    runs.add_argument("--limit", type=int, default=20)
    return parser


class ProgressPrinter:
    """A bar redrawn in place on a terminal (rich's), at most every 0.2 s; a plain line at most every `every_s`
    seconds otherwise."""

    def __init__(self, out: TextIO, *, every_s: float = 5.0) -> None:
        self.out = out
        self.tty = out.isatty()
        self.every_s = 0.2 if self.tty else every_s
        self._last = 0.0
        self._bar: RichProgress | None = None
        self._task: TaskID | None = None

    def __call__(self, progress: Progress) -> None:
        now = time.monotonic()
        if now - self._last < self.every_s:
            return
        self._last = now
        if not self.tty:
            self.out.write(self._text(progress) + "\n")
            self.out.flush()
            return
        if self._bar is None:
            console = Console(file=self.out, force_terminal=True, highlight=False)
            self._bar = RichProgress(
                BarColumn(bar_width=BAR_WIDTH, table_column=Column(min_width=BAR_WIDTH)),
                TextColumn("{task.description}", markup=False),
                console=console,
                auto_refresh=False,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._task = self._bar.add_task("", total=None)
            self._bar.start()
        assert self._task is not None
        total = max(progress.steps_total, 1)
        self._bar.update(self._task, total=total, completed=progress.fraction * total, description=self._text(progress))
        self._bar.refresh()

    @staticmethod
    def _text(p: Progress) -> str:
        return (f"{100 * p.fraction:5.1f}%  {p.steps_done}/{p.steps_total}  {p.rows:,} rows  "
                f"{p.rows_per_s:,.0f} rows/s  {p.current or ''}")  # fmt: skip

    def done(self) -> None:
        if self._bar is not None:
            self._bar.stop()  # leaves the last bar on its line and moves to the next


def _report(result: IngestResult, out: TextIO) -> int:
    if result.status != SUCCEEDED:
        out.write(f"{result.kind} {result.run_id} failed: {result.error}\n")
        return EXIT_FAILED
    span = f"{result.start}..{result.end}" if result.start else "no new bars"
    out.write(f"{result.kind} {result.run_id} succeeded: {result.rows:,} rows ({result.bar_rows:,} bars of "
              f"{result.symbols} symbols, {span})\n")  # fmt: skip
    for api, reason in result.skipped_endpoints.items():
        out.write(f"skipped {api} (optional; the token may not use it): {reason}\n")
    if result.quality is not None:
        if "counts" in result.quality:
            found = {k: v for k, v in result.quality["counts"].items() if v}
            out.write(f"quality report {result.quality_report_id}: {found or 'no findings'}\n")
        else:
            out.write(f"quality checks skipped: {result.quality.get('skipped')}\n")
    return EXIT_OK


async def run(
    argv: Sequence[str],
    *,
    settings: Settings | None = None,
    provider: MarketDataProvider | None = None,
    out: TextIO | None = None,
) -> int:
    out = out or sys.stdout
    try:
        args = build_parser().parse_args(list(argv))
    except SystemExit as exc:  # argparse printed the reason
        return int(exc.code or 0) and EXIT_USAGE
    settings = settings or Settings()
    db = Database(settings.database_url_for("data"), lock_wait_s=settings.db_lock_wait_s)
    cache = create_cache(settings.redis_url)
    store = DataStore(db, on_change=ReadCache(cache, settings.bus_namespace).invalidate)
    ingestor = Ingestor(
        store, provider if provider is not None else (lambda: make_provider(settings)),
        options=IngestOptions(skip_denied_optional=settings.ingest_skip_denied_endpoints),
    )  # fmt: skip
    await db.connect()
    try:
        await db.migrate(MIGRATIONS_DIR)
        code = await _command(args, ingestor, store, out)
        if args.command in ("backfill", "update", "import") and not settings.amqp_url.startswith("memory"):
            await _publish(db, settings, out)
        return code
    finally:
        await db.dispose()
        await cache.close()


async def _command(args: argparse.Namespace, ingestor: Ingestor, store: DataStore, out: TextIO) -> int:
    printer = ProgressPrinter(out)
    try:
        if args.command == "backfill":
            if args.start > args.end:
                out.write(f"error: --end {args.end} is before --start {args.start}\n")
                return EXIT_USAGE
            result = await ingestor.backfill(args.start, args.end, on_progress=printer)
        elif args.command == "update":
            result = await ingestor.update(on_progress=printer)
        elif args.command == "import":
            result = await ingestor.import_files(args.files, adj_factor=args.adj_factor, on_progress=printer)
        elif args.command == "quality":
            return await _quality(args, ingestor, store, out)
        elif args.command == "import-adj-factors":
            return await _import_adj_factors(args.files, store, out)
        elif args.command == "import-calendar":
            return await _import_calendar(args.files, store, out)
        elif args.command == "import-securities":
            return await _import_securities(args.files, store, out)
        else:
            for r in await store.list_ingest_runs(args.limit):
                out.write(f"{r.run_id}  {r.kind:8} {r.status:11} {r.started_at:%Y-%m-%d %H:%M:%S}  "
                          f"{r.start_date or '':10} {r.end_date or '':10} {r.rows:>12,} rows  "
                          f"{100 * r.progress:5.1f}%  {_one_line(r.error)}\n")  # fmt: skip
            return EXIT_OK
    except IngestError as exc:  # e.g. another run is active
        out.write(f"error: {exc}\n")
        return EXIT_FAILED
    finally:
        printer.done()
    return _report(result, out)


async def _import_adj_factors(files: list[str], store: DataStore, out: TextIO) -> int:
    """The factor feed from files (unadjusted bars + factors is how adjusted prices get in: docs/data-ingest.md);
    bars already stored for those days take the factors, bars imported later take them from the feed."""
    try:
        frames = await asyncio.to_thread(read_adj_factor_files, files)
        frame = _combine(frames, files, ["ts_code", "trade_date"], "factor")
    except ProviderDataError as exc:
        out.write(f"error: {exc}\n")
        return EXIT_USAGE
    n = await store.upsert_adj_factors(frame)
    changed = await store.refactor_bars(frame)
    out.write(f"imported {n:,} adjustment factors of {frame['ts_code'].nunique():,} symbols from {len(files)} "
              f"file(s) ({frame['trade_date'].iloc[0]}..{frame['trade_date'].max()}); {changed:,} stored bars "
              f"took their factor\n")  # fmt: skip
    return EXIT_OK


async def _import_calendar(files: list[str], store: DataStore, out: TextIO) -> int:
    """Every file validated first (all bad ones named), the files agreeing with each other and leaving no gap in
    the stored calendar; then one upsert. The stored calendar is the one every check and the scheduler use."""
    try:
        frames = await asyncio.to_thread(read_calendar_files, files)
        frame = _combine(frames, files, ["exchange", "cal_date"], "day")
        sse = frame[frame["exchange"] == CALENDAR_EXCHANGE]["cal_date"]
        if not sse.empty:
            _contiguous(sse, files)
            stored = await store.calendar_span()
            first, last = _day(sse.iloc[0]), _day(sse.iloc[-1])
            if stored is not None and (first > stored[1] + timedelta(days=1) or last < stored[0] - timedelta(days=1)):
                raise ProviderDataError(f"{CALENDAR_EXCHANGE} {first}..{last} would leave a gap next to the stored "
                                        f"calendar {stored[0]}..{stored[1]}: import the days between too")  # fmt: skip
    except ProviderDataError as exc:
        out.write(f"error: {exc}\n")
        return EXIT_USAGE
    n = await store.upsert_trade_calendar(frame)
    spans = [f"{e} {g['cal_date'].iloc[0]}..{g['cal_date'].iloc[-1]} ({int(g['is_open'].sum()):,} open)"
             for e, g in frame.groupby("exchange", sort=True)]  # fmt: skip
    out.write(f"imported {n:,} calendar days from {len(files)} file(s): {', '.join(spans)}\n")
    return EXIT_OK


async def _import_securities(files: list[str], store: DataStore, out: TextIO) -> int:
    try:
        frames = await asyncio.to_thread(read_securities_files, files)
        frame = _combine(frames, files, ["ts_code"], "security")
    except ProviderDataError as exc:
        out.write(f"error: {exc}\n")
        return EXIT_USAGE
    n = await store.upsert_securities(frame)
    counts = frame["list_status"].value_counts()
    by_status = ", ".join(f"{counts.get(k, 0):,} {name}" for k, name in (("L", "listed"), ("D", "delisted"),
                                                                        ("P", "suspended")))  # fmt: skip
    out.write(f"imported {n:,} securities from {len(files)} file(s): {by_status}\n")
    return EXIT_OK


def _combine(frames: list[pd.DataFrame], files: list[str], key: list[str], what: str) -> pd.DataFrame:
    """The files' rows together: a key in two files must say the same in both (it is then kept once)."""
    tagged = pd.concat([f.assign(_file=name) for f, name in zip(frames, files, strict=True)], ignore_index=True)
    values = [c for c in tagged.columns if c != "_file"]
    distinct = tagged.drop_duplicates(subset=values)
    clash = distinct.duplicated(subset=key, keep=False)
    if clash.any():
        first = distinct[clash].iloc[0]
        owners = tagged[(tagged[key] == first[key]).all(axis=1)]["_file"].unique().tolist()
        shown = ", ".join(str(first[k]) for k in key)
        raise ProviderDataError(f"the {what} ({shown}) differs between {' and '.join(owners)}")
    return distinct.drop(columns="_file").sort_values(key, kind="stable").reset_index(drop=True)


def _contiguous(days: pd.Series, files: list[str]) -> None:
    stamps = pd.DatetimeIndex(pd.to_datetime(days, format="%Y%m%d"))
    missing = pd.date_range(stamps.min(), stamps.max(), freq="D").difference(stamps)
    if len(missing):
        raise ProviderDataError(
            f"{CALENDAR_EXCHANGE}: the files ({', '.join(files)}) leave {len(missing)} day(s) out between their days, "
            f"first {missing[0]:%Y%m%d}: import the days between too"
        )


def _day(text: str) -> date:
    return date(int(text[:4]), int(text[4:6]), int(text[6:]))


def _one_line(error: str | None) -> str:
    """A run's error on one line of the listing (an import's names every bad file, a line each)."""
    return " | ".join(line.strip() for line in (error or "").splitlines() if line.strip())


async def _quality(args: argparse.Namespace, ingestor: Ingestor, store: DataStore, out: TextIO) -> int:
    newest = await store.latest_session()
    start = args.start or newest
    end = args.end or (args.start if args.start else newest)
    if start is None or end is None:
        out.write("error: no bars stored yet, and no --start/--end given\n")
        return EXIT_USAGE
    try:
        report_id, report = await ingestor.quality(start, end)
    except (QualityInputError, IngestError) as exc:
        out.write(f"error: {exc}\n")
        return EXIT_USAGE
    out.write(f"quality report {report_id} for {start}..{end}: {report.rows_checked:,} rows checked, "
              f"{report.total} findings {report.count_by_severity()}\n")  # fmt: skip
    for rule, n in report.counts.items():
        if n:
            out.write(f"  {rule}: {n}\n")
    for f in report.findings[:20]:
        out.write(f"  {f.rule} {f.ts_code} {f.trade_date} {f.detail}\n")
    return EXIT_OK


async def _publish(db: Database, settings: Settings, out: TextIO) -> None:
    """Publish what the run put in the outbox now; if the broker is down the service's relay sends it later."""
    bus = create_bus(settings.amqp_url, namespace=settings.bus_namespace, source="data")
    try:
        await bus.start()
        await OutboxRelay(db, outbox, bus).flush()
    except Exception as exc:
        out.write(f"note: bars.updated left in the outbox for the service to publish ({type(exc).__name__}: {exc})\n")
    finally:
        await bus.close()


def main(argv: Sequence[str] | None = None) -> int:
    return asyncio.run(run(sys.argv[1:] if argv is None else argv))

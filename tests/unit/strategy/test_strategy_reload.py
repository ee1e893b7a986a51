"""Hot reload of strategy code, without the service: a file imported again as a new module object (a failed import
leaves the loaded classes and sys.modules as they were), the watcher (a file is taken once it has stayed the same for
one look; a touch without a change, a syntax error, a malformed strategy, a name another file uses), and the runner's
swap between bars on a paper replay of the demo market (the book and the `persist` variables kept, a `reload: manual`
instance and one whose params the new class refuses left on the old code, on_init's orders dropped, a swap waiting
for the bar in progress)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Iterator, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from services.data.demo import generate_demo_market
from services.strategy.book import Plan
from services.strategy.live import Runner, RunSpec
from services.strategy.reload import StrategyWatcher
from services.strategy.runner import BarReport, InstanceRun, replay
from services.strategy.trading import Placed
from shared.platform.events import StrategyCodeRejected
from shared.platform.settings import Settings
from shared.research.engine import BacktestConfig, load_bars
from shared.research.strategy import Strategy
from shared.research.strategy.registry import (
    StrategyDefinitionError,
    discover_folders,
    folder_files,
    import_fresh,
    strategy_classes,
)
from tests.unit.strategy.test_runner_parity import ACCOUNT, FillingPath, MemoryBooks

HEADER = """
from pydantic import Field
from shared.research.strategy import CrossSection, Strategy, StrategyContext, StrategyParams


class TickerParams(StrategyParams):
    lot: int = Field(default=100, ge={min_lot})
"""

# v1 buys one lot of its first stock every bar and counts the bars it has seen (a stored variable)
TICKER_V1 = (
    HEADER.format(min_lot=100)
    + """

class Ticker(Strategy):
    name = "ticker"
    title = "Ticker v1"
    description = "buys a lot of its first stock every bar"
    Params = TickerParams
    persist = ("bars_seen",)

    def __init__(self, params=None):
        super().__init__(params)
        self.bars_seen = 0

    def on_bar(self, ctx, bar):
        self.bars_seen += 1
        ctx.buy(0, self.params.lot)
"""
)

# v2: on the first bar it runs, it buys lot x the bars seen so far (so the count it inherited shows in the order);
# two lots a bar after that. Its on_init buys, which a hot reload drops.
TICKER_V2 = (
    HEADER.format(min_lot=100)
    + """

class Ticker(Strategy):
    name = "ticker"
    title = "Ticker v2"
    description = "buys two lots of its first stock every bar"
    Params = TickerParams
    persist = ("bars_seen",)

    def __init__(self, params=None):
        super().__init__(params)
        self.bars_seen = 0
        self.first = True

    def on_init(self, ctx):
        ctx.buy(0, 5 * self.params.lot)

    def on_bar(self, ctx, bar):
        self.bars_seen += 1
        ctx.buy(0, self.params.lot * self.bars_seen if self.first else 2 * self.params.lot)
        self.first = False
"""
)

# v3 imports, but its params refuse lot=100
TICKER_V3 = TICKER_V2.replace("ge=100", "ge=500").replace("Ticker v2", "Ticker v3")
TICKER_BROKEN = TICKER_V2.replace("def on_bar(self, ctx, bar):", "def on_bar(self, ctx, bar)")

AUTO = "a" * 32
MANUAL = "b" * 32
DAYS = 30


@pytest.fixture
def modules() -> Iterator[None]:
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        del sys.modules[name]


def write(path: Path, text: str) -> None:
    path.write_text(text)
    # a later version written within the same clock tick still differs in its stamp, as an editor's save would
    stamp = path.stat().st_mtime_ns + 1_000_000_000 * write.__dict__.setdefault("n", 1)
    write.__dict__["n"] += 1
    os.utime(path, ns=(stamp, stamp))


def ticker(path: Path, text: str) -> type[Strategy]:
    write(path, text)
    [cls] = strategy_classes(import_fresh(path, "lh_test_ticker"))
    return cls


# --- importing a file again -------------------------------------------------------------------------------------


def test_a_file_that_fails_to_import_leaves_the_loaded_class_and_module_as_they_were(
    tmp_path: Path, modules: None
) -> None:
    path = tmp_path / "ticker.py"
    v1 = ticker(path, TICKER_V1)
    module_v1 = sys.modules["lh_test_ticker"]
    write(path, TICKER_BROKEN)
    with pytest.raises(SyntaxError):
        import_fresh(path, "lh_test_ticker")
    assert sys.modules["lh_test_ticker"] is module_v1
    assert v1.title == "Ticker v1" and v1().params.model_dump() == {"lot": 100}

    v2 = ticker(path, TICKER_V2)
    assert v2 is not v1 and (v1.title, v2.title) == ("Ticker v1", "Ticker v2")  # two class objects side by side
    assert sys.modules["lh_test_ticker"] is not module_v1


def test_folder_files_are_the_public_python_files_under_names_of_their_own(tmp_path: Path) -> None:
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    for folder in ("one", "two"):
        (tmp_path / folder / "json.py").write_text("")
    (tmp_path / "one" / "_helpers.py").write_text("")
    (tmp_path / "one" / "notes.txt").write_text("")
    files = folder_files([tmp_path / "one", tmp_path / "two"])
    assert sorted(p.relative_to(tmp_path).as_posix() for p in files) == ["one/json.py", "two/json.py"]
    names = list(files.values())
    assert len(set(names)) == 2 and all(n.startswith("lh_strategy_dir_") and n.endswith("_json") for n in names)


def test_the_strategies_of_a_folder_are_found_and_a_missing_folder_is_refused(tmp_path: Path, modules: None) -> None:
    write(tmp_path / "ticker.py", TICKER_V1)
    found = discover_folders([tmp_path])
    assert list(found) == ["ticker"] and found["ticker"].title == "Ticker v1"
    with pytest.raises(StrategyDefinitionError, match="is not a folder"):
        discover_folders([tmp_path, tmp_path / "typo"])


# --- the watcher ------------------------------------------------------------------------------------------------


class RecordingReports:
    def __init__(self) -> None:
        self.reloads: list[tuple[str, dict[str, Any]]] = []
        self.rejections: list[StrategyCodeRejected] = []

    async def reloaded(self, instance_id: str, detail: dict[str, Any]) -> None:
        self.reloads.append((instance_id, detail))

    async def rejected(self, payload: StrategyCodeRejected) -> None:
        self.rejections.append(payload)


class Swaps:
    def __init__(self, outcome: Mapping[str, str | None]) -> None:
        self.outcome = outcome
        self.calls: list[tuple[str, str]] = []

    async def __call__(self, name: str, cls: type[Strategy]) -> Mapping[str, str | None]:
        self.calls.append((name, cls.title))
        return self.outcome


def watcher_over(tmp_path: Path, outcome: Mapping[str, str | None]) -> tuple[StrategyWatcher, Swaps, Any, Path]:
    path = tmp_path / "ticker.py"
    catalogue = {"ticker": ticker(path, TICKER_V1)}
    swaps, reports = Swaps(outcome), RecordingReports()
    watcher = StrategyWatcher(lambda: {path: "lh_test_ticker"}, catalogue, swaps, reports)
    return watcher, swaps, reports, path


async def test_a_changed_file_is_taken_once_it_stays_the_same_for_one_look(tmp_path: Path, modules: None) -> None:
    watcher, swaps, reports, path = watcher_over(tmp_path, {AUTO: None, MANUAL: "params.lot: too small"})
    await watcher.scan()
    assert swaps.calls == []  # nothing changed since the start
    write(path, TICKER_V2)
    await watcher.scan()
    assert swaps.calls == []  # changed at this look: maybe still being written
    await watcher.scan()
    assert swaps.calls == [("ticker", "Ticker v2")]
    assert watcher.catalogue["ticker"].title == "Ticker v2"  # new instances get the new code
    [(instance_id, detail)] = reports.reloads
    assert instance_id == AUTO
    assert detail["strategy"] == "ticker" and detail["file"] == str(path) and len(detail["sha256"]) == 64
    [kept] = reports.rejections
    assert (kept.strategy, kept.file, kept.instance_id, kept.error) == (
        "ticker", str(path), MANUAL, "params.lot: too small"
    )  # fmt: skip
    await watcher.scan()
    await watcher.scan()
    assert len(swaps.calls) == 1  # dealt with: not again until it changes


async def test_a_touched_but_unchanged_file_reloads_nothing(tmp_path: Path, modules: None) -> None:
    watcher, swaps, reports, path = watcher_over(tmp_path, {AUTO: None})
    write(path, path.read_text())
    for _ in range(3):
        await watcher.scan()
    assert swaps.calls == [] and reports.rejections == []


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (TICKER_BROKEN, "SyntaxError: expected ':' (line "),
        (TICKER_V2 + "\nraise RuntimeError('half-finished edit')\n", "RuntimeError: half-finished edit (line "),
        (TICKER_V2.replace('title = "Ticker v2"', 'title = ""'), "StrategyDefinitionError: strategy 'ticker' needs"),
        (TICKER_V2 + "\nclass Other(Ticker):\n    name = 'dual_ma'\n", "StrategyDefinitionError: strategy name"),
    ],
)
async def test_a_file_that_is_refused_changes_nothing_and_is_reported(
    tmp_path: Path, modules: None, text: str, error: str
) -> None:
    watcher, swaps, reports, path = watcher_over(tmp_path, {AUTO: None})
    watcher.catalogue["dual_ma"] = type("DualMa", (Strategy,), {"name": "dual_ma", "__module__": "strategies.dual_ma"})
    v1 = watcher.catalogue["ticker"]
    module_v1 = sys.modules["lh_test_ticker"]
    write(path, text)
    await watcher.scan()
    await watcher.scan()
    assert swaps.calls == []
    assert watcher.catalogue["ticker"] is v1 and sys.modules["lh_test_ticker"] is module_v1
    [rejected] = reports.rejections
    assert rejected.strategy is None and rejected.instance_id is None and rejected.file == str(path)
    assert rejected.error.startswith(error), rejected.error


# --- the runner's swap ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def panel_and_config() -> tuple[Any, BacktestConfig, str]:
    """The demo market's first days, with the first stock that trades (below its limit-up) on each of them first."""
    frame = generate_demo_market(Settings(_env_file=None)).daily  # type: ignore[call-arg]
    days = sorted(pd.to_datetime(frame["trade_date"]).dt.date.unique())[:DAYS]
    frame = frame[pd.to_datetime(frame["trade_date"]).dt.date.isin(days)]
    config = BacktestConfig(initial_cash=Decimal("1000000"), corporate_actions=False, calendar=tuple(days))
    whole = load_bars(frame, config)
    ok = whole.has_bar.all(axis=0) & (whole.open < whole.up_limit).all(axis=0)
    code = whole.codes[int(np.flatnonzero(ok)[0])]
    return load_bars(frame[frame["ts_code"] == code], config), config, code


class Events:
    async def bar(self, spec: RunSpec, report: BarReport) -> None: ...

    async def failed(self, spec: RunSpec, trace: str) -> None: ...

    async def finished(self, spec: RunSpec) -> None: ...


def spec(instance_id: str, reload: str) -> RunSpec:
    return RunSpec(instance_id, "ticker", {"lot": 100}, "alice", "alice", 100_000_000, {}, {}, reload=reload)


async def start(runner: Runner, instance_id: str, cls: type[Strategy], panel: Any, config: BacktestConfig,
                reload: str, path: FillingPath | None = None) -> tuple[InstanceRun, FillingPath]:  # fmt: skip
    path = path or FillingPath()
    run = InstanceRun(instance_id, cls({"lot": 100}), panel, config, path, MemoryBooks(), account_id=ACCOUNT)
    path.run = run
    await run.prepare()
    runner.runs[instance_id], runner.specs[instance_id] = run, spec(instance_id, reload)
    runner.locks[instance_id] = asyncio.Lock()
    return run, path


def no_market() -> Any:
    raise AssertionError("the instances here are given their market")


def runner() -> Runner:
    return Runner(strategies={}, market=no_market, path=FillingPath(), books=MemoryBooks(), sessions=None,
                  events=Events())  # fmt: skip


def snapshot(run: InstanceRun) -> dict[str, Any]:
    """The book as it would be stored (a copy: to_json shares some of the book's own containers)."""
    copied: dict[str, Any] = json.loads(json.dumps(run.book.to_json()))
    return copied


def bought(path: FillingPath) -> list[int]:
    return [f.qty for f in path.fills]


async def test_an_auto_instance_takes_the_new_class_between_bars_keeping_its_book_and_variables(
    tmp_path: Path, modules: None, panel_and_config: tuple[Any, BacktestConfig, str]
) -> None:
    panel, config, _ = panel_and_config
    v1 = ticker(tmp_path / "ticker.py", TICKER_V1)
    v2 = ticker(tmp_path / "ticker.py", TICKER_V2)
    live = runner()
    auto, auto_path = await start(live, AUTO, v1, panel, config, "auto")
    manual, manual_path = await start(live, MANUAL, v1, panel, config, "manual")
    swapped_after = 10  # bars
    seen: dict[str, Any] = {}

    async def on_bar(report: BarReport) -> None:
        if report.bar_date == panel.dates[swapped_after - 1]:
            seen["before"] = snapshot(auto)
            seen["outcome"] = await live.swap_strategy("ticker", v2)
            seen["after"] = snapshot(auto)

    await asyncio.gather(
        replay(auto, auto_path.open_session, on_bar=on_bar, lock=live.locks[AUTO]),
        replay(manual, manual_path.open_session, lock=live.locks[MANUAL]),
    )

    assert seen["outcome"] == {AUTO: None}  # the manual instance was not asked
    assert type(auto.strategy) is v2 and type(manual.strategy) is v1
    # v1 bought 100 a bar on bars 1-10 (each filling at the next session: 9 fills before the swap, the 10th after);
    # v2's first bar (the 11th) bought 100 x 11 bars seen — the count came over — then 200 a bar to the end; its
    # on_init's 500 were dropped. The last bar's order never fills (no session after it).
    assert bought(auto_path) == [100] * swapped_after + [100 * (swapped_after + 1)] + [200] * (DAYS - 12)
    assert auto.strategy.bars_seen == DAYS  # type: ignore[attr-defined]
    assert bought(manual_path) == [100] * (DAYS - 1)
    # the book came through the swap untouched (on_init's order dropped, its order ids and sequences too): the 10th
    # bar's order still pending, filled at the next session
    assert seen["after"] == seen["before"]
    assert [row[3] for row in seen["before"]["pending"]] == [100]
    assert seen["before"]["next_intent"] == swapped_after
    assert int(auto.book.positions[0]) == sum(bought(auto_path))
    assert auto.book.cash_fen == 100_000_000 - sum(f.qty * f.price_fen + f.fees_fen for f in auto_path.fills)
    # the stored book carries the new class's variables
    assert auto.books.saved[AUTO]["strategy"] == {"bars_seen": {"value": DAYS}}  # type: ignore[attr-defined]


async def test_params_the_new_class_refuses_leave_the_old_code_running(
    tmp_path: Path, modules: None, panel_and_config: tuple[Any, BacktestConfig, str]
) -> None:
    panel, config, _ = panel_and_config
    v1 = ticker(tmp_path / "ticker.py", TICKER_V1)
    v3 = ticker(tmp_path / "ticker.py", TICKER_V3)
    live = runner()
    auto, path = await start(live, AUTO, v1, panel, config, "auto")
    old = auto.strategy
    outcomes: list[Mapping[str, str | None]] = []

    async def on_bar(report: BarReport) -> None:
        if report.bar_date == panel.dates[4]:
            outcomes.append(await live.swap_strategy("ticker", v3))

    await replay(auto, path.open_session, on_bar=on_bar, lock=live.locks[AUTO])
    assert outcomes == [{AUTO: "params.lot: Input should be greater than or equal to 500"}]
    assert auto.strategy is old and auto.strategy.bars_seen == DAYS  # type: ignore[attr-defined]
    assert bought(path) == [100] * (DAYS - 1)


async def test_an_on_init_that_raises_leaves_the_old_code_and_the_book_as_they_were(
    tmp_path: Path, modules: None, panel_and_config: tuple[Any, BacktestConfig, str]
) -> None:
    panel, config, _ = panel_and_config
    v1 = ticker(tmp_path / "ticker.py", TICKER_V1)
    v2 = ticker(tmp_path / "ticker.py", TICKER_V2.replace(
        "ctx.buy(0, 5 * self.params.lot)", "ctx.buy(0, 5 * self.params.lot)\n        raise ValueError('no')"))  # fmt: skip
    live = runner()
    auto, _ = await start(live, AUTO, v1, panel, config, "auto")
    before = snapshot(auto)
    old = auto.strategy
    assert await live.swap_strategy("ticker", v2) == {AUTO: "ValueError starting the new class: no"}
    assert auto.strategy is old and snapshot(auto) == before and auto.book.fresh == []


async def test_a_swap_waits_for_the_bar_in_progress(
    tmp_path: Path, modules: None, panel_and_config: tuple[Any, BacktestConfig, str]
) -> None:
    panel, config, _ = panel_and_config
    v1 = ticker(tmp_path / "ticker.py", TICKER_V1)
    v2 = ticker(tmp_path / "ticker.py", TICKER_V2)

    class HeldPath(FillingPath):
        """Holds the first order of the 3rd session until let go: the bar is in progress meanwhile."""

        def __init__(self) -> None:
            super().__init__()
            self.inside = asyncio.Event()
            self.go = asyncio.Event()

        async def place(self, plan: Plan, instance_id: str, paper_fill: object = None, sleeve: Any = None) -> Placed:
            if self.session == panel.dates[2] and not self.go.is_set():
                self.inside.set()
                await self.go.wait()
            return await super().place(plan, instance_id)

    live = runner()
    path = HeldPath()
    auto, _ = await start(live, AUTO, v1, panel, config, "auto", path)
    playing = asyncio.create_task(replay(auto, path.open_session, lock=live.locks[AUTO]))
    await asyncio.wait_for(path.inside.wait(), 10)
    swap = asyncio.create_task(live.swap_strategy("ticker", v2))
    await asyncio.sleep(0.05)
    assert not swap.done() and type(auto.strategy) is v1  # the 3rd bar holds the instance
    path.go.set()
    assert await asyncio.wait_for(swap, 10) == {AUTO: None}
    await playing
    # the 3rd bar ran whole on v1 (its on_bar bought 100), the 4th was v2's first: 100 x 4 bars seen
    assert bought(path)[:4] == [100, 100, 100, 400]


async def test_a_stopped_or_failed_instance_is_not_swapped(
    tmp_path: Path, modules: None, panel_and_config: tuple[Any, BacktestConfig, str]
) -> None:
    panel, config, _ = panel_and_config
    v1 = ticker(tmp_path / "ticker.py", TICKER_V1)
    v2 = ticker(tmp_path / "ticker.py", TICKER_V2)
    live = runner()
    failed, _ = await start(live, AUTO, v1, panel, config, "auto")
    failed.failed = Exception("it raised")  # type: ignore[assignment]
    await start(live, MANUAL, v1, panel, config, "auto")
    live.runs.pop(MANUAL)  # stopped
    assert await live.swap_strategy("ticker", v2) == {}
    assert type(failed.strategy) is v1

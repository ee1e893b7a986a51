"""Parameter optimisation over the backtest engine: a parameter space read from a strategy's Params schema and a
user's spec, grid enumeration, a seeded genetic algorithm, an objective with constraints, walk-forward analysis, and
`evaluate(points, panel, config, strategy_cls)`, which runs many points over one loaded panel.

Pure: no I/O, no clock. The backtest service fans the same functions out over RabbitMQ workers
(services/backtest/optimize.py); how and why: docs/optimisation.md."""

from __future__ import annotations

import itertools
import json
import math
import re
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from pydantic import ValidationError

from shared.research.engine.batch import BatchEngine, listens_to_events
from shared.research.engine.config import BacktestConfig
from shared.research.engine.context import PassTooLarge
from shared.research.engine.core import Engine
from shared.research.engine.data import Panel, load_bars
from shared.research.engine.metrics import Metrics, MetricsConfig, compute_metrics
from shared.research.strategy import Strategy

__all__ = [
    "BENCHMARK_METRICS",
    "DEFAULT_CACHE_BYTES",
    "METRIC_NAMES",
    "Constraint",
    "Domain",
    "Evaluator",
    "GeneticSettings",
    "Objective",
    "OptimisationError",
    "ParameterSpace",
    "PassTooLarge",
    "PointResult",
    "SearchResult",
    "SharedCache",
    "SpaceError",
    "WalkForwardResult",
    "WalkForwardWindow",
    "evaluate",
    "genetic_generation",
    "genetic_search",
    "grid_search",
    "point_key",
    "rank",
    "walk_forward",
    "walk_forward_windows",
]

METRIC_NAMES: tuple[str, ...] = tuple(f.name for f in fields(Metrics))
# Metrics against a benchmark: an optimisation loads none yet, so they would be None for every point.
BENCHMARK_METRICS: frozenset[str] = frozenset(
    {
        "benchmark_total_return",
        "benchmark_annual_return",
        "excess_total_return",
        "excess_annual_return",
        "information_ratio",
        "tracking_error",
        "alpha",
        "beta",
    }
)
MAX_VALUES_PER_PARAMETER = 100_000
MAX_GRID_POINTS = 1_000_000
JsonValue = int | float | str | bool


class OptimisationError(ValueError):
    """An optimisation cannot be run as asked; the message names the setting at fault."""


class SpaceError(OptimisationError):
    """A parameter spec is not usable; `parameter` names the parameter at fault."""

    def __init__(self, parameter: str, reason: str) -> None:
        super().__init__(f"{parameter}: {reason}")
        self.parameter = parameter
        self.reason = reason


# --- the parameter space ---------------------------------------------------------------------------------------


def point_key(point: Mapping[str, Any]) -> str:
    """The canonical text of a point (sorted keys, compact): its identity in caches, stores and idempotency keys."""
    return json.dumps(dict(point), sort_keys=True, separators=(",", ":"), default=str)


@dataclass(frozen=True)
class Domain:
    """The values one parameter takes in a search, in increasing order (choices in the order given)."""

    name: str
    kind: Literal["int", "float", "choice"]
    values: tuple[JsonValue, ...]


@dataclass(frozen=True)
class _Bounds:
    kind: Literal["int", "float", "choice", "bool"]
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: float | None = None
    exclusive_maximum: float | None = None
    choices: tuple[JsonValue, ...] = ()

    def check(self, name: str, value: JsonValue) -> None:
        if self.kind in ("choice", "bool"):
            if value not in self.choices or isinstance(value, bool) != (self.kind == "bool"):
                raise SpaceError(name, f"{value!r} is not one of the choices {list(self.choices)}")
            return
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SpaceError(name, f"{value!r} is not a number")
        if self.kind == "int" and not isinstance(value, int):
            raise SpaceError(name, f"{value!r} is not an integer")
        if not math.isfinite(value):
            raise SpaceError(name, f"{value!r} is not finite")
        if self.minimum is not None and value < self.minimum:
            raise SpaceError(name, f"{value} is below the minimum {_num(self.minimum)}")
        if self.exclusive_minimum is not None and value <= self.exclusive_minimum:
            raise SpaceError(name, f"{value} must be greater than {_num(self.exclusive_minimum)}")
        if self.maximum is not None and value > self.maximum:
            raise SpaceError(name, f"{value} is above the maximum {_num(self.maximum)}")
        if self.exclusive_maximum is not None and value >= self.exclusive_maximum:
            raise SpaceError(name, f"{value} must be less than {_num(self.exclusive_maximum)}")


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _bounds_of(name: str, schema: Mapping[str, Any]) -> _Bounds:
    if "enum" in schema:
        return _Bounds("choice", choices=tuple(schema["enum"]))
    if "const" in schema:
        return _Bounds("choice", choices=(schema["const"],))
    kind = schema.get("type")
    if kind is None and "anyOf" in schema:
        # Decimal fields are "number or numeric string": the number branch carries the bounds
        numeric = [s for s in schema["anyOf"] if s.get("type") in ("number", "integer")]
        if not numeric:
            raise SpaceError(name, "is not a number, an integer, a boolean or a choice: it cannot be searched")
        schema = numeric[0]
        kind = schema["type"]
    if kind == "boolean":
        return _Bounds("bool", choices=(False, True))
    if kind not in ("integer", "number"):
        raise SpaceError(name, f"has type {kind!r}: only numbers, integers, booleans and choices can be searched")
    return _Bounds(
        "int" if kind == "integer" else "float",
        minimum=schema.get("minimum"),
        maximum=schema.get("maximum"),
        exclusive_minimum=schema.get("exclusiveMinimum"),
        exclusive_maximum=schema.get("exclusiveMaximum"),
    )


def _decimal(name: str, what: str, value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise SpaceError(name, f"{what} must be a number, got {value!r}")
    try:
        result = Decimal(str(value))
    except InvalidOperation:
        raise SpaceError(name, f"{what} must be a number, got {value!r}") from None
    if not result.is_finite():
        raise SpaceError(name, f"{what} must be finite")
    return result


def _range_values(name: str, bounds: _Bounds, spec: Mapping[str, Any]) -> tuple[JsonValue, ...]:
    unknown = sorted(set(spec) - {"min", "max", "step"})
    missing = [k for k in ("min", "max", "step") if k not in spec]
    if unknown or missing:
        raise SpaceError(name, "a range is {min, max, step}" + (f"; unknown {unknown}" if unknown else ""))
    lo, hi, step = (_decimal(name, k, spec[k]) for k in ("min", "max", "step"))
    if step <= 0:
        raise SpaceError(name, f"step must be positive, got {spec['step']!r}")
    if lo > hi:
        raise SpaceError(name, f"min {spec['min']!r} is above max {spec['max']!r}")
    if bounds.kind == "int" and any(v != v.to_integral_value() for v in (lo, hi, step)):
        raise SpaceError(name, "is an integer parameter: min, max and step must be integers")
    count = int((hi - lo) // step) + 1
    if count > MAX_VALUES_PER_PARAMETER:
        raise SpaceError(name, f"the range has {count} values; at most {MAX_VALUES_PER_PARAMETER}")
    # Decimal steps, so 0.1 + 0.1 + 0.1 is 0.3 and the last value is max when the step divides the range
    raw = [lo + k * step for k in range(count)]
    return tuple(int(v) if bounds.kind == "int" else float(v) for v in raw)


@dataclass(frozen=True)
class ParameterSpace:
    """The searched parameters of one strategy (each a `Domain`), the others at their defaults or at `fixed`."""

    strategy: type[Strategy]
    domains: tuple[Domain, ...]
    fixed: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_spec(
        cls, strategy: type[Strategy], spec: Mapping[str, Any], fixed: Mapping[str, Any] | None = None
    ) -> ParameterSpace:
        """`spec`: per parameter, a list of values, or {"min", "max", "step"} for an integer or number parameter.
        Every value must lie within the bounds of the strategy's schema and be of its type: a SpaceError names the
        parameter otherwise (also for a parameter the strategy does not have). `fixed`: other parameters set for
        every point (validated with the points)."""
        if not isinstance(spec, Mapping) or not spec:
            raise OptimisationError("space: give at least one parameter to search")
        properties: Mapping[str, Any] = strategy.Params.model_json_schema().get("properties", {})
        domains: list[Domain] = []
        for name, item in spec.items():
            if name not in properties:
                known = ", ".join(sorted(properties)) or "none"
                raise SpaceError(name, f"{strategy.name or strategy.__name__} has no such parameter (it has {known})")
            bounds = _bounds_of(name, properties[name])
            if isinstance(item, Mapping):
                if bounds.kind in ("choice", "bool"):
                    raise SpaceError(name, "is a choice: give a list of values, not a range")
                values = _range_values(name, bounds, item)
            elif isinstance(item, list | tuple):
                if not item:
                    raise SpaceError(name, "the list of values is empty")
                values = tuple(item)
                if len(set(map(point_key_value, values))) != len(values):
                    raise SpaceError(name, "the list of values has duplicates")
            else:
                raise SpaceError(name, "give a list of values or {min, max, step}")
            for value in values:
                bounds.check(name, value)
            if bounds.kind == "float":
                values = tuple(float(v) for v in values)
            kind: Literal["int", "float", "choice"] = (
                "choice" if bounds.kind in ("choice", "bool") else bounds.kind  # type: ignore[assignment]
            )
            if kind != "choice":
                values = tuple(sorted(values))  # numbers only here
            domains.append(Domain(name, kind, values))
        overlap = sorted(set(fixed or {}) & set(spec))
        if overlap:
            raise SpaceError(overlap[0], "is both searched and fixed")
        space = cls(strategy, tuple(domains), dict(fixed or {}))
        if space.size > MAX_GRID_POINTS:
            raise OptimisationError(f"space: {space.size} points; at most {MAX_GRID_POINTS}")
        return space

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.domains)

    @property
    def size(self) -> int:
        """Points in the full grid, before the strategy's cross-field validation."""
        return math.prod(len(d.values) for d in self.domains)

    def point(self, values: Sequence[JsonValue]) -> dict[str, JsonValue]:
        return {**self.fixed, **dict(zip(self.names, values, strict=True))}

    def invalid_reason(self, point: Mapping[str, Any]) -> str | None:
        """Why the strategy refuses the point (its validators, e.g. fast < slow), or None if it takes it."""
        try:
            self.strategy.parse_params(point)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ())) or "params"
            return f"{where}: {first.get('msg', 'invalid')}"
        return None

    def grid(self) -> tuple[list[dict[str, JsonValue]], list[tuple[dict[str, JsonValue], str]]]:
        """Every point of the grid the strategy accepts (in grid order: the last parameter varies fastest), and
        the points it refuses with the reason: skipped and counted, not errors."""
        valid: list[dict[str, JsonValue]] = []
        skipped: list[tuple[dict[str, JsonValue], str]] = []
        for values in itertools.product(*(d.values for d in self.domains)):
            point = self.point(values)
            reason = self.invalid_reason(point)
            if reason is None:
                valid.append(point)
            else:
                skipped.append((point, reason))
        return valid, skipped


def point_key_value(value: Any) -> str:
    return json.dumps(value, default=str)


# --- objective and constraints ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Objective:
    """A metric of docs/metrics.md to maximise or minimise."""

    metric: str = "sharpe"
    direction: Literal["maximize", "minimize"] = "maximize"

    def __post_init__(self) -> None:
        if self.metric not in METRIC_NAMES:
            raise OptimisationError(f"objective: unknown metric {self.metric!r}; metrics: {', '.join(METRIC_NAMES)}")
        if self.metric in BENCHMARK_METRICS:
            raise OptimisationError(f"objective: {_NEEDS_BENCHMARK.format(self.metric)}")
        if self.direction not in ("maximize", "minimize"):
            raise OptimisationError(f"objective: direction must be maximize or minimize, got {self.direction!r}")


_NEEDS_BENCHMARK = "{} needs a benchmark, which optimisation does not load yet"
_CONSTRAINT = re.compile(r"^\s*([a-z_]+)\s*(<=|>=|<|>|==)\s*([-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?)\s*$")
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": lambda a, b: a <= b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    ">": lambda a, b: a > b,
    "==": lambda a, b: a == b,
}


@dataclass(frozen=True)
class Constraint:
    """`metric op bound`, e.g. max_drawdown <= 0.3. A point whose metric is None cannot show it holds: infeasible."""

    metric: str
    op: Literal["<=", ">=", "<", ">", "=="]
    bound: float

    @classmethod
    def parse(cls, text: str) -> Constraint:
        match = _CONSTRAINT.match(text) if isinstance(text, str) else None
        if match is None:
            raise OptimisationError(f"constraint {text!r}: write it as 'metric <= number' (or >=, <, >, ==)")
        metric, op, bound = match.group(1), match.group(2), float(match.group(3))
        if metric not in METRIC_NAMES:
            raise OptimisationError(f"constraint {text!r}: unknown metric {metric!r}")
        if metric in BENCHMARK_METRICS:
            raise OptimisationError(f"constraint {text!r}: {_NEEDS_BENCHMARK.format(metric)}")
        return cls(metric, op, bound)  # type: ignore[arg-type]

    def holds(self, metrics: Mapping[str, Any]) -> bool:
        value = metrics.get(self.metric)
        return value is not None and _OPS[self.op](float(value), self.bound)

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {_num(self.bound)}"


@dataclass
class PointResult:
    """One evaluated point. `objective` is None when the metric is undefined (e.g. Sharpe without dispersion) or
    the run failed (`error`); `feasible` is False when a constraint does not hold (`violations`) or it failed."""

    params: dict[str, Any]
    key: str
    metrics: dict[str, Any] | None
    objective: float | None
    feasible: bool
    violations: list[str] = field(default_factory=list)
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "params": self.params,
            "key": self.key,
            "metrics": self.metrics,
            "objective": self.objective,
            "feasible": self.feasible,
            "violations": self.violations,
            "error": self.error,
        }


def score(
    params: Mapping[str, Any],
    metrics: Mapping[str, Any] | None,
    objective: Objective,
    constraints: Sequence[Constraint] = (),
    error: str | None = None,
) -> PointResult:
    """A point's result from its metrics (or its error): objective value, feasibility, violated constraints."""
    params = dict(params)
    if metrics is None:
        return PointResult(params, point_key(params), None, None, False, [], error or "no metrics")
    value = metrics.get(objective.metric)
    violations = [str(c) for c in constraints if not c.holds(metrics)]
    return PointResult(
        params,
        point_key(params),
        dict(metrics),
        None if value is None else float(value),
        not violations,
        violations,
        None,
    )


def rank_key(result: PointResult, objective: Objective) -> tuple[int, int, float, str]:
    """Feasible before infeasible; within each, a defined objective before None; then best first; ties by the
    point's key, so the ranking is total and the same on every machine. The value is read from the result's metrics
    for `objective`, so results evaluated for another objective still rank by this one."""
    value = result.objective
    if result.metrics is not None:
        metric = result.metrics.get(objective.metric)
        value = None if metric is None else float(metric)
    signed = 0.0 if value is None else (-value if objective.direction == "maximize" else value)
    return (0 if result.feasible else 1, 0 if value is not None else 1, signed, result.key)


def rank(results: Sequence[PointResult], objective: Objective) -> list[PointResult]:
    return sorted(results, key=lambda r: rank_key(r, objective))


# --- evaluation over one panel ---------------------------------------------------------------------------------


DEFAULT_CACHE_BYTES = 512 * 2**20


class SharedCache(OrderedDict[tuple[Any, ...], npt.NDArray[Any]]):
    """What the backtest context keeps per run (adjusted prices, cumulative sums, indicators), shared by the runs of
    one panel and one `adjust_history` setting. Exact: every entry is a function of the panel and that setting
    only, and read-only. Bounded by bytes (`max_bytes`), least recently used evicted, with two rules that keep it
    from thrashing:

    - during a pass (`batch_pass`), an entry the pass has used is never evicted: the pass holds it anyway, and
      evicting it would only make a later pass compute it again; the pass's visible buffers count too (`reserve`);
    - when what a pass holds exceeds the budget, a splittable pass (several points) is stopped with `PassTooLarge`
      and the optimiser runs its points in smaller passes; a pass of one point runs over the budget (it must run).

    `computed` counts the entries ever stored: how many whole-panel arrays were computed."""

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        super().__init__()
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
            raise OptimisationError(f"cache_bytes must be a whole number of bytes >= 0, got {max_bytes!r}")
        self.max_bytes = max_bytes
        self.bytes = 0
        self.computed = 0
        self.pass_bytes = 0  # visible buffers of the current pass
        self._pinned: set[tuple[Any, ...]] | None = None
        self._splittable = False

    def __getitem__(self, key: tuple[Any, ...]) -> npt.NDArray[Any]:
        value = super().__getitem__(key)
        self.move_to_end(key)
        if self._pinned is not None:
            self._pinned.add(key)
        return value

    def __setitem__(self, key: tuple[Any, ...], value: npt.NDArray[Any]) -> None:
        if key in self:
            self.bytes -= super().__getitem__(key).nbytes
        else:
            self.computed += 1
        super().__setitem__(key, value)
        self.bytes += value.nbytes
        if self._pinned is not None:
            self._pinned.add(key)
        self._shrink()

    def reserve(self, nbytes: int) -> None:
        """Count `nbytes` more held by the current pass (a visible buffer); outside a pass, nothing to count."""
        if self._pinned is not None:
            self.pass_bytes += nbytes
            self._shrink()

    def _shrink(self) -> None:
        over = self.bytes + self.pass_bytes - self.max_bytes
        if over <= 0:
            return
        pinned = self._pinned or set()
        for key in [k for k in self if k not in pinned]:  # least recently used first
            old = OrderedDict.__getitem__(self, key)
            OrderedDict.__delitem__(self, key)
            self.bytes -= old.nbytes
            over -= old.nbytes
            if over <= 0:
                return
        if self._splittable:
            raise PassTooLarge(f"the pass holds {self.bytes + self.pass_bytes} bytes; the budget is {self.max_bytes}")

    @contextmanager
    def batch_pass(self, *, splittable: bool) -> Iterator[None]:
        """One run or batch pass: pins what it uses, counts its visible buffers, and (splittable) may raise
        PassTooLarge. Reentrant: a pass inside a pass is part of it."""
        if self._pinned is not None:
            yield
            return
        self._pinned, self._splittable, self.pass_bytes = set(), splittable, 0
        try:
            yield
        finally:
            self._pinned, self._splittable, self.pass_bytes = None, False, 0
            self._shrink()


def _order_key(point: Mapping[str, Any]) -> tuple[tuple[int, float, str], ...]:
    # numbers by value, anything else by its text; a pass then holds neighbouring points, which share arrays
    return tuple(
        (0, float(v), "") if isinstance(v, int | float) and not isinstance(v, bool) else (1, 0.0, str(v))
        for v in point.values()
    )


@dataclass
class _Run:
    equity_fen: npt.NDArray[np.int64]
    trade_pnl: npt.NDArray[np.float64]
    traded: npt.NDArray[np.float64]
    metrics: dict[str, Any]


def _run_metrics(strategy: Strategy, panel: Panel, config: BacktestConfig, cache: SharedCache | None = None) -> _Run:
    """The engine run of `run_backtest` and its metrics, without the result object (orders table, hash, git
    version, JSON): an optimiser needs only the metrics. The metrics are computed exactly as run_backtest does."""
    engine = Engine(strategy, panel, config, record_positions=False, store=cache)
    engine.run()
    trades = engine.trades.arrays({k: np.int64 for k in engine.trades.columns})
    sells = trades["side"] < 0
    equity_fen = engine.cash_hist + engine.mv_hist
    pnl = trades["pnl"][sells] / 100.0
    traded = engine.traded_hist / 100.0
    metrics = compute_metrics(
        equity_fen / 100.0,
        engine.initial_cash_fen / 100.0,
        trade_pnl=pnl,
        traded_value=traded,
        config=MetricsConfig(risk_free_rate=config.risk_free_rate, var_level=config.var_level),
    )
    return _Run(equity_fen, pnl, traded, metrics.as_dict())


class Evaluator:
    """Evaluates points of one strategy over one loaded panel, sharing the context cache between them.

    Points are run `batch_size` at a time as the portfolios of one `BatchEngine` pass (the same metrics as one at a
    time, exactly; ~7x less time per point at 100); a strategy that listens to on_order/on_trade, or
    `batch_size=1`, runs one point at a time. The points of a call are ordered by their parameter values first, so a
    pass holds neighbouring points (which share indicator arrays). `cache_bytes` bounds the shared cache; a pass
    whose arrays do not fit in it is run again as two half passes (and later passes of this evaluator are no
    larger), so the cache never thrashes."""

    def __init__(
        self,
        panel: Panel,
        config: BacktestConfig,
        strategy_cls: type[Strategy],
        objective: Objective | None = None,
        constraints: Sequence[Constraint] = (),
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        batch_size: int = 100,
    ) -> None:
        if batch_size < 1:
            raise OptimisationError(f"batch_size must be >= 1, got {batch_size}")
        self.panel = panel
        self.config = config
        self.strategy_cls = strategy_cls
        self.objective = objective or Objective()
        self.constraints = tuple(constraints)
        self.cache = SharedCache(cache_bytes)
        self.batch_size = batch_size
        self.pass_limit = batch_size  # points per pass: lowered when a pass does not fit in the cache

    def __call__(self, points: Sequence[Mapping[str, Any]]) -> list[PointResult]:
        results: list[PointResult | None] = [None] * len(points)
        batched: list[tuple[int, Strategy]] = []
        for i, point in enumerate(points):
            strategy = self._strategy(point)
            if isinstance(strategy, PointResult):
                results[i] = strategy
            elif self.batch_size > 1 and not listens_to_events(strategy):
                batched.append((i, strategy))
            else:
                results[i] = self._alone(point, strategy)
        batched.sort(key=lambda item: _order_key(points[item[0]]))
        start = 0
        while start < len(batched):
            chunk = batched[start : start + self.pass_limit]
            try:
                with self.cache.batch_pass(splittable=len(chunk) > 1):
                    outcome = self._together([points[i] for i, _ in chunk], [s for _, s in chunk])
            except PassTooLarge:
                # its arrays do not fit: half as many points per pass from now on (fresh strategies: the stopped
                # ones have state); what the stopped pass computed stays cached as far as the budget allows
                self.pass_limit = max(1, len(chunk) // 2)
                batched[start : start + len(chunk)] = [
                    (i, self.strategy_cls(self.strategy_cls.parse_params(points[i]))) for i, _ in chunk
                ]
                continue
            for (i, _), result in zip(chunk, outcome, strict=True):
                results[i] = result
            start += len(chunk)
        assert all(r is not None for r in results)
        return results  # type: ignore[return-value]

    def one(self, point: Mapping[str, Any]) -> PointResult:
        strategy = self._strategy(point)
        return strategy if isinstance(strategy, PointResult) else self._alone(point, strategy)

    def _strategy(self, point: Mapping[str, Any]) -> Strategy | PointResult:
        try:
            return self.strategy_cls(self.strategy_cls.parse_params(point))
        except ValidationError as exc:
            return score(point, None, self.objective, error=f"invalid parameters: {exc.errors()[0].get('msg')}")

    def _alone(self, point: Mapping[str, Any], strategy: Strategy) -> PointResult:
        try:
            with self.cache.batch_pass(splittable=False):
                run = _run_metrics(strategy, self.panel, self.config, self.cache)
        except Exception as exc:  # a strategy that raises on one point fails that point, not the search
            return score(point, None, self.objective, error=f"{type(exc).__name__}: {exc}")
        return score(point, run.metrics, self.objective, self.constraints)

    def _together(self, points: Sequence[Mapping[str, Any]], strategies: Sequence[Strategy]) -> list[PointResult]:
        try:
            engine = BatchEngine(strategies, self.panel, self.config, cache=self.cache)
            engine.run()
        except Exception:  # not a strategy's error (those are per portfolio): run the points one by one instead
            return [self.one(point) for point in points]
        results = []
        for p, point in enumerate(points):
            error = engine.errors[p]
            if error is not None:
                results.append(score(point, None, self.objective, error=f"{type(error).__name__}: {error}"))
                continue
            try:
                metrics = engine.metrics(p)
            except Exception as exc:
                results.append(score(point, None, self.objective, error=f"{type(exc).__name__}: {exc}"))
                continue
            results.append(score(point, metrics, self.objective, self.constraints))
        return results


def evaluate(
    points: Sequence[Mapping[str, Any]],
    panel: Panel,
    config: BacktestConfig,
    strategy_cls: type[Strategy],
    *,
    objective: Objective | None = None,
    constraints: Sequence[Constraint] = (),
) -> list[PointResult]:
    """Run each point over the one loaded `panel` (load it with `load_bars(bars, config)`); metrics only. A point
    the strategy refuses or that raises is a result with `error`, ranked last."""
    return Evaluator(panel, config, strategy_cls, objective, constraints)(points)


# --- searches --------------------------------------------------------------------------------------------------

EvaluateFn = Callable[[list[dict[str, Any]]], list[PointResult]]


@dataclass
class SearchResult:
    results: list[PointResult]  # ranked, best first
    skipped: int  # points the strategy's validators refused (never evaluated)
    evaluations: int

    @property
    def best(self) -> PointResult | None:
        return self.results[0] if self.results else None


def grid_search(space: ParameterSpace, evaluate_fn: EvaluateFn, objective: Objective) -> SearchResult:
    points, skipped = space.grid()
    results = evaluate_fn(points) if points else []
    return SearchResult(rank(results, objective), len(skipped), len(results))


@dataclass(frozen=True)
class GeneticSettings:
    population: int = 20
    generations: int = 10
    budget: int = 200  # distinct points evaluated at most
    tournament: int = 3
    crossover_rate: float = 0.9
    mutation_rate: float = 0.2  # per gene
    elite: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        checks = (
            ("population", self.population >= 2),
            ("generations", self.generations >= 1),
            ("budget", self.budget >= 1),
            ("tournament", self.tournament >= 1),
            ("crossover_rate", 0.0 <= self.crossover_rate <= 1.0),
            ("mutation_rate", 0.0 <= self.mutation_rate <= 1.0),
            ("elite", 0 <= self.elite < self.population),
        )
        for name, ok in checks:
            if not ok:
                raise OptimisationError(f"ga.{name}: {getattr(self, name)!r} is out of range")


_MAX_TRIES = 50  # attempts to draw a point the strategy accepts and that is new, per slot


def _indices(space: ParameterSpace, point: Mapping[str, Any]) -> list[int]:
    return [d.values.index(point[d.name]) for d in space.domains]


def genetic_generation(
    space: ParameterSpace,
    settings: GeneticSettings,
    generation: int,
    previous: Sequence[PointResult],
    seen: set[str],
    objective: Objective,
) -> tuple[list[dict[str, Any]], int]:
    """The points of generation `generation` (0: a random population), and how many drawn points the strategy
    refused. A pure function of its arguments (the random stream is seeded by (seed, generation)), so a
    coordinator that crashed can compute it again from what is stored. New points are never in `seen`: a point
    is evaluated once; the elite are carried over (already evaluated, so they cost nothing)."""
    rng = np.random.default_rng([settings.seed, generation])
    refused = 0
    chosen: list[dict[str, Any]] = []
    keys: set[str] = set()

    def accept(point: dict[str, Any]) -> bool:
        nonlocal refused
        key = point_key(point)
        if key in seen or key in keys:
            return False
        if space.invalid_reason(point) is not None:
            refused += 1
            return False
        chosen.append(point)
        keys.add(key)
        return True

    def random_point() -> dict[str, Any]:
        return space.point([d.values[int(rng.integers(len(d.values)))] for d in space.domains])

    if generation == 0 or not previous:
        for _ in range(settings.population * _MAX_TRIES):
            if len(chosen) >= settings.population:
                break
            accept(random_point())
        return chosen, refused

    ranked = rank([r for r in previous if r.error is None] or list(previous), objective)
    elite = [dict(r.params) for r in ranked[: settings.elite]]
    keys.update(point_key(p) for p in elite)

    def tournament() -> PointResult:
        picks = rng.integers(len(ranked), size=min(settings.tournament, len(ranked)))
        return ranked[int(min(picks))]  # ranked best first: the lowest index wins

    for _ in range((settings.population - len(elite)) * _MAX_TRIES):
        if len(chosen) + len(elite) >= settings.population:
            break
        a, b = _indices(space, tournament().params), _indices(space, tournament().params)
        if rng.random() < settings.crossover_rate:
            mask = rng.random(len(a)) < 0.5
            child = [x if m else y for x, y, m in zip(a, b, mask, strict=True)]
        else:
            child = list(a)
        for g, domain in enumerate(space.domains):
            if rng.random() < settings.mutation_rate:
                size = len(domain.values)
                if domain.kind == "choice":
                    child[g] = int(rng.integers(size))
                else:
                    # a step of a few grid values either way, clipped to the domain: mutation stays within bounds
                    jump = int(np.rint(rng.normal(0.0, max(1.0, size / 10))))
                    child[g] = int(np.clip(child[g] + (jump or (1 if rng.random() < 0.5 else -1)), 0, size - 1))
        accept(space.point([d.values[i] for d, i in zip(space.domains, child, strict=True)]))
    return elite + chosen, refused


def genetic_search(
    space: ParameterSpace, evaluate_fn: EvaluateFn, objective: Objective, settings: GeneticSettings
) -> SearchResult:
    """Tournament selection, uniform crossover, mutation within the domains, elitism; at most `budget` distinct
    evaluations (each point once: a cache by point key). Deterministic for a seed."""
    cache: dict[str, PointResult] = {}
    previous: list[PointResult] = []
    refused = 0
    for generation in range(settings.generations):
        points, skipped = genetic_generation(space, settings, generation, previous, set(cache), objective)
        refused += skipped
        new = [p for p in points if point_key(p) not in cache][: settings.budget - len(cache)]
        for result in evaluate_fn(new) if new else []:
            cache[result.key] = result
        previous = [cache[k] for k in (point_key(p) for p in points) if k in cache]
        if len(cache) >= settings.budget or not new:
            break
    return SearchResult(rank(list(cache.values()), objective), refused, len(cache))


# --- walk-forward ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WalkForwardWindow:
    """Day indexes into the trading days, half-open: in-sample [is_start, is_end), out-of-sample
    [oos_start, oos_end)."""

    index: int
    is_start: int
    is_end: int
    oos_start: int
    oos_end: int


def walk_forward_windows(
    days: int, in_sample: int, out_of_sample: int, step: int | None = None, *, anchored: bool = False
) -> list[WalkForwardWindow]:
    """Windows over `days` trading days. Window k's in-sample starts at k x step (rolling) or at 0 (anchored) and
    ends at k x step + in_sample; its out-of-sample follows for `out_of_sample` days. Only windows whose
    out-of-sample fits entirely are made. `step` defaults to `out_of_sample`, so the out-of-sample periods tile."""
    step = out_of_sample if step is None else step
    for name, value in (("in_sample", in_sample), ("out_of_sample", out_of_sample), ("step", step)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise OptimisationError(f"walk_forward.{name}: must be a whole number of trading days >= 1")
    if in_sample + out_of_sample > days:
        raise OptimisationError(
            f"walk_forward: in_sample + out_of_sample = {in_sample + out_of_sample} days, but the data has {days}"
        )
    windows: list[WalkForwardWindow] = []
    k = 0
    while True:
        is_end = k * step + in_sample
        oos_end = is_end + out_of_sample
        if oos_end > days:
            break
        windows.append(WalkForwardWindow(k, 0 if anchored else k * step, is_end, is_end, oos_end))
        k += 1
    return windows


@dataclass
class WalkForwardResult:
    windows: list[dict[str, Any]]  # per window: dates, IS best params and objective, OOS metrics
    dates: list[str]  # the stitched out-of-sample days
    equity: list[float]  # stitched out-of-sample equity, CNY
    metrics: dict[str, Any]  # of the stitched curve
    unused_days: int  # trading days after the last out-of-sample window


def walk_forward(
    bars: pd.DataFrame,
    config: BacktestConfig,
    space: ParameterSpace,
    objective: Objective,
    *,
    in_sample: int,
    out_of_sample: int,
    step: int | None = None,
    anchored: bool = False,
    constraints: Sequence[Constraint] = (),
    method: Literal["grid", "ga"] = "grid",
    ga: GeneticSettings | None = None,
) -> WalkForwardResult:
    """Optimise in each in-sample window, run the best point over the out-of-sample window that follows, and
    stitch the out-of-sample curves.

    Each run is its own backtest over its window's bars (loaded with start/end = the window), so indicators warm
    up inside the window. Capital is carried: the first out-of-sample run starts with `config.initial_cash`, each
    next one with the previous one's final equity (mark-to-market, to the fen) as cash, i.e. as if the book were
    closed at the last close without sell costs; so the stitched curve chains without jumps and its metrics (same
    definitions as a single run) are over the out-of-sample days only. A window whose in-sample has no feasible
    point with a defined objective runs the best-ranked point anyway and says so (`is_feasible` False)."""
    if step is not None and step < out_of_sample:
        raise OptimisationError("walk_forward.step: below out_of_sample the out-of-sample periods would overlap")
    full = load_bars(bars, config)
    days = full.dates
    plan = walk_forward_windows(len(days), in_sample, out_of_sample, step, anchored=anchored)
    capital = config.initial_cash
    equity_parts: list[npt.NDArray[np.int64]] = []
    pnl_parts: list[npt.NDArray[np.float64]] = []
    traded_parts: list[npt.NDArray[np.float64]] = []
    out_windows: list[dict[str, Any]] = []
    for w in plan:
        is_config = config.model_copy(update={"start": days[w.is_start], "end": days[w.is_end - 1]})
        is_panel = load_bars(bars, is_config)
        evaluator = Evaluator(is_panel, is_config, space.strategy, objective, constraints)
        if method == "ga":
            search = genetic_search(space, evaluator, objective, ga or GeneticSettings())
        else:
            search = grid_search(space, evaluator, objective)
        best = search.best
        if best is None:
            raise OptimisationError(f"walk_forward: window {w.index} has no point the strategy accepts")
        oos_config = config.model_copy(
            update={"start": days[w.oos_start], "end": days[w.oos_end - 1], "initial_cash": capital}
        )
        oos_panel = load_bars(bars, oos_config)
        run = _run_metrics(space.strategy(space.strategy.parse_params(best.params)), oos_panel, oos_config)
        out_windows.append(
            {
                "index": w.index,
                "in_sample": [days[w.is_start].isoformat(), days[w.is_end - 1].isoformat()],
                "out_of_sample": [days[w.oos_start].isoformat(), days[w.oos_end - 1].isoformat()],
                "best_params": best.params,
                "is_objective": best.objective,
                "is_feasible": best.feasible,
                "is_evaluations": search.evaluations,
                "starting_capital": str(capital),
                "oos_metrics": run.metrics,
                "oos_objective": run.metrics.get(objective.metric),
            }
        )
        equity_parts.append(run.equity_fen)
        pnl_parts.append(run.trade_pnl)
        traded_parts.append(run.traded)
        capital = Decimal(int(run.equity_fen[-1])) / 100
    equity_fen = np.concatenate(equity_parts)
    metrics = compute_metrics(
        equity_fen / 100.0,
        float(config.initial_cash),
        trade_pnl=np.concatenate(pnl_parts),
        traded_value=np.concatenate(traded_parts),
        config=MetricsConfig(risk_free_rate=config.risk_free_rate, var_level=config.var_level),
    )
    oos_days = [d.isoformat() for w in plan for d in days[w.oos_start : w.oos_end]]
    return WalkForwardResult(
        out_windows,
        oos_days,
        (equity_fen / 100.0).tolist(),
        metrics.as_dict(),
        len(days) - (plan[-1].oos_end if plan else 0),
    )


def iter_batches(items: Sequence[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield list(items[i : i + size])

"""Data-quality checks on daily bars: find the defects real market data has, and report them.

The checks never drop, reorder or "fix" a row: they read the bars and return a `QualityReport` naming, for every
defect, the ts_code, the trade date, the rule and a human-readable detail. Storage, scheduling and the HTTP/CLI
surfaces live elsewhere; this module does no I/O, so the same function checks an ingest batch, a CSV import or the
whole stored market.

Input is in the storage units of the store (docs/data.md): prices (open, high, low, close, pre_close and the limit
prices) in integer fen, `vol` in shares, `amount` in fen, `adj_factor` Tushare's backward factor. Columns may be
ints, floats, Decimals or numeric text; `trade_date` may be `datetime.date`, datetime64 or Tushare's YYYYMMDD text.

Every rule is vectorised (one sort by ts_code and date, then numpy over whole columns), and each rule keeps at most
`QualityThresholds.max_findings_per_rule` findings (the first ones by ts_code, then date) while still counting all
of them, so a systematically broken file gives a short report with true totals. See docs/data-quality.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from shared.core.domain.codes import Board, InvalidTsCode, parse_ts_code
from shared.core.market.rules import price_limit_ratio

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

BAR_COLUMNS = ("ts_code", "trade_date", "open", "high", "low", "close", "pre_close", "vol", "amount")
PRICE_COLUMNS = ("open", "high", "low", "close", "pre_close")
_EPOCH = date(1970, 1, 1)
_FLOAT_SLACK = 1e-6  # fen values are integers; this only absorbs float noise in the comparisons


class Severity(StrEnum):
    ERROR = "error"  # the row contradicts itself or the exchange's rules: it cannot be a true print
    WARNING = "warning"  # suspicious or incomplete, but real markets occasionally produce it


@dataclass(frozen=True)
class Rule:
    id: str
    severity: Severity
    summary: str


# In report order.
RULES: dict[str, Rule] = {
    r.id: r
    for r in (
        Rule("duplicate_row", Severity.ERROR, "more than one row for the same ts_code and trade_date"),
        Rule("invalid_ts_code", Severity.ERROR, "ts_code is not an A-share stock code like 600000.SH"),
        Rule("bad_price", Severity.ERROR, "a price is missing, not a number, or not above zero"),
        Rule("ohlc_inconsistent", Severity.ERROR, "low <= open, close <= high does not hold"),
        Rule("bad_volume", Severity.ERROR, "vol or amount is missing, not a number, or negative"),
        Rule("bad_adj_factor", Severity.ERROR, "adj_factor is missing, not a number, or not above zero"),
        Rule("non_trading_day", Severity.ERROR, "a bar on a day the exchange was closed"),
        Rule("outside_limits", Severity.ERROR, "close (or high/low) beyond the day's limit prices"),
        Rule("pre_close_gap", Severity.WARNING, "pre_close does not continue the previous bar's close"),
        Rule("missing_bar", Severity.WARNING, "no bar on a trading day while listed and not suspended"),
        Rule("zero_volume", Severity.WARNING, "vol is zero on a day the symbol was not suspended"),
        Rule("return_outlier", Severity.WARNING, "the day's move from pre_close exceeds the board's limit"),
    )
}


class QualityInputError(ValueError):
    """The inputs cannot be checked at all (missing columns, unreadable dates, a calendar that does not cover
    the bars). Defects *in* the data are findings, never this error."""


@dataclass(frozen=True)
class QualityThresholds:
    # Findings kept per rule (the count is always the full total). 0 keeps counts only.
    max_findings_per_rule: int = 1_000
    # Extra fen allowed between pre_close and the previous close (0: must be equal on ordinary days).
    pre_close_tolerance_fen: float = 0.0
    # Precision of the adj factors as published: Tushare's own sample shows 3 decimals (000001.SZ 108.031), so
    # the ex-rights reference price implied by the factors is only known to about this relative precision.
    adj_factor_quantum: float = 0.001
    # return_outlier: fraction added to the board's limit ratio (0.01 = one percentage point).
    outlier_tolerance: float = 0.01
    # return_outlier: trading days after listing with no price limit, exempt from the check (STAR/ChiNext/main
    # board registration rules: the first 5 days; BSE: the first day).
    listing_days_without_limit: int = 5

    def __post_init__(self) -> None:
        if self.max_findings_per_rule < 0:
            raise ValueError("max_findings_per_rule must be >= 0")
        for name in ("pre_close_tolerance_fen", "adj_factor_quantum", "outlier_tolerance"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.listing_days_without_limit < 0:
            raise ValueError("listing_days_without_limit must be >= 0")


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: Severity
    ts_code: str
    trade_date: date
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {
            "rule": self.rule,
            "severity": str(self.severity),
            "ts_code": self.ts_code,
            "trade_date": self.trade_date.isoformat(),
            "detail": self.detail,
        }


@dataclass(frozen=True)
class QualityReport:
    rows_checked: int
    first_date: date | None
    last_date: date | None
    rules_run: tuple[str, ...]
    rules_skipped: dict[str, str]  # rule -> why it could not run (an input it needs was not given)
    counts: dict[str, int]  # rule -> total findings, including those not kept in `findings`
    findings: tuple[Finding, ...]  # by rule (RULES order), then ts_code, then trade_date; capped per rule
    max_findings_per_rule: int = field(default=1_000)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def ok(self) -> bool:
        return self.total == 0

    def count_by_severity(self) -> dict[str, int]:
        totals = {str(s): 0 for s in Severity}
        for rule, n in self.counts.items():
            totals[str(RULES[rule].severity)] += n
        return totals

    def truncated(self) -> dict[str, int]:
        """Rules whose findings were capped -> how many were counted but not kept."""
        kept: dict[str, int] = {}
        for f in self.findings:
            kept[f.rule] = kept.get(f.rule, 0) + 1
        return {rule: n - kept.get(rule, 0) for rule, n in self.counts.items() if n > kept.get(rule, 0)}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, for the stored report of a run and the API."""
        return {
            "rows_checked": self.rows_checked,
            "first_date": self.first_date.isoformat() if self.first_date else None,
            "last_date": self.last_date.isoformat() if self.last_date else None,
            "rules_run": list(self.rules_run),
            "rules_skipped": dict(self.rules_skipped),
            "counts": dict(self.counts),
            "by_severity": self.count_by_severity(),
            "max_findings_per_rule": self.max_findings_per_rule,
            "truncated": self.truncated(),
            "findings": [f.to_dict() for f in self.findings],
        }


# -- input normalisation ---------------------------------------------------------------------------------------------


def _require(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise QualityInputError(f"{what} lacks column(s) {', '.join(missing)}")


def _numbers(column: pd.Series) -> FloatArray:
    # Text or None in a number column becomes NaN, which the rules report as a finding on that row.
    values = pd.to_numeric(column, errors="coerce")
    return np.asarray(values, dtype=np.float64)


def _epoch_days(values: Any, what: str) -> IntArray:
    """Dates of any accepted kind -> days since 1970-01-01."""
    if len(values) == 0:
        return np.zeros(0, dtype=np.int64)
    index = pd.Index(values)
    try:
        if index.dtype == object or pd.api.types.is_string_dtype(index.dtype):
            text = index.astype(str)
            # Tushare's YYYYMMDD text, or ISO dates / date objects rendered as text.
            parsed = pd.to_datetime(text, format="%Y%m%d" if text.str.fullmatch(r"\d{8}").all() else "ISO8601")
        else:
            parsed = pd.to_datetime(index)
    except (ValueError, TypeError) as exc:
        raise QualityInputError(f"{what}: unreadable date ({exc})") from exc
    if parsed.isna().any():
        raise QualityInputError(f"{what}: a date is missing")
    if parsed.tz is not None:
        parsed = parsed.tz_localize(None)
    return np.asarray(parsed.values.astype("datetime64[D]").astype(np.int64), dtype=np.int64)


def _factorized_days(column: pd.Series, what: str) -> IntArray:
    # A few thousand distinct days among millions of rows: parse each distinct value once.
    codes, uniques = pd.factorize(column, use_na_sentinel=False)
    return _epoch_days(uniques, what)[codes]


def _as_date(day: int | np.integer[Any]) -> date:
    return _EPOCH + timedelta(days=int(day))


def _fen(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def tally_findings(
    rules: Sequence[str], finding_rules: Sequence[str], counts: Mapping[str, int] | None
) -> tuple[dict[str, int], dict[str, int]]:
    """A report's totals per rule: (found, kept). `finding_rules` are the rules of the findings kept as examples;
    `counts` (rule -> findings found) the true totals when the findings were capped per rule (None: the findings
    kept are all there were). Raises ValueError when a rule's count is below the number of its findings kept."""
    kept: dict[str, int] = dict.fromkeys(rules, 0)
    for rule in finding_rules:
        kept[rule] = kept.get(rule, 0) + 1
    found = dict(kept) if counts is None else {rule: int(counts.get(rule, 0)) for rule in {**kept, **counts}}
    short = {rule: (found[rule], n) for rule, n in kept.items() if found[rule] < n}
    if short:
        raise ValueError(f"counts below the findings kept (rule: (count, kept)): {short}")
    return found, kept


# -- the checks ------------------------------------------------------------------------------------------------------


@dataclass
class _Collector:
    cap: int
    universe: npt.NDArray[Any]
    report_from: int | None = None  # epoch day: hits dated earlier are context, not findings
    counts: dict[str, int] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)

    def add(
        self,
        rule: str,
        mask_or_index: BoolArray | IntArray,
        sym: IntArray,
        day: IntArray,
        detail: Callable[[int], str],
    ) -> None:
        """Record a rule's hits. `sym`/`day` are aligned with the mask (or indexed by the index array), and the
        hits must already be in (ts_code, date) order."""
        hits = np.flatnonzero(mask_or_index) if mask_or_index.dtype == np.bool_ else mask_or_index
        if self.report_from is not None and len(hits):
            hits = hits[day[hits] >= self.report_from]
        self.counts[rule] = self.counts.get(rule, 0) + len(hits)
        severity = RULES[rule].severity
        room = self.cap - sum(1 for f in self.findings if f.rule == rule)
        for i in hits[: max(room, 0)]:
            self.findings.append(Finding(rule, severity, str(self.universe[sym[i]]), _as_date(day[i]), detail(int(i))))


def run_quality_checks(
    bars: pd.DataFrame,
    *,
    calendar: Sequence[date],
    suspensions: pd.DataFrame | None = None,
    limits: pd.DataFrame | None = None,
    adj_factors: pd.DataFrame | None = None,
    securities: pd.DataFrame | None = None,
    rules: Collection[str] | None = None,
    thresholds: QualityThresholds | None = None,
    report_from: date | None = None,
    checked_range: tuple[date, date] | None = None,
) -> QualityReport:
    """Check daily bars and report every defect found (see RULES and docs/data-quality.md).

    - `bars`: ts_code, trade_date, open, high, low, close, pre_close, vol, amount, and optionally adj_factor.
    - `calendar`: the exchange's open days, covering at least the bars' first to last date.
    - `suspensions`: ts_code, trade_date of suspended days (if it has Tushare's suspend_type, only "S" rows count).
    - `limits`: ts_code, trade_date, up_limit, down_limit in fen.
    - `adj_factors`: ts_code, trade_date, adj_factor, when `bars` has no adj_factor column.
    - `securities`: ts_code, list_date, delist_date (delist_date may be empty).
    - `rules`: rule ids to run (default all); a rule whose input is missing is listed in `rules_skipped`.
    - `report_from`: bars dated before it are context only (e.g. the previous open day, so that the first day's
      pre_close is checked against the close before it, and a stock's gap is seen from its last bar): only findings
      dated on or after it are reported and counted, and only rows from it on count in `rows_checked`.
    - `checked_range`: (first, last) day of the range checked, inside the calendar: a listed symbol (a
      `securities` row) is expected to trade on every open day of it between its list and delist dates. Default:
      the bars' first to last open day. A caller checking a range in pieces (groups of symbols) passes the whole
      range, so each piece expects the same days whatever bars the piece happens to hold.
    """
    limits_ = thresholds or QualityThresholds()
    selected = list(RULES) if rules is None else list(rules)
    unknown = [r for r in selected if r not in RULES]
    if unknown:
        raise QualityInputError(f"unknown rule(s) {', '.join(unknown)}; known: {', '.join(RULES)}")
    wanted = set(selected)

    _require(bars, BAR_COLUMNS, "bars")
    if adj_factors is not None:
        if "adj_factor" in bars.columns:
            raise QualityInputError("adj factors given twice: bars has an adj_factor column and adj_factors is set")
        _require(adj_factors, ("ts_code", "trade_date", "adj_factor"), "adj_factors")
    if suspensions is not None:
        _require(suspensions, ("ts_code", "trade_date"), "suspensions")
    if limits is not None:
        _require(limits, ("ts_code", "trade_date", "up_limit", "down_limit"), "limits")
    if securities is not None:
        _require(securities, ("ts_code", "list_date"), "securities")

    cal = np.unique(_epoch_days(list(calendar), "calendar"))
    if len(cal) == 0:
        raise QualityInputError("calendar is empty: the checks need the exchange's open days")

    # -- one sort by (ts_code, date); every rule reads these sorted arrays ---------------------------------------
    bar_codes, bar_syms = pd.factorize(bars["ts_code"].astype(str), sort=True)
    sec_codes = np.asarray(securities["ts_code"].astype(str)) if securities is not None else np.array([], dtype=str)
    universe = np.union1d(np.asarray(bar_syms, dtype=object).astype(str), sec_codes).astype(object)
    sym_all = np.searchsorted(universe, np.asarray(bar_syms, dtype=str))[bar_codes].astype(np.int64)
    day_all = _factorized_days(bars["trade_date"], "bars.trade_date")
    order = np.lexsort((day_all, sym_all))  # stable: duplicates keep their input order
    sym = sym_all[order]
    day = day_all[order]
    n = len(order)
    col = {c: _numbers(bars[c])[order] for c in (*PRICE_COLUMNS, "vol", "amount")}
    af: FloatArray | None = None
    if "adj_factor" in bars.columns:
        af = _numbers(bars["adj_factor"])[order]
    elif adj_factors is not None:
        af = _lookup(adj_factors, "adj_factor", universe, sym, day, "adj_factors")

    if n and (day.min() < cal[0] or day.max() > cal[-1]):
        raise QualityInputError(
            f"calendar covers {_as_date(cal[0])}..{_as_date(cal[-1])} but the bars run "
            f"{_as_date(day.min())}..{_as_date(day.max())}: give open days covering the bars"
        )

    span: tuple[int, int] | None = None  # checked_range as calendar positions
    if checked_range is not None:
        first_day, last_day = (int(d) for d in _epoch_days(list(checked_range), "checked_range"))
        if first_day > last_day or first_day < cal[0] or last_day > cal[-1]:
            raise QualityInputError(
                f"checked_range {checked_range[0]}..{checked_range[1]} must be a range inside the calendar "
                f"({_as_date(cal[0])}..{_as_date(cal[-1])})"
            )
        span = int(np.searchsorted(cal, first_day, side="left")), int(np.searchsorted(cal, last_day, side="right")) - 1

    since = None if report_from is None else int(_epoch_days([report_from], "report_from")[0])
    out = _Collector(limits_.max_findings_per_rule, universe, since)
    skipped: dict[str, str] = {}
    run: list[str] = []

    def runs(rule: str, needs: str | None = None, missing: bool = False) -> bool:
        if rule not in wanted:
            return False
        if missing:
            skipped[rule] = f"needs {needs}"
            return False
        run.append(rule)
        out.counts.setdefault(rule, 0)
        return True

    # Duplicates: equal (sym, day) are adjacent after the sort; the first of each group is the one later
    # sequential rules follow.
    same_key = np.zeros(n, dtype=np.bool_)
    if n > 1:
        same_key[1:] = (sym[1:] == sym[:-1]) & (day[1:] == day[:-1])
    first = ~same_key
    if runs("duplicate_row"):
        starts = np.flatnonzero(first)
        sizes = np.diff(np.append(starts, n))
        dup_starts = starts[sizes > 1]
        dup_sizes = dict(zip(dup_starts.tolist(), sizes[sizes > 1].tolist(), strict=True))
        out.add("duplicate_row", dup_starts, sym, day, lambda i: _duplicate_detail(i, dup_sizes[i], col))

    # Board of each symbol, for invalid codes and the outlier limits.
    boards: list[Board | None] = []
    for code in universe:
        try:
            boards.append(parse_ts_code(str(code)).board)
        except InvalidTsCode:
            boards.append(None)
    if runs("invalid_ts_code"):
        # One finding per symbol, at its first row: the code is wrong on every row alike.
        bad_sym = np.array([b is None for b in boards], dtype=np.bool_)
        sym_first = np.ones(n, dtype=np.bool_)
        sym_first[1:] = sym[1:] != sym[:-1]
        rows_of = np.bincount(sym, minlength=len(universe))
        out.add(
            "invalid_ts_code",
            bad_sym[sym] & sym_first,
            sym,
            day,
            lambda i: f"{universe[sym[i]]!r} is not a stock code ({rows_of[sym[i]]} rows)",
        )

    if runs("bad_price"):
        bad = np.zeros(n, dtype=np.bool_)
        for name in PRICE_COLUMNS:
            bad |= ~(col[name] > 0)  # NaN compares False: caught here too
        out.add("bad_price", bad, sym, day, lambda i: _list_bad(col, PRICE_COLUMNS, i, "not above 0"))

    if runs("ohlc_inconsistent"):
        o, h, lo, c = col["open"], col["high"], col["low"], col["close"]
        with np.errstate(invalid="ignore"):
            broken = (lo > o) | (lo > c) | (o > h) | (c > h) | (lo > h)
        out.add(
            "ohlc_inconsistent",
            broken,
            sym,
            day,
            lambda i: f"open {_fen(o[i])} high {_fen(h[i])} low {_fen(lo[i])} close {_fen(c[i])} (fen)",
        )

    if runs("bad_volume"):
        bad = ~(col["vol"] >= 0) | ~(col["amount"] >= 0)
        out.add("bad_volume", bad, sym, day, lambda i: _list_bad(col, ("vol", "amount"), i, "negative"))

    if runs("bad_adj_factor", "adj factors", af is None):
        assert af is not None
        a = af
        out.add("bad_adj_factor", ~(a > 0), sym, day, lambda i: f"adj_factor {a[i]!r}")

    pos = np.searchsorted(cal, day)
    is_open = cal[np.minimum(pos, len(cal) - 1)] == day
    if runs("non_trading_day"):
        out.add(
            "non_trading_day",
            ~is_open,
            sym,
            day,
            lambda i: f"{_as_date(day[i]):%Y-%m-%d (%a)} is not an open day of the calendar",
        )

    susp_keys = _suspension_keys(suspensions, universe, cal) if suspensions is not None else None

    if runs("outside_limits", "limits", limits is None):
        assert limits is not None
        up = _lookup(limits, "up_limit", universe, sym, day, "limits")
        down = _lookup(limits, "down_limit", universe, sym, day, "limits")
        c, h, lo = col["close"], col["high"], col["low"]
        with np.errstate(invalid="ignore"):
            beyond = (c > up + _FLOAT_SLACK) | (c < down - _FLOAT_SLACK)
            beyond |= (h > up + _FLOAT_SLACK) | (lo < down - _FLOAT_SLACK)
        out.add("outside_limits", beyond, sym, day, lambda i: _limits_detail(i, col, up, down))

    # Sequential rules follow each symbol's first row per open day, in date order.
    seq = np.flatnonzero(first & is_open)

    if runs("pre_close_gap", "adj factors", af is None):
        assert af is not None
        _pre_close_gap(out, seq, sym, day, col, af, limits_)

    if runs("missing_bar"):
        _missing_bars(out, seq, sym, pos, cal, universe, securities, susp_keys, span)

    if runs("zero_volume"):
        zero = np.flatnonzero(col["vol"] == 0)
        if susp_keys is not None and len(zero):
            zero = zero[~np.isin(sym[zero] * len(cal) + pos[zero], susp_keys) | ~is_open[zero]]
        out.add("zero_volume", zero, sym, day, lambda i: "vol 0 and not suspended")

    if runs("return_outlier"):
        _return_outliers(out, n, sym, day, pos, col, boards, universe, cal, securities, limits_)

    findings = sorted(out.findings, key=lambda f: list(RULES).index(f.rule))  # stable: per-rule order kept
    reported = day if since is None else day[day >= since]
    return QualityReport(
        rows_checked=len(reported),
        first_date=_as_date(reported.min()) if len(reported) else None,
        last_date=_as_date(reported.max()) if len(reported) else None,
        rules_run=tuple(run),
        rules_skipped=skipped,
        counts={r: out.counts[r] for r in run},
        findings=tuple(findings),
        max_findings_per_rule=limits_.max_findings_per_rule,
    )


def _duplicate_detail(i: int, size: int, col: dict[str, FloatArray]) -> str:
    block = np.column_stack([col[c][i : i + size] for c in col])
    same = all(np.array_equal(block[0], row, equal_nan=True) for row in block[1:])
    return f"{size} rows ({'identical' if same else 'differing values'})"


def _list_bad(col: dict[str, FloatArray], names: Sequence[str], i: int, problem: str) -> str:
    parts = []
    for c in names:
        v = col[c][i]
        if math.isnan(v):
            parts.append(f"{c} missing or not a number")
        elif (problem == "not above 0" and v <= 0) or (problem == "negative" and v < 0):
            parts.append(f"{c} {_fen(v)} {problem}")
    return "; ".join(parts)


def _limits_detail(i: int, col: dict[str, FloatArray], up: FloatArray, down: FloatArray) -> str:
    parts = []
    for name, value in (("close", col["close"][i]), ("high", col["high"][i]), ("low", col["low"][i])):
        if value > up[i] + _FLOAT_SLACK:
            parts.append(f"{name} {_fen(value)} > up_limit {_fen(up[i])}")
        elif value < down[i] - _FLOAT_SLACK:
            parts.append(f"{name} {_fen(value)} < down_limit {_fen(down[i])}")
    return "; ".join(parts)


def _keys_of(frame: pd.DataFrame, universe: npt.NDArray[Any], what: str) -> tuple[IntArray, IntArray, BoolArray]:
    """(symbol index in universe, epoch day, known-symbol mask) for a frame keyed by ts_code and trade_date."""
    codes = np.asarray(frame["ts_code"].astype(str), dtype=object)
    idx = np.searchsorted(universe, codes)
    known = idx < len(universe)
    known[known] = universe[idx[known]] == codes[known]
    days = _factorized_days(frame["trade_date"], f"{what}.trade_date")
    return idx.astype(np.int64), days, known


def _lookup(
    frame: pd.DataFrame, column: str, universe: npt.NDArray[Any], sym: IntArray, day: IntArray, what: str
) -> FloatArray:
    """`frame[column]` aligned to the bars' (sym, day); NaN where the frame has no row (first row wins)."""
    f_sym, f_day, known = _keys_of(frame, universe, what)
    values = _numbers(frame[column])[known]
    span = np.int64(1) << 32  # epoch days fit in 32 bits for any plausible date
    f_key = f_sym[known] * span + (f_day[known] - np.int64(-(1 << 31)))
    keys, first_idx = np.unique(f_key, return_index=True)
    bar_key = sym * span + (day - np.int64(-(1 << 31)))
    at = np.searchsorted(keys, bar_key)
    at_c = np.minimum(at, max(len(keys) - 1, 0))
    hit = (at < len(keys)) & (keys[at_c] == bar_key) if len(keys) else np.zeros(len(sym), dtype=np.bool_)
    result = np.full(len(sym), np.nan)
    result[hit] = values[first_idx[at_c[hit]]]
    return result


def _suspension_keys(suspensions: pd.DataFrame, universe: npt.NDArray[Any], cal: IntArray) -> IntArray:
    """sym * len(cal) + calendar position of every suspended open day of a known symbol."""
    frame = suspensions
    if "suspend_type" in frame.columns:
        # Tushare's suspend_d lists suspensions ("S") and resumptions ("R"); only the former mean no trading.
        frame = frame[frame["suspend_type"].astype(str).str.upper() == "S"]
    f_sym, f_day, known = _keys_of(frame, universe, "suspensions")
    f_pos = np.searchsorted(cal, f_day)
    on_cal = (f_pos < len(cal)) & (cal[np.minimum(f_pos, len(cal) - 1)] == f_day)
    keep = known & on_cal
    return np.unique(f_sym[keep] * len(cal) + f_pos[keep])


def _pre_close_gap(
    out: _Collector,
    seq: IntArray,
    sym: IntArray,
    day: IntArray,
    col: dict[str, FloatArray],
    af: FloatArray,
    th: QualityThresholds,
) -> None:
    if len(seq) < 2:
        return
    cur, prev = seq[1:], seq[:-1]
    pairs = sym[cur] == sym[prev]
    cur, prev = cur[pairs], prev[pairs]
    prev_close, pre = col["close"][prev], col["pre_close"][cur]
    af_prev, af_cur = af[prev], af[cur]
    usable = (prev_close > 0) & (pre > 0) & (af_prev > 0) & (af_cur > 0)  # bad values are reported by other rules
    cur, prev = cur[usable], prev[usable]
    prev_close, pre, af_prev, af_cur = prev_close[usable], pre[usable], af_prev[usable], af_cur[usable]
    changed = af_prev != af_cur
    # Ex-rights day: Tushare's factor steps by prev_close / reference price, so the reference price (the day's
    # pre_close) is prev_close * af_prev / af_cur, up to the exchange's rounding to the fen (0.5) and the
    # factors' own rounding (half a quantum on each, relative to its size).
    expected = np.where(changed, prev_close * af_prev / af_cur, prev_close)
    af_slack = expected * (th.adj_factor_quantum / 2) * (1 / af_prev + 1 / af_cur)
    tolerance = th.pre_close_tolerance_fen + np.where(changed, 0.5 + af_slack, 0.0) + _FLOAT_SLACK
    gap = np.abs(pre - expected) > tolerance
    cur_hits, prev_hits = cur[gap], prev[gap]
    exp_hits, changed_hits = expected[gap], changed[gap]
    lookup = {int(c): k for k, c in enumerate(cur_hits)}

    def detail(i: int) -> str:
        k = lookup[i]
        p = int(prev_hits[k])
        base = f"pre_close {_fen(col['pre_close'][i])} but close on {_as_date(day[p])} was {_fen(col['close'][p])}"
        if changed_hits[k]:
            return f"{base}; adj_factor {af[p]:g} -> {af[i]:g} implies about {exp_hits[k]:.1f}"
        return f"{base} and adj_factor is unchanged ({af[i]:g})"

    out.add("pre_close_gap", cur_hits, sym, day, detail)


def _missing_bars(
    out: _Collector,
    seq: IntArray,
    sym: IntArray,
    pos: IntArray,
    cal: IntArray,
    universe: npt.NDArray[Any],
    securities: pd.DataFrame | None,
    susp_keys: IntArray | None,
    span: tuple[int, int] | None,
) -> None:
    n_sym, n_cal = len(universe), len(cal)
    s_sym, s_pos = sym[seq], pos[seq]
    # Window of expected trading days per symbol, as calendar positions [start, end].
    start = np.full(n_sym, n_cal, dtype=np.int64)
    end = np.full(n_sym, -1, dtype=np.int64)
    has_bars = np.zeros(n_sym, dtype=np.bool_)
    if len(seq):
        group_first = np.r_[True, s_sym[1:] != s_sym[:-1]]
        group_last = np.r_[s_sym[1:] != s_sym[:-1], True]
        start[s_sym[group_first]] = s_pos[group_first]
        end[s_sym[group_last]] = s_pos[group_last]
        has_bars[s_sym[group_first]] = True
    # The checked range as calendar positions: given, else the bars' own first to last open day.
    if span is not None:
        range_start, range_end = span
    elif len(seq):
        range_start, range_end = int(s_pos.min()), int(s_pos.max())
    else:
        range_start, range_end = n_cal, -1
    start, end = np.maximum(start, range_start), np.minimum(end, range_end)
    if securities is not None and len(securities):
        codes = np.asarray(securities["ts_code"].astype(str), dtype=object)
        idx = np.searchsorted(universe, codes)
        list_days = _optional_days(securities["list_date"])
        delist_days = (
            _optional_days(securities["delist_date"])
            if "delist_date" in securities.columns
            else np.full(len(codes), np.nan)
        )
        list_pos = np.searchsorted(cal, np.nan_to_num(list_days).astype(np.int64), side="left")
        delist_pos = np.searchsorted(cal, np.nan_to_num(delist_days).astype(np.int64), side="left")
        # Listed from list_date (its first trading day) to the day before delist_date; a still-listed stock is
        # expected up to the end of the checked range, not just up to its own last bar.
        listed_from = np.where(np.isnan(list_days), np.where(has_bars[idx], start[idx], range_start), list_pos)
        listed_to = np.where(np.isnan(delist_days), range_end, delist_pos - 1)
        start[idx] = np.maximum(listed_from, range_start)
        end[idx] = np.minimum(listed_to, range_end)

    # Present positions inside each window (bars outside a window are not this rule's business).
    inside = (s_pos >= start[s_sym]) & (s_pos <= end[s_sym])
    p_sym, p_pos = s_sym[inside], s_pos[inside]
    gap_sym: list[IntArray] = []
    gap_start: list[IntArray] = []
    gap_len: list[IntArray] = []
    if len(p_sym):
        same = p_sym[1:] == p_sym[:-1]
        gap_sym.append(p_sym[:-1][same])
        gap_start.append(p_pos[:-1][same] + 1)
        gap_len.append((p_pos[1:] - p_pos[:-1] - 1)[same])
        firsts = np.r_[True, ~same]
        lasts = np.r_[~same, True]
        gap_sym += [p_sym[firsts], p_sym[lasts]]
        gap_start += [start[p_sym[firsts]], p_pos[lasts] + 1]
        gap_len += [p_pos[firsts] - start[p_sym[firsts]], end[p_sym[lasts]] - p_pos[lasts]]
    present = np.zeros(n_sym, dtype=np.bool_)
    present[p_sym] = True
    empty = np.flatnonzero(~present & (end >= start))
    gap_sym.append(empty)
    gap_start.append(start[empty])
    gap_len.append(end[empty] - start[empty] + 1)
    g_sym, g_start, g_len = (np.concatenate(a).astype(np.int64) for a in (gap_sym, gap_start, gap_len))
    keep = g_len > 0
    g_sym, g_start, g_len = g_sym[keep], g_start[keep], g_len[keep]
    total = int(g_len.sum())
    offsets = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(g_len) - g_len, g_len)
    m_key = np.sort(np.repeat(g_sym * n_cal + g_start, g_len) + offsets)
    if susp_keys is not None and len(m_key):
        m_key = m_key[~np.isin(m_key, susp_keys, assume_unique=True)]
    m_sym, m_day = m_key // n_cal, cal[m_key % n_cal]
    out.add(
        "missing_bar",
        np.arange(len(m_key), dtype=np.int64),
        m_sym,
        m_day,
        lambda i: (
            "no bar on an open day while listed"
            + (", and no suspension recorded" if susp_keys is not None else " (no suspension list given)")
        ),
    )


def _optional_days(column: pd.Series) -> FloatArray:
    """Epoch days as floats, NaN where empty (delist_date of a listed stock)."""
    result = np.full(len(column), np.nan)
    present = column.notna().to_numpy() & (column.astype(str).str.strip() != "").to_numpy()
    if present.any():
        result[present] = _epoch_days(column[present].to_numpy(), "securities dates")
    return result


def _return_outliers(
    out: _Collector,
    n: int,
    sym: IntArray,
    day: IntArray,
    pos: IntArray,
    col: dict[str, FloatArray],
    boards: list[Board | None],
    universe: npt.NDArray[Any],
    cal: IntArray,
    securities: pd.DataFrame | None,
    th: QualityThresholds,
) -> None:
    if n == 0:
        return
    # Widest limit of the symbol's board on that day (ST stocks have narrower ones, so nothing true is flagged).
    day_codes, day_uniques = pd.factorize(day, sort=True)
    ratio = np.full(n, np.nan)
    board_of = np.array([b.value if b is not None else "" for b in boards], dtype=object)[sym]
    for board in Board:
        rows = board_of == board.value
        if not rows.any():
            continue
        per_day = np.array([_seasoned_ratio(board, _as_date(d)) for d in day_uniques], dtype=np.float64)
        ratio[rows] = per_day[day_codes[rows]]
    if securities is not None and len(securities) and th.listing_days_without_limit:
        codes = np.asarray(securities["ts_code"].astype(str), dtype=object)
        list_days = _optional_days(securities["list_date"])
        ok = ~np.isnan(list_days)
        list_pos = np.full(len(universe), -(10**9), dtype=np.int64)
        list_pos[np.searchsorted(universe, codes[ok])] = np.searchsorted(cal, list_days[ok].astype(np.int64))
        listing_day = pos - list_pos[sym] + 1  # 1 on the listing day itself
        new_listing = (listing_day >= 1) & (listing_day <= th.listing_days_without_limit)
        ratio[new_listing] = np.nan
    pre, close, high, low = col["pre_close"], col["close"], col["high"], col["low"]
    with np.errstate(invalid="ignore", divide="ignore"):
        move = np.fmax(np.fmax(high / pre - 1, 1 - low / pre), np.abs(close / pre - 1))
        # The exchange rounds the limit price to the fen, so a limit move can exceed the ratio by 0.5 fen.
        allowed = ratio + th.outlier_tolerance + 0.5 / pre
        hit = (pre > 0) & (move > allowed)
    out.add(
        "return_outlier",
        hit,
        sym,
        day,
        lambda i: (
            f"close {close[i] / pre[i] - 1:+.2%}, high {high[i] / pre[i] - 1:+.2%}, low {low[i] / pre[i] - 1:+.2%}"
            f" from pre_close {_fen(pre[i])}; board limit {ratio[i]:.0%}"
        ),
    )


def _seasoned_ratio(board: Board, day: date) -> float:
    ratio = price_limit_ratio(board, day)
    return float(ratio[0]) if ratio is not None else math.nan

"""One catalogue of indicators by name: every TA-Lib function (through its abstract API) and the A-share staples of
`ashare`, each with its inputs, parameters (types and defaults) and outputs, computed by `compute(name, data)`.

Every indicator is causal (the value at t uses data up to t) and leaves NaN for its first `lookback` positions."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal, TypeAlias

import numpy as np
import numpy.typing as npt
import pandas as pd
import talib
from pydantic import BaseModel

from shared.research.strategy.indicators import ashare

# talib.abstract's stub declares only the function wrappers, not `Function`; the module is used untyped.
_abstract: Any = importlib.import_module("talib.abstract")

FloatArray = npt.NDArray[np.float64]
ParamValue: TypeAlias = int | float
Data: TypeAlias = Mapping[str, npt.ArrayLike] | pd.DataFrame

# TA-Lib's optional-input types (TA_OptInputParameterType).
_REAL_TYPES = {0, 1}  # TA_OptInput_RealRange, TA_OptInput_RealList
_INTEGER_LIST = 3  # TA_OptInput_IntegerList: only the moving-average types use it
LIANGHUA_GROUP = "A-share Staples"
# The bar field A-share data (tushare, the data service) calls `vol`; TA-Lib calls it `volume`.
INPUT_ALIASES = {"volume": "vol"}


class ParameterChoice(BaseModel):
    value: int
    label: str


class ParameterInfo(BaseModel):
    name: str
    display_name: str
    type: Literal["integer", "real"]
    default: int | float
    help: str = ""
    choices: list[ParameterChoice] | None = None  # the allowed values, when they are an enumeration (matype)


class IndicatorInfo(BaseModel):
    """How the API presents an indicator. `inputs` are the series `compute` reads from its data (by key or column);
    `lookback` is the number of leading NaN positions with the default parameters."""

    name: str
    group: str
    display_name: str
    source: Literal["ta-lib", "lianghua"]
    inputs: list[str]
    parameters: list[ParameterInfo]
    outputs: list[str]
    lookback: int
    description: str = ""


class UnknownIndicatorError(KeyError):
    """No indicator by that name; `suggestions` are the closest names."""

    def __init__(self, name: str, suggestions: list[str]) -> None:
        self.name = name
        self.suggestions = suggestions
        hint = f"; did you mean {', '.join(suggestions)}?" if suggestions else ""
        self.message = f"there is no indicator named {name!r}{hint}"
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class _Spec:
    info: IndicatorInfo
    run: Callable[[dict[str, FloatArray], dict[str, ParamValue]], dict[str, np.ndarray]]
    lookback: Callable[[dict[str, ParamValue]], int]


# --- TA-Lib ---------------------------------------------------------------------------------------------------


def _ma_type_choices() -> list[ParameterChoice]:
    labels: Mapping[int, str] = getattr(talib.MA_Type, "_lookup", {})
    probe = _abstract.Function("MA")
    choices = []
    for value, label in sorted(labels.items()):
        probe.set_parameters(matype=value)
        if probe.lookback >= 0:  # only the types this TA-Lib build accepts
            choices.append(ParameterChoice(value=value, label=label))
    return choices


def _talib_lookback(name: str, params: Mapping[str, ParamValue]) -> int:
    function = _abstract.Function(name)
    if params:
        function.set_parameters(**params)
    return int(function.lookback)


def _talib_spec(name: str, ma_types: list[ParameterChoice]) -> _Spec:
    function = _abstract.Function(name)
    info = function.info
    inputs: list[str] = []
    for series in info["input_names"].values():
        inputs.extend([series] if isinstance(series, str) else series)
    parameters = []
    for opt in function._Function__local.opt_inputs.values():
        real = opt["type"] in _REAL_TYPES
        parameters.append(
            ParameterInfo(
                name=opt["name"],
                display_name=opt["display_name"],
                type="real" if real else "integer",
                default=float(opt["default_value"]) if real else int(opt["default_value"]),
                help=opt["help"] or "",
                choices=ma_types if opt["type"] == _INTEGER_LIST else None,
            )
        )
    outputs = list(info["output_names"])

    def run(arrays: dict[str, FloatArray], params: dict[str, ParamValue]) -> dict[str, np.ndarray]:
        call = _abstract.Function(name)
        if params:
            call.set_parameters(**params)
        result = call.run(arrays)
        results = result if isinstance(result, list) else [result]
        return dict(zip(outputs, results, strict=True))

    return _Spec(
        info=IndicatorInfo(
            name=name,
            group=info["group"],
            display_name=info["display_name"],
            source="ta-lib",
            inputs=inputs,
            parameters=parameters,
            outputs=outputs,
            lookback=int(function.lookback),
        ),
        run=run,
        lookback=lambda params: _talib_lookback(name, params),
    )


# --- the A-share staples --------------------------------------------------------------------------------------


def _int_param(name: str, display_name: str, default: int, help_text: str) -> ParameterInfo:
    return ParameterInfo(name=name, display_name=display_name, type="integer", default=default, help=help_text)


def _int(params: Mapping[str, ParamValue], name: str) -> int:
    return int(params[name])


def _lianghua_specs() -> list[_Spec]:
    def spec(
        name: str,
        display_name: str,
        inputs: list[str],
        parameters: list[ParameterInfo],
        outputs: list[str],
        run: Callable[[dict[str, FloatArray], dict[str, ParamValue]], dict[str, np.ndarray]],
        lookback: Callable[[dict[str, ParamValue]], int],
        description: str,
    ) -> _Spec:
        defaults = {p.name: p.default for p in parameters}
        info = IndicatorInfo(
            name=name,
            group=LIANGHUA_GROUP,
            display_name=display_name,
            source="lianghua",
            inputs=inputs,
            parameters=parameters,
            outputs=outputs,
            lookback=lookback(defaults),
            description=description,
        )
        return _Spec(info=info, run=run, lookback=lookback)

    def run_kdj(a: dict[str, FloatArray], p: dict[str, ParamValue]) -> dict[str, np.ndarray]:
        k, d, j = ashare.kdj(a["high"], a["low"], a["close"], _int(p, "n"), _int(p, "m1"), _int(p, "m2"))
        return {"k": k, "d": d, "j": j}

    def run_macd(a: dict[str, FloatArray], p: dict[str, ParamValue]) -> dict[str, np.ndarray]:
        dif, dea, bar = ashare.macd_cn(
            a["close"], _int(p, "fastperiod"), _int(p, "slowperiod"), _int(p, "signalperiod")
        )
        return {"dif": dif, "dea": dea, "macd": bar}

    def run_momentum(a: dict[str, FloatArray], p: dict[str, ParamValue]) -> dict[str, np.ndarray]:
        return {"momentum": ashare.momentum(a["close"], _int(p, "n"))}

    def run_zscore(a: dict[str, FloatArray], p: dict[str, ParamValue]) -> dict[str, np.ndarray]:
        return {"zscore": ashare.rolling_zscore(a["close"], _int(p, "n"), _int(p, "ddof"))}

    def first_doc_line(function: Callable[..., Any]) -> str:
        return (function.__doc__ or "").strip().splitlines()[0]

    return [
        spec(
            "KDJ_CN",
            "KDJ as Chinese software computes it (K = SMA(RSV, M1, 1) from 50, D = SMA(K, M2, 1), J = 3K - 2D)",
            ["high", "low", "close"],
            [
                _int_param("n", "RSV Period", 9, "Bars in the RSV window (>= 1)"),
                _int_param("m1", "K Smoothing", 3, "K_t = ((m1 - 1) K_{t-1} + RSV_t) / m1 (>= 1)"),
                _int_param("m2", "D Smoothing", 3, "D_t = ((m2 - 1) D_{t-1} + K_t) / m2 (>= 1)"),
            ],
            ["k", "d", "j"],
            run_kdj,
            lambda p: _int(p, "n") - 1,
            first_doc_line(ashare.kdj),
        ),
        spec(
            "MACD_CN",
            "MACD as Chinese software shows it (DIF, DEA, bar = 2 * (DIF - DEA))",
            ["close"],
            [
                _int_param("fastperiod", "Fast Period", 12, "EMA period of the fast line (>= 1)"),
                _int_param("slowperiod", "Slow Period", 26, "EMA period of the slow line (>= 1)"),
                _int_param("signalperiod", "Signal Period", 9, "EMA period of DEA (>= 1)"),
            ],
            ["dif", "dea", "macd"],
            run_macd,
            lambda p: 0,
            "EMAs seeded with the first close, so every bar has a value (TA-Lib's MACD is SMA-seeded)",
        ),
        spec(
            "MOMENTUM",
            "N-day momentum (close_t / close_{t-n} - 1)",
            ["close"],
            [_int_param("n", "Period", 10, "Bars back (>= 1)")],
            ["momentum"],
            run_momentum,
            lambda p: _int(p, "n"),
            first_doc_line(ashare.momentum),
        ),
        spec(
            "ZSCORE",
            "Rolling z-score ((x_t - mean) / std over n bars)",
            ["close"],
            [
                _int_param("n", "Period", 20, "Bars in the window (>= 2)"),
                _int_param("ddof", "Delta Degrees of Freedom", 0, "0: population std (as TA-Lib STDDEV), 1: sample"),
            ],
            ["zscore"],
            run_zscore,
            lambda p: _int(p, "n") - 1,
            first_doc_line(ashare.rolling_zscore),
        ),
    ]


# --- the catalogue -------------------------------------------------------------------------------------------


@cache
def _catalogue() -> dict[str, _Spec]:
    ma_types = _ma_type_choices()
    specs = [_talib_spec(name, ma_types) for name in talib.get_functions()]
    specs.extend(_lianghua_specs())
    catalogue: dict[str, _Spec] = {}
    for spec in specs:
        if spec.info.name in catalogue:
            raise RuntimeError(f"indicator name {spec.info.name!r} is defined twice")
        catalogue[spec.info.name] = spec
    return dict(sorted(catalogue.items()))


def _spec(name: str) -> _Spec:
    catalogue = _catalogue()
    found = catalogue.get(name.upper()) if isinstance(name, str) else None
    if found is None:
        suggestions = difflib.get_close_matches(str(name).upper(), list(catalogue), n=5, cutoff=0.6)
        raise UnknownIndicatorError(str(name), suggestions)
    return found


def list_indicators() -> list[IndicatorInfo]:
    """Every indicator, sorted by name: the TA-Lib functions and the A-share staples (group "A-share Staples")."""
    return [spec.info for spec in _catalogue().values()]


def indicator_info(name: str) -> IndicatorInfo:
    """The indicator's metadata; names are case-insensitive ("sma" is SMA). Raises UnknownIndicatorError."""
    return _spec(name).info


def _checked_params(spec: _Spec, params: Mapping[str, Any]) -> dict[str, ParamValue]:
    """Each value of the right type and, alone, in the range the indicator accepts; then all of them together."""
    declared = {p.name: p for p in spec.info.parameters}
    checked: dict[str, ParamValue] = {}
    for key, value in params.items():
        parameter = declared.get(key)
        if parameter is None:
            known = ", ".join(declared) or "none"
            close = difflib.get_close_matches(key, list(declared), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"{spec.info.name} has no parameter {key!r}{hint}; its parameters: {known}")
        if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
            raise ValueError(f"{spec.info.name} parameter {key!r} must be a number, got {value!r}")
        if parameter.type == "integer":
            if not isinstance(value, int | np.integer):
                raise ValueError(f"{spec.info.name} parameter {key!r} must be an integer, got {value!r}")
            checked[key] = int(value)
        else:
            if not np.isfinite(value):
                raise ValueError(f"{spec.info.name} parameter {key!r} must be finite, got {value!r}")
            checked[key] = float(value)
        if spec.info.source == "ta-lib" and spec.lookback({key: checked[key]}) < 0:
            # TA-Lib's lookback is -1 for a value outside the parameter's range.
            raise ValueError(f"{spec.info.name} parameter {key!r}={value!r} is outside the range TA-Lib accepts")
    if spec.info.source == "ta-lib" and checked and spec.lookback(checked) < 0:
        raise ValueError(f"{spec.info.name}: TA-Lib refuses the combination {checked}")
    if spec.info.source == "lianghua":
        values = {p.name: p.default for p in spec.info.parameters} | checked
        try:
            spec.lookback(values)
            spec.run(_empty_inputs(spec), values)  # the function's own range checks, on no data
        except ValueError as exc:
            raise ValueError(f"{spec.info.name}: {exc}") from exc
        return values
    return checked


def _empty_inputs(spec: _Spec) -> dict[str, FloatArray]:
    return {name: np.empty(0) for name in spec.info.inputs}


def _input_arrays(spec: _Spec, data: Data) -> dict[str, FloatArray]:
    arrays: dict[str, FloatArray] = {}
    for name in spec.info.inputs:
        key = name
        if key not in data and INPUT_ALIASES.get(name, "") in data:
            key = INPUT_ALIASES[name]
        if key not in data:
            given = ", ".join(map(str, data.keys())) or "nothing"
            raise ValueError(f"{spec.info.name} needs the input series {name!r}; given: {given}")
        column = data[key]
        if isinstance(column, pd.Series):
            array = column.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            array = np.asarray(column, dtype=np.float64)
        if array.ndim != 1:
            raise ValueError(f"input series {name!r} must be 1-D, got shape {array.shape}")
        # TA-Lib needs contiguous float64; asarray may hand back a strided view of a caller's 2-D array.
        arrays[name] = np.ascontiguousarray(array)
    lengths = {name: len(array) for name, array in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"{spec.info.name}: input series differ in length: {lengths}")
    return arrays


def compute(name: str, data: Data, **params: Any) -> dict[str, np.ndarray]:
    """Compute indicator `name` over `data` (a mapping of 1-D arrays or a DataFrame, oldest bar first, holding the
    series named by `indicator_info(name).inputs`; `vol` stands in for `volume`). Returns the outputs by name, each
    as long as the input: float64, except the candlestick patterns' int32 (+-100 bullish/bearish, 0 none).

    Raises UnknownIndicatorError for an unknown name and ValueError naming the parameter for a bad one."""
    spec = _spec(name)
    checked = _checked_params(spec, params)
    return spec.run(_input_arrays(spec, data), checked)


def lookback(name: str, **params: Any) -> int:
    """How many leading positions of the output are NaN (positions 0 .. lookback - 1) with these parameters."""
    spec = _spec(name)
    checked = _checked_params(spec, params)
    return spec.lookback(checked)

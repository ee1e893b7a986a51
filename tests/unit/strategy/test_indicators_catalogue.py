"""The indicator catalogue: every TA-Lib function by name, with its metadata, and values checked against plain
numpy/pandas reimplementations of the textbook definitions (TA-Lib's seeding included)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import talib

from shared.research.strategy.indicators import (
    UnknownIndicatorError,
    compute,
    indicator_info,
    list_indicators,
    lookback,
)

CLOSE = np.array(
    [10.00, 10.12, 10.05, 10.31, 10.28, 10.40, 10.22, 10.18, 10.35, 10.52, 10.47, 10.61, 10.58, 10.44, 10.39,
     10.50, 10.66, 10.71, 10.63, 10.80, 10.92, 10.85, 10.77, 10.90, 11.02, 10.96, 11.10, 11.05, 10.98, 11.15,
     11.21, 11.08, 11.00, 10.94, 11.06, 11.19, 11.25, 11.31, 11.20, 11.12]
)  # fmt: skip


def ohlcv(bars: int = 300, seed: int = 20240611) -> pd.DataFrame:
    """A random walk with consistent OHLC, A-share `vol` in shares, and MAVP's `periods` input."""
    rng = np.random.default_rng(seed)
    close = 10 * np.exp(np.cumsum(rng.normal(0, 0.02, bars)))
    open_ = close * (1 + rng.normal(0, 0.005, bars))
    high = np.maximum(open_, close) * (1 + rng.random(bars) * 0.01)
    low = np.minimum(open_, close) * (1 - rng.random(bars) * 0.01)
    vol = rng.integers(100_000, 10_000_000, bars)
    periods = rng.integers(2, 30, bars).astype(np.float64)
    return pd.DataFrame({"open": open_, "high": high, "low": low, "close": close, "vol": vol, "periods": periods})


# --- the catalogue ----------------------------------------------------------------------------------------------


def test_every_talib_function_is_listed_with_its_metadata() -> None:
    listed = {info.name: info for info in list_indicators()}
    talib_names = set(talib.get_functions())
    assert len(talib_names) == 201
    assert talib_names <= set(listed)
    assert {name for name, info in listed.items() if info.source == "ta-lib"} == talib_names
    assert {name for name, info in listed.items() if info.source == "lianghua"} == {
        "KDJ_CN",
        "MACD_CN",
        "MOMENTUM",
        "ZSCORE",
    }
    for name, info in listed.items():
        assert info.group and info.display_name and info.inputs and info.outputs, name
        assert info.lookback >= 0, name
        for parameter in info.parameters:
            assert parameter.type in ("integer", "real"), name
            assert isinstance(parameter.default, int if parameter.type == "integer" else float), (name, parameter)
    assert list(listed) == sorted(listed)


def test_metadata_matches_what_the_talib_documentation_says() -> None:
    bbands = indicator_info("BBANDS")
    assert bbands.group == "Overlap Studies" and bbands.display_name == "Bollinger Bands"
    assert bbands.inputs == ["close"]
    assert [(p.name, p.type, p.default) for p in bbands.parameters] == [
        ("timeperiod", "integer", 20),
        ("nbdevup", "real", 2.0),
        ("nbdevdn", "real", 2.0),
        ("matype", "integer", 0),
    ]
    matype = bbands.parameters[3]
    assert matype.choices is not None and (0, "Simple Moving Average") in [(c.value, c.label) for c in matype.choices]
    assert bbands.outputs == ["upperband", "middleband", "lowerband"]
    assert bbands.lookback == 19
    assert indicator_info("CDLENGULFING").inputs == ["open", "high", "low", "close"]
    assert indicator_info("OBV").inputs == ["close", "volume"]
    assert indicator_info("MACD").outputs == ["macd", "macdsignal", "macdhist"]
    assert indicator_info("MACD").lookback == 33  # 25 for the slow EMA + 8 for the signal EMA
    assert indicator_info("sma").name == "SMA"


def test_unknown_name_is_a_key_error_with_close_matches() -> None:
    with pytest.raises(UnknownIndicatorError) as caught:
        compute("BBAND", {"close": CLOSE})
    assert isinstance(caught.value, KeyError)
    assert "BBANDS" in caught.value.suggestions
    assert str(caught.value) == "there is no indicator named 'BBAND'; did you mean BBANDS, ACCBANDS?"
    with pytest.raises(KeyError):
        indicator_info("NO_SUCH_THING")


@pytest.mark.parametrize(
    ("name", "params", "named"),
    [
        ("SMA", {"timeperoid": 5}, "'timeperoid'"),
        ("SMA", {"timeperiod": 0}, "'timeperiod'=0"),
        ("SMA", {"timeperiod": 2.5}, "'timeperiod'"),
        ("SMA", {"timeperiod": True}, "'timeperiod'"),
        ("SMA", {"timeperiod": "5"}, "'timeperiod'"),
        ("BBANDS", {"nbdevup": float("nan")}, "'nbdevup'"),
        ("MA", {"matype": 99}, "'matype'=99"),
        ("KDJ_CN", {"m1": 0}, "m1"),
        ("ZSCORE", {"ddof": 2}, "ddof"),
    ],
)
def test_bad_parameters_are_value_errors_naming_the_parameter(name: str, params: dict, named: str) -> None:
    data = {"close": CLOSE, "high": CLOSE + 0.1, "low": CLOSE - 0.1}
    with pytest.raises(ValueError, match=named):
        compute(name, data, **params)


def test_missing_or_ragged_inputs_are_value_errors() -> None:
    with pytest.raises(ValueError, match="'high'"):
        compute("ATR", {"close": CLOSE})
    with pytest.raises(ValueError, match="differ in length"):
        compute("ATR", {"high": CLOSE, "low": CLOSE[:-1], "close": CLOSE})


def test_lookback_is_the_number_of_leading_nans() -> None:
    assert lookback("SMA", timeperiod=5) == 4
    assert lookback("RSI") == 14
    assert lookback("MACD", fastperiod=5, slowperiod=10, signalperiod=4) == 12
    assert lookback("KDJ_CN", n=5) == 4
    assert lookback("MOMENTUM", n=3) == 3
    with pytest.raises(ValueError, match="timeperiod"):
        lookback("SMA", timeperiod=-1)
    out = compute("SMA", {"close": CLOSE}, timeperiod=5)["real"]
    assert np.isnan(out[:4]).all() and not np.isnan(out[4:]).any()


def test_every_indicator_runs_on_300_bars_through_the_catalogue() -> None:
    frame = ohlcv()
    for info in list_indicators():
        out = compute(info.name, frame)
        assert list(out) == info.outputs, info.name
        for series in out.values():
            assert series.shape == (300,), info.name
            if series.dtype.kind == "f":
                # Causal with a warm-up: exactly the first `lookback` positions are NaN (ACOS/ASIN/LN etc. of
                # prices may be NaN later, for domain reasons, so only the head is checked).
                assert np.isnan(series[: info.lookback]).all(), info.name


def test_dataframe_and_dict_inputs_and_int_arrays_give_the_same_result() -> None:
    frame = ohlcv(60)
    from_frame = compute("OBV", frame)["real"]
    from_dict = compute("OBV", {"close": frame["close"].to_numpy(), "volume": frame["vol"].to_numpy()})["real"]
    np.testing.assert_array_equal(from_frame, from_dict)
    fen = np.array([1000, 1001, 1003, 1002, 1005, 1004], dtype=np.int64)  # int input is converted to float64
    np.testing.assert_allclose(
        compute("SMA", {"close": fen}, timeperiod=3)["real"][2:], [3004 / 3, 3006 / 3, 3010 / 3, 3011 / 3]
    )


# --- values against a second implementation ---------------------------------------------------------------------


def ema_talib_style(x: np.ndarray, n: int, start: int = 0) -> np.ndarray:
    """TA-Lib's EMA: seeded at index start + n - 1 with the mean of the first n values, then k = 2 / (n + 1)."""
    out = np.full(len(x), np.nan)
    k = 2.0 / (n + 1)
    value = float(np.mean(x[start : start + n]))
    out[start + n - 1] = value
    for i in range(start + n, len(x)):
        value = value + k * (x[i] - value)
        out[i] = value
    return out


def test_sma_is_the_rolling_mean() -> None:
    got = compute("SMA", {"close": CLOSE}, timeperiod=5)["real"]
    np.testing.assert_allclose(got, pd.Series(CLOSE).rolling(5).mean().to_numpy(), rtol=1e-12, equal_nan=True)
    # And one value by hand: the mean of the first five closes.
    assert got[4] == pytest.approx((10.00 + 10.12 + 10.05 + 10.31 + 10.28) / 5, abs=1e-12)


def test_ema_is_sma_seeded_exponential_smoothing() -> None:
    got = compute("EMA", {"close": CLOSE}, timeperiod=10)["real"]
    np.testing.assert_allclose(got, ema_talib_style(CLOSE, 10), rtol=1e-12, equal_nan=True)


def test_rsi_is_wilders() -> None:
    n = 14
    got = compute("RSI", {"close": CLOSE}, timeperiod=n)["real"]
    change = np.diff(CLOSE)
    gain, loss = np.clip(change, 0, None), np.clip(-change, 0, None)
    want = np.full(len(CLOSE), np.nan)
    avg_gain, avg_loss = gain[:n].mean(), loss[:n].mean()
    want[n] = 100 * avg_gain / (avg_gain + avg_loss)
    for i in range(n, len(change)):
        avg_gain = (avg_gain * (n - 1) + gain[i]) / n
        avg_loss = (avg_loss * (n - 1) + loss[i]) / n
        want[i + 1] = 100 * avg_gain / (avg_gain + avg_loss)
    np.testing.assert_allclose(got, want, rtol=1e-10, equal_nan=True)


def test_bbands_are_mean_plus_minus_population_std() -> None:
    got = compute("BBANDS", {"close": CLOSE}, timeperiod=20, nbdevup=2.0, nbdevdn=1.5)
    rolling = pd.Series(CLOSE).rolling(20)
    mid, std = rolling.mean().to_numpy(), rolling.std(ddof=0).to_numpy()
    np.testing.assert_allclose(got["middleband"], mid, rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(got["upperband"], mid + 2.0 * std, rtol=1e-10, equal_nan=True)
    np.testing.assert_allclose(got["lowerband"], mid - 1.5 * std, rtol=1e-10, equal_nan=True)


@pytest.mark.parametrize(("fast", "slow", "signal"), [(5, 10, 4), (12, 26, 9)])
def test_macd_matches_talibs_aligned_ema_definition(fast: int, slow: int, signal: int) -> None:
    """TA-Lib starts both EMAs at the bar where the slow one is first defined (the fast one seeded with the mean of
    its `fast` closes ending there), then smooths DIF from that bar; histogram = DIF - signal (no factor 2)."""
    close = ohlcv(80)["close"].to_numpy()
    got = compute("MACD", {"close": close}, fastperiod=fast, slowperiod=slow, signalperiod=signal)
    slow_ema = ema_talib_style(close, slow)
    fast_ema = ema_talib_style(close, fast, start=slow - fast)
    dif = fast_ema - slow_ema
    dea = ema_talib_style(np.nan_to_num(dif), signal, start=slow - 1)
    first = slow + signal - 2
    dif[:first] = np.nan
    np.testing.assert_allclose(got["macd"], dif, rtol=1e-10, atol=1e-12, equal_nan=True)
    np.testing.assert_allclose(got["macdsignal"], dea, rtol=1e-10, atol=1e-12, equal_nan=True)
    np.testing.assert_allclose(got["macdhist"], dif - dea, rtol=1e-10, atol=1e-12, equal_nan=True)
    assert np.isnan(got["macd"][:first]).all() and not np.isnan(got["macd"][first:]).any()

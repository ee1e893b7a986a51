"""TushareProvider through the real `tushare` client against the local fake Tushare server: every endpoint, the
fields asked for, and each way Tushare fails (rate limit, HTTP 500, timeout, bad token, empty answers)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal

import pandas as pd
import pytest
from pydantic import SecretStr

from services.data.demo import generate_demo_market
from services.data.providers import (
    API_SCHEMAS,
    AuthenticationError,
    DataNotReady,
    DemoProvider,
    MarketDataProvider,
    PermissionDenied,
    ProviderDataError,
    ProviderUnavailable,
    RateLimited,
    RateLimiter,
    RetryPolicy,
    TushareConfig,
    TushareProvider,
)
from shared.platform.settings import Settings
from tests.support.fake_tushare import FakeTushare, fake_tushare

TOKEN = "unit-test-token-0123456789"
DAILY_FIELDS = "ts_code,trade_date,open,high,low,close,pre_close,change,pct_chg,vol,amount"


def _daily_rows() -> pd.DataFrame:
    rows = [
        # ts_code, trade_date, open, high, low, close, pre_close, change, pct_chg, vol (lots), amount (k CNY)
        ("600000.SH", "20240102", 7.05, 7.10, 6.98, 7.03, 7.04, -0.01, -0.142, 301234.0, 211234.567),
        ("000001.SZ", "20240102", 9.39, 9.42, 9.21, 9.21, 9.39, -0.18, -1.9169, 1158366.0, 1075742.252),
        ("688981.SH", "20240102", 52.50, 52.75, 51.60, 51.98, 52.60, -0.62, -1.1787, 156789.33, 815678.9),
        ("600000.SH", "20240103", 7.02, 7.08, 7.00, 7.05, 7.03, 0.02, 0.2845, 250000.0, 176000.0),
        ("000001.SZ", "20240103", 9.19, 9.22, 9.15, 9.20, 9.21, -0.01, -0.1086, 733610.0, 673528.0),
    ]
    frame = pd.DataFrame(rows, columns=DAILY_FIELDS.split(","))
    frame["ah_vol"] = 1.0  # a column the provider does not ask for: must not come back
    return frame


DATASET: dict[str, pd.DataFrame] = {
    "daily": _daily_rows(),
    "adj_factor": pd.DataFrame(
        [("600000.SH", "20240102", 13.123), ("000001.SZ", "20240102", 108.031), ("600000.SH", "20240103", 13.123)],
        columns=["ts_code", "trade_date", "adj_factor"],
    ),
    "daily_basic": pd.DataFrame(
        [
            (
                "600000.SH",
                "20240102",
                7.03,
                0.1,
                0.2,
                0.9,
                4.5,
                4.6,
                0.35,
                1.1,
                1.2,
                5.5,
                5.6,
                2.9e6,
                2.9e6,
                1.3e6,
                2.06e7,
                2.06e7,
            )
        ],
        columns=list(API_SCHEMAS["daily_basic"].fields),
    ),
    "stk_limit": pd.DataFrame(  # pre_close: asked for by name (Tushare does not send it by default)
        [("20240102", "600000.SH", 7.74, 6.34, 7.04), ("20240102", "000001.SZ", 10.33, 8.45, 9.39)],
        columns=["trade_date", "ts_code", "up_limit", "down_limit", "pre_close"],
    ),
    "suspend_d": pd.DataFrame([("600221.SH", "20240102", None, "S")], columns=list(API_SCHEMAS["suspend_d"].fields)),
    "trade_cal": pd.DataFrame(
        [
            ("SSE", "20231229", 1, "20231228"),
            ("SSE", "20231230", 0, "20231229"),
            ("SSE", "20231231", 0, "20231229"),
            ("SSE", "20240101", 0, "20231229"),
            ("SSE", "20240102", 1, "20231229"),
            ("SSE", "20240103", 1, "20240102"),
        ],
        columns=["exchange", "cal_date", "is_open", "pretrade_date"],
    ),
    "stock_basic": pd.DataFrame(
        [
            ("600000.SH", "600000", "浦发银行", "上海", "银行", "主板", "SSE", "L", "19991110", None),
            ("000001.SZ", "000001", "平安银行", "深圳", "银行", "主板", "SZSE", "L", "19910403", None),
            ("600001.SH", "600001", "邯郸钢铁", "河北", "普钢", "主板", "SSE", "D", "19980122", "20091229"),
            ("600087.SH", "600087", "退市长油", "江苏", "水运", "主板", "SSE", "P", "19970612", None),
        ],
        columns=list(API_SCHEMAS["stock_basic"].fields),
    ),
    "index_daily": pd.DataFrame(
        [
            ("000300.SH", "20240102", 3386.35, 3431.0, 3434.2, 3383.3, 3431.11, -44.76, -1.3045, 1.1e8, 1.9e8),
            ("000300.SH", "20240103", 3377.01, 3380.0, 3390.1, 3370.0, 3386.35, -9.34, -0.2758, 1.0e8, 1.8e8),
            ("000905.SH", "20240102", 5400.0, 5450.0, 5460.0, 5390.0, 5455.0, -55.0, -1.0082, 9.0e7, 1.2e8),
        ],
        columns=list(API_SCHEMAS["index_daily"].fields),
    ),
    "index_weight": pd.DataFrame(
        [
            ("000300.SH", "600000.SH", "20231229", 0.45),
            ("000300.SH", "000001.SZ", "20231229", 0.81),
            ("000300.SH", "600000.SH", "20240131", 0.44),
            ("000300.SH", "000001.SZ", "20240131", 0.80),
            ("000905.SH", "600221.SH", "20240131", 0.12),
        ],
        columns=["index_code", "con_code", "trade_date", "weight"],
    ),
    "namechange": pd.DataFrame(
        [
            ("600087.SH", "*ST长油", "20120515", "20140604", "20120514", "*ST"),
            ("600087.SH", "退市长油", "20140605", None, "20140604", "终止上市"),
            ("000001.SZ", "平安银行", "20120801", None, "20120731", "改名"),
        ],
        columns=list(API_SCHEMAS["namechange"].fields),
    ),
}


@pytest.fixture(scope="module")
def server() -> Iterator[FakeTushare]:
    with FakeTushare(DATASET, token=TOKEN, timeout_sleep_s=1.5) as fake:
        yield fake


@pytest.fixture(autouse=True)
def _fresh(server: FakeTushare) -> None:
    server.reset()


def make_provider(server: FakeTushare, **overrides: object) -> TushareProvider:
    settings: dict[str, object] = {
        "token": TOKEN,
        "url": server.url,
        # Long enough that a healthy reply on a loaded 2-core machine is never taken for a timeout (0.15 s once was,
        # and the call was asked again); the fake's injected timeout answers only after 1.5 s.
        "timeout_s": 1.0,
        "calls_per_minute": None,
        "max_attempts": 4,
        "backoff_base_s": 0.001,
        "backoff_max_s": 0.002,
        "rate_limit_attempts": 4,
        "rate_limit_wait_s": 0.001,
        "rate_limit_max_wait_s": 0.002,
    }
    settings.update(overrides)
    return TushareProvider(TushareConfig(**settings))  # type: ignore[arg-type]


def expected(api: str, **equal: str) -> pd.DataFrame:
    """The dataset rows matching `equal`, in the documented columns (worked out from the dataset, not the code)."""
    frame = DATASET[api]
    for column, value in equal.items():
        frame = frame[frame[column] == value]
    return frame.loc[:, list(API_SCHEMAS[api].fields)].reset_index(drop=True)


def assert_same(actual: pd.DataFrame, wanted: pd.DataFrame, key: list[str]) -> None:
    assert list(actual.columns) == list(wanted.columns)
    left = actual.sort_values(key).reset_index(drop=True)
    right = wanted.sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(left, right, check_dtype=False)


# -- happy paths ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("api", ["daily", "adj_factor", "daily_basic", "stk_limit", "suspend_d"])
async def test_whole_market_day_per_api(server: FakeTushare, api: str) -> None:
    provider = make_provider(server)
    frame = await getattr(provider, api)("20240102")
    assert_same(frame, expected(api, trade_date="20240102"), ["ts_code"])
    (call,) = server.calls
    assert call.path == f"/dataapi/{api}"  # the real client's protocol
    assert call.params["trade_date"] == "20240102"
    assert call.fields == ",".join(API_SCHEMAS[api].fields)


async def test_a_reply_without_the_optional_pre_close_gives_it_empty() -> None:
    # A source that does not send stk_limit's pre_close (a field not shown by default): the column is there, empty;
    # the limits are read as they are.
    data = {"stk_limit": DATASET["stk_limit"].drop(columns=["pre_close"])}
    with fake_tushare(data, token=TOKEN) as server:
        frame = await make_provider(server).stk_limit("20240102")
    assert list(frame.columns) == ["trade_date", "ts_code", "up_limit", "down_limit", "pre_close"]
    assert frame["pre_close"].isna().all()
    assert sorted(frame["up_limit"].tolist()) == [7.74, 10.33]


async def test_daily_values_and_units_are_tushares_own(server: FakeTushare) -> None:
    frame = await make_provider(server).daily("2024-01-02")
    star = frame[frame["ts_code"] == "688981.SH"].iloc[0]
    assert star["vol"] == 156789.33  # lots, with STAR odd-lot decimals, untouched
    assert star["amount"] == 815678.9  # thousand CNY
    assert star["close"] == 51.98
    assert frame["trade_date"].tolist() == ["20240102"] * 3
    assert "ah_vol" not in frame.columns  # only the fields asked for
    assert frame["vol"].dtype == "float64"


async def test_stock_basic_asks_for_every_list_status(server: FakeTushare) -> None:
    frame = await make_provider(server).stock_basic()
    assert sorted(frame["ts_code"]) == ["000001.SZ", "600000.SH", "600001.SH", "600087.SH"]
    assert [c.params["list_status"] for c in server.calls] == ["L", "D", "P"]
    delisted = frame[frame["ts_code"] == "600001.SH"].iloc[0]
    assert (delisted["list_status"], delisted["delist_date"]) == ("D", "20091229")
    assert frame[frame["ts_code"] == "600000.SH"]["delist_date"].isna().all()


async def test_trade_cal_goes_year_by_year(server: FakeTushare) -> None:
    frame = await make_provider(server).trade_cal("20231229", "20240103")
    assert frame["cal_date"].tolist() == ["20231229", "20231230", "20231231", "20240101", "20240102", "20240103"]
    assert frame["is_open"].tolist() == [1, 0, 0, 0, 1, 1]
    assert frame["pretrade_date"].tolist()[-1] == "20240102"
    spans = [(c.params["start_date"], c.params["end_date"]) for c in server.calls]
    assert spans == [("20231229", "20231231"), ("20240101", "20240103")]


async def test_index_daily_one_index_over_a_range(server: FakeTushare) -> None:
    frame = await make_provider(server).index_daily("000300.SH", "20240101", "20240131")
    assert frame["trade_date"].tolist() == ["20240102", "20240103"]
    assert frame["close"].tolist() == [3386.35, 3377.01]
    assert set(frame["ts_code"]) == {"000300.SH"}


async def test_index_weight_one_call_per_month(server: FakeTushare) -> None:
    frame = await make_provider(server).index_weight("000300.SH", "20231215", "20240131")
    assert frame["trade_date"].tolist() == ["20231229", "20231229", "20240131", "20240131"]
    assert sorted(frame["con_code"].unique()) == ["000001.SZ", "600000.SH"]
    spans = [(c.params["start_date"], c.params["end_date"]) for c in server.calls]
    assert spans == [("20231215", "20231231"), ("20240101", "20240131")]


async def test_namechange_for_st_history(server: FakeTushare) -> None:
    frame = await make_provider(server).namechange("600087.SH")
    assert frame["name"].tolist() == ["*ST长油", "退市长油"]
    assert frame["end_date"].tolist()[0] == "20140604"
    assert frame["end_date"].isna().tolist() == [False, True]
    everyone = await make_provider(server).namechange(start="20120101", end="20121231")
    assert sorted(everyone["ts_code"]) == ["000001.SZ", "600087.SH"]  # announced in 2012


async def test_pages_through_a_capped_endpoint(server: FakeTushare) -> None:
    frame = await make_provider(server, page_sizes={"daily": 2}).daily("20240102")
    assert sorted(frame["ts_code"]) == ["000001.SZ", "600000.SH", "688981.SH"]
    assert [(c.params["offset"], c.params["limit"]) for c in server.calls] == [(0, 2), (2, 2)]


async def test_a_day_without_trading_is_an_empty_frame_with_columns(server: FakeTushare) -> None:
    frame = await make_provider(server).daily("20240101")
    assert frame.empty
    assert list(frame.columns) == DAILY_FIELDS.split(",")


# -- failures -------------------------------------------------------------------------------------------------------


async def test_rate_limit_reply_waits_and_succeeds(server: FakeTushare) -> None:
    server.inject("daily", "rate_limit", times=2)
    frame = await make_provider(server).daily("20240102")
    assert len(frame) == 3
    assert [c.fault for c in server.calls] == ["rate_limit", "rate_limit", None]


async def test_rate_limit_forever_raises_rate_limited(server: FakeTushare) -> None:
    server.inject("daily", "rate_limit", times=10)
    with pytest.raises(RateLimited, match="每分钟最多访问") as caught:
        await make_provider(server).daily("20240102")
    assert not caught.value.daily_quota
    assert len(server.calls) == 4  # rate_limit_attempts


async def test_http_500_twice_is_retried(server: FakeTushare) -> None:
    server.inject("adj_factor", "http_500", times=2)
    frame = await make_provider(server).adj_factor("20240102")
    assert sorted(frame["ts_code"]) == ["000001.SZ", "600000.SH"]
    assert [c.fault for c in server.calls] == ["http_500", "http_500", None]


async def test_http_errors_forever_raise_instead_of_an_empty_day(server: FakeTushare) -> None:
    server.inject("daily", "http_502", times=1)
    server.inject("daily", "http_500", times=10)
    with pytest.raises(ProviderUnavailable, match="HTTP error status") as caught:
        await make_provider(server).daily("20240102")
    assert caught.value.api == "daily"
    assert len(server.calls) == 4  # max_attempts, then a clear error (the client alone returns an empty frame)


async def test_timeout_is_retried(server: FakeTushare) -> None:
    server.inject("stk_limit", "timeout", times=1)
    frame = await make_provider(server).stk_limit("20240102")
    assert len(frame) == 2
    assert [c.fault for c in server.calls] == ["timeout", None]


async def test_bad_token_is_a_clear_error_without_retries(server: FakeTushare) -> None:
    provider = make_provider(server, token="not-the-right-token-42")
    with pytest.raises(AuthenticationError, match="token") as caught:
        await provider.daily("20240102")
    assert "not-the-right-token-42" not in str(caught.value)
    assert "not-the-right-token-42" not in repr(provider)
    assert len(server.calls) == 1
    assert server.calls[0].token_ok is False


async def test_missing_token_is_refused_up_front() -> None:
    with pytest.raises(AuthenticationError, match="LH_TUSHARE_TOKEN"):
        TushareProvider(TushareConfig(token=""))


def test_config_takes_token_url_and_timeout_from_service_settings() -> None:
    settings = Settings(tushare_token=SecretStr("from-settings-token"), tushare_url="http://127.0.0.1:9/dataapi",
                        tushare_timeout_s=7.5)  # fmt: skip
    config = TushareConfig.from_settings(settings)
    assert config.token.get_secret_value() == "from-settings-token"
    assert (config.url, config.timeout_s) == ("http://127.0.0.1:9/dataapi", 7.5)
    assert "from-settings-token" not in repr(config)
    # The service's settings keep it secret too (they are logged at start-up and shown in tracebacks).
    assert "from-settings-token" not in repr(settings)
    assert "from-settings-token" not in repr(settings.with_overrides(log_level="DEBUG"))
    assert settings.with_overrides(log_level="DEBUG").tushare_token.get_secret_value() == "from-settings-token"


async def test_daily_quota_and_missing_permission_are_not_retried(server: FakeTushare) -> None:
    server.inject("daily", "daily_quota")
    with pytest.raises(RateLimited) as caught:
        await make_provider(server).daily("20240102")
    assert caught.value.daily_quota
    server.inject("index_weight", "no_permission")
    with pytest.raises(PermissionDenied):
        await make_provider(server).index_weight("000300.SH", "20240101", "20240131")
    assert len(server.calls) == 2


async def test_expected_rows_missing_raise_data_not_ready(server: FakeTushare) -> None:
    provider = make_provider(server)
    with pytest.raises(DataNotReady, match="20240104"):
        await provider.daily("20240104", expect_rows=True)  # not in the dataset: the "not yet published" case
    assert len(server.calls) == 4


async def test_one_empty_answer_for_an_open_day_is_retried(server: FakeTushare) -> None:
    server.inject("daily", "empty")
    frame = await make_provider(server).daily("20240102", expect_rows=True)
    assert len(frame) == 3
    assert [c.fault for c in server.calls] == ["empty", None]


async def test_a_reply_that_is_not_json_is_a_data_error(server: FakeTushare) -> None:
    server.inject("daily", "garbage")
    with pytest.raises(ProviderDataError, match="not JSON"):
        await make_provider(server).daily("20240102")


async def test_a_reply_without_a_requested_column_is_a_data_error() -> None:
    without_pe = DATASET["daily_basic"].drop(columns=["pe"])
    with FakeTushare({"daily_basic": without_pe}, token=TOKEN) as fake, pytest.raises(ProviderDataError, match="'pe'"):
        await make_provider(fake).daily_basic("20240102")


async def test_text_in_a_numeric_column_is_a_data_error() -> None:
    bad = DATASET["daily"].astype({"close": object})
    bad.loc[0, "close"] = "停牌"
    with FakeTushare({"daily": bad}, token=TOKEN) as fake, pytest.raises(ProviderDataError, match="close"):
        await make_provider(fake).daily("20240102")


# -- rate limiter and backoff on simulated time ---------------------------------------------------------------------


class SimulatedClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


async def test_limiter_allows_n_calls_per_window_in_arrival_order() -> None:
    clock = SimulatedClock()
    limiter = RateLimiter({"daily": 2}, default=None, clock=clock, sleep=clock.sleep)
    order: list[tuple[int, float]] = []

    async def caller(i: int) -> None:
        order.append((i, await limiter.acquire("daily")))

    await asyncio.gather(*(caller(i) for i in range(5)))
    # 2 a minute: calls 0,1 at once, 2,3 a minute later, 4 two minutes later; served first come, first served.
    assert sorted(order) == [(0, 0.0), (1, 0.0), (2, 60.0), (3, 60.0), (4, 120.0)]
    assert await limiter.acquire("trade_cal") == clock.now  # another endpoint (unlimited) is not held up


async def test_pause_holds_every_caller_of_the_endpoint() -> None:
    clock = SimulatedClock()
    limiter = RateLimiter(default=100, clock=clock, sleep=clock.sleep)
    await limiter.acquire("daily")
    limiter.pause("daily", 30)
    assert await limiter.acquire("adj_factor") == 0.0  # other endpoints are not paused
    assert await limiter.acquire("daily") == 30.0
    assert await limiter.acquire("daily") == 30.0  # the pause is over; 100 a minute leaves room


async def test_provider_calls_are_spaced_by_the_limiter(server: FakeTushare) -> None:
    clock = SimulatedClock()
    limiter = RateLimiter({"daily": 1}, default=None, clock=clock, sleep=clock.sleep)
    config = TushareConfig(token=TOKEN, url=server.url, timeout_s=1)
    provider = TushareProvider(config, limiter=limiter, retry=RetryPolicy(base_delay_s=0))
    for day in ("20240102", "20240103", "20240102"):
        await provider.daily(day)
    assert len(server.calls_to("daily")) == 3
    assert clock.sleeps == [60.0, 60.0]  # one call a minute: the 2nd and 3rd wait a whole window each


def test_backoff_doubles_up_to_the_cap_with_bounded_jitter() -> None:
    exact = RetryPolicy(base_delay_s=1, max_delay_s=5, jitter=0)
    assert [exact.transient_delay(n) for n in range(1, 6)] == [1, 2, 4, 5, 5]
    jittered = RetryPolicy(base_delay_s=1, max_delay_s=5, jitter=0.5)
    for n, ceiling in zip(range(1, 6), [1, 2, 4, 5, 5], strict=True):
        assert ceiling / 2 <= jittered.transient_delay(n) <= ceiling


# -- the port -------------------------------------------------------------------------------------------------------


async def test_both_providers_satisfy_the_port_with_the_same_layouts(server: FakeTushare) -> None:
    settings = Settings(demo_symbols=12, demo_start="2024-01-02", demo_end="2024-07-31")
    demo = DemoProvider(settings)
    tushare = make_provider(server)
    assert isinstance(demo, MarketDataProvider) and isinstance(tushare, MarketDataProvider)
    for api in ("daily", "adj_factor", "stk_limit", "suspend_d", "daily_basic"):
        assert list((await getattr(demo, api)("20240102")).columns) == list(API_SCHEMAS[api].fields)
    assert list((await demo.stock_basic()).columns) == list(API_SCHEMAS["stock_basic"].fields)


async def test_demo_provider_serves_the_generated_market() -> None:
    settings = Settings(demo_symbols=12, demo_start="2024-01-02", demo_end="2024-07-31")
    market = generate_demo_market(settings)
    demo = DemoProvider(market=market)
    day = market.daily[market.daily["trade_date"] == "20240103"]
    frame = await demo.daily("20240103")
    assert sorted(frame["ts_code"]) == sorted(day["ts_code"])
    halt = market.suspensions[0]
    halted = await demo.suspend_d(halt.first_day)
    assert halt.ts_code in halted["ts_code"].tolist()
    assert halt.ts_code not in (await demo.daily(halt.first_day))["ts_code"].tolist()
    # Limits by hand: main board 10% (ST 5%), ChiNext/STAR 20%, BSE 30% of pre_close, half-up to the fen.
    limits = (await demo.stk_limit("20240103")).set_index("ts_code")
    assert list(limits.reset_index().columns) == [
        "ts_code",
        *[c for c in API_SCHEMAS["stk_limit"].fields if c != "ts_code"],
    ]
    boards = {s.ts_code: (s.board.value, s.is_st) for s in market.securities}
    for row in day.itertuples():
        board, is_st = boards[row.ts_code]
        pct = {"main": Decimal("0.05") if is_st else Decimal("0.10"), "chinext": Decimal("0.2"), "star": Decimal("0.2")}
        ratio = pct.get(board, Decimal("0.3"))
        pre = Decimal(str(row.pre_close))
        up = (pre * (1 + ratio)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
        assert Decimal(str(limits.loc[row.ts_code, "up_limit"])) == up
        assert limits.loc[row.ts_code, "pre_close"] == row.pre_close  # the day's reference, as Tushare gives it
    cal = await demo.trade_cal("20240101", "20240103")
    assert cal["is_open"].tolist() == [0, 1, 1]  # New Year's Day closed


async def test_demo_provider_serves_the_generated_daily_basic() -> None:
    settings = Settings(demo_symbols=12, demo_start="2024-01-02", demo_end="2024-07-31")
    market = generate_demo_market(settings)
    demo = DemoProvider(market=market)
    basic = await demo.daily_basic("20240103")
    expected = market.daily_basic[market.daily_basic["trade_date"] == "20240103"].reset_index(drop=True)
    # every bar of the day has its row (as Tushare's daily_basic), with the generator's values in Tushare's units
    assert sorted(basic["ts_code"]) == sorted((await demo.daily("20240103"))["ts_code"]) and len(basic) > 0
    pd.testing.assert_frame_equal(basic, expected[list(API_SCHEMAS["daily_basic"].fields)], check_exact=True)
    assert (await demo.daily_basic("20240106")).empty  # a Saturday: no bars, no rows

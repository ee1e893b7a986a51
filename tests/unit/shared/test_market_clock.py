"""The market clock (K3): the real clock, the replay clock a paper replay sets session by session, which "today" the
order path reckons with, and where a replay clock may run (standalone mode only)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from pydantic import ValidationError

import shared.platform.clock as clock_module
from lianghua.fleet import Fleet, refuse_replay_clock
from shared.platform.app import Infra, market_clock, warn_if_shifted
from shared.platform.clock import EXCHANGE_TZ, RealClock, ReplayClock, ShiftedClock, continuous_trading, market_today
from shared.platform.settings import Mode, Settings


class Ticks:
    """A stand-in for time.monotonic: seconds that the test moves on."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("hour", "minute", "second", "trading"),
    [
        (9, 25, 0, False),  # the opening call auction's result
        (9, 29, 59, False),
        (9, 30, 0, True),
        (11, 29, 59, True),
        (11, 30, 0, False),  # the lunch break
        (12, 59, 59, False),
        (13, 0, 0, True),
        (14, 56, 59, True),
        (14, 57, 0, False),  # the closing call auction
        (15, 0, 0, False),
        (20, 0, 0, False),
    ],
)
def test_continuous_trading_is_0930_to_1130_and_1300_to_1457_in_shanghai(
    hour: int, minute: int, second: int, trading: bool
) -> None:
    at = datetime(2024, 12, 30, hour, minute, second, tzinfo=EXCHANGE_TZ)
    assert continuous_trading(at) is trading
    assert continuous_trading(at.astimezone(UTC)) is trading  # the zone of the moment given does not matter
    # on another trading day than the one asked about: never
    assert continuous_trading(at, date(2024, 12, 31)) is False
    assert continuous_trading(at, date(2024, 12, 30)) is trading


def test_the_real_clock_is_the_wall_clock_without_a_session() -> None:
    clock = RealClock()
    before = datetime.now(UTC)
    now = clock.now()
    assert now.utcoffset() == timedelta(0) and before <= now <= datetime.now(UTC)
    assert clock.session() is None


def test_the_replay_clock_starts_each_session_at_its_open(monkeypatch: pytest.MonkeyPatch) -> None:
    ticks = Ticks()
    monkeypatch.setattr(clock_module, "monotonic", ticks)
    clock = ReplayClock(date(2024, 3, 4))
    assert clock.session() == date(2024, 3, 4)
    # 09:30 in Shanghai (UTC+8) is 01:30 UTC, aware.
    assert clock.now() == datetime(2024, 3, 4, 1, 30, tzinfo=UTC)
    assert clock.now().utcoffset() == timedelta(0)

    ticks.now += 90.5  # wall seconds pass: so does the session's time
    assert clock.now() == datetime(2024, 3, 4, 1, 31, 30, 500000, tzinfo=UTC)

    clock.set_session(date(2024, 3, 5))
    assert clock.session() == date(2024, 3, 5)
    assert clock.now() == datetime(2024, 3, 5, 1, 30, tzinfo=UTC)


def test_a_replayed_session_never_reaches_its_close_by_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    ticks = Ticks()
    monkeypatch.setattr(clock_module, "monotonic", ticks)
    clock = ReplayClock(date(2024, 3, 4))
    ticks.now += 6 * 3600  # 15:30 by the wall: the replay has not moved on, so its session is still open
    assert clock.now() == datetime(2024, 3, 4, 6, 59, 59, 999999, tzinfo=UTC)  # 14:59:59.999999 in Shanghai


def test_a_replay_clock_without_a_session_is_the_wall_clock() -> None:
    clock = ReplayClock()
    assert clock.session() is None
    assert abs(clock.now() - datetime.now(UTC)) < timedelta(seconds=5)


def test_today_is_the_replayed_session_else_the_exchange_date() -> None:
    # 23:30 UTC on 2024-03-03 is 07:30 on 2024-03-04 in Shanghai.
    late = datetime(2024, 3, 3, 23, 30, tzinfo=UTC)
    assert market_today(late, None) == date(2024, 3, 4)
    assert market_today(late, date(2023, 6, 1)) == date(2023, 6, 1)


def test_settings_choose_the_clock_and_standalone_mode_shares_one() -> None:
    assert isinstance(market_clock(Settings()), RealClock)
    assert Settings().market_clock == "real"
    replay = Settings(market_clock="replay")
    assert isinstance(market_clock(replay), ReplayClock)
    assert isinstance(Infra.from_settings(replay, "test").clock, ReplayClock)

    from lianghua.standalone import build_app

    host = build_app(replay)
    clocks = {id(app.state.infra.clock) for app in host.state.services.values()}
    assert len(clocks) == 1 and isinstance(host.state.infra.clock, ReplayClock)
    assert host.state.services["execution"].state.desk.market_session.__self__ is host.state.infra.clock
    assert host.state.services["risk"].state.desk.market_session.__self__ is host.state.infra.clock


def test_fleet_mode_refuses_a_replay_clock() -> None:
    fleet = Settings(mode=Mode.FLEET, market_clock="replay", internal_secret="x" * 32)
    with pytest.raises(ValueError, match="LH_MARKET_CLOCK=replay needs standalone mode"):
        market_clock(fleet)
    with pytest.raises(ValueError, match="LH_MARKET_CLOCK=replay needs standalone mode"):
        Infra.from_settings(fleet, "execution")
    assert isinstance(market_clock(Settings(mode=Mode.FLEET, internal_secret="x" * 32)), RealClock)

    with pytest.raises(ValueError, match="not supported in fleet mode"):
        refuse_replay_clock({"LH_MARKET_CLOCK": "replay"})
    refuse_replay_clock({"LH_MARKET_CLOCK": "real"})
    refuse_replay_clock({})
    with pytest.raises(ValueError, match="not supported in fleet mode"):
        Fleet(env={"LH_MARKET_CLOCK": "replay"}).start()  # before any process is spawned


def test_the_paper_fill_rules_are_checked_like_a_backtests(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = Settings()
    assert (defaults.paper_fill_price, defaults.paper_slippage, defaults.paper_slippage_amount) == (
        "open", "none", Decimal(0)
    )  # fmt: skip
    assert defaults.paper_volume_cap is None

    monkeypatch.setenv("LH_MARKET_CLOCK", "replay")
    monkeypatch.setenv("LH_PAPER_FILL_PRICE", "vwap")
    monkeypatch.setenv("LH_PAPER_SLIPPAGE", "ticks")
    monkeypatch.setenv("LH_PAPER_SLIPPAGE_AMOUNT", "2")
    monkeypatch.setenv("LH_PAPER_VOLUME_CAP", "0.25")
    s = Settings()
    assert (s.market_clock, s.paper_fill_price, s.paper_slippage) == ("replay", "vwap", "ticks")
    assert (s.paper_slippage_amount, s.paper_volume_cap) == (Decimal(2), Decimal("0.25"))

    # Set but empty (as compose passes unset options): the defaults.
    monkeypatch.setenv("LH_PAPER_VOLUME_CAP", "")
    monkeypatch.setenv("LH_PAPER_SLIPPAGE", "none")
    monkeypatch.setenv("LH_PAPER_SLIPPAGE_AMOUNT", "")
    s = Settings()
    assert (s.paper_volume_cap, s.paper_slippage_amount) == (None, Decimal(0))

    for bad, field in [
        ({"market_clock": "fast"}, "market_clock"),
        ({"paper_fill_price": "mid"}, "paper_fill_price"),
        ({"paper_volume_cap": "0"}, "paper_volume_cap"),
        ({"paper_volume_cap": "1.5"}, "paper_volume_cap"),
        ({"paper_slippage": "bps", "paper_slippage_amount": "-1"}, "paper_slippage_amount"),
    ]:
        with pytest.raises(ValidationError) as error:
            Settings.model_validate(bad)
        assert error.value.errors()[0]["loc"] == (field,)
    with pytest.raises(ValidationError, match="whole number of ticks"):
        Settings(paper_slippage="ticks", paper_slippage_amount=Decimal("1.5"))
    with pytest.raises(ValidationError, match="LH_PAPER_SLIPPAGE is none"):
        Settings(paper_slippage_amount=Decimal(5))


class Seconds:
    """A stand-in for time.time: unix seconds that the test moves on."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_the_shifted_clock_is_the_real_clock_moved_to_another_moment(monkeypatch: pytest.MonkeyPatch) -> None:
    wall = Seconds(1_800_000_000.0)
    monkeypatch.setattr(clock_module, "unix_time", wall)
    at = datetime.fromisoformat("2024-12-31T09:31:00+08:00")
    clock = ShiftedClock(at, anchor=1_800_000_000.0 - 30)  # anchored 30 s ago
    # 09:31:30 in Shanghai is 01:31:30 UTC, aware UTC
    assert clock.now() == datetime(2024, 12, 31, 1, 31, 30, tzinfo=UTC)
    assert clock.now().utcoffset() == timedelta(0)
    assert clock.session() is None  # no replayed session: "today" is the exchange date of now()
    assert market_today(clock.now(), clock.session()) == date(2024, 12, 31)
    wall.now += 3600.25  # it runs at the wall clock's pace
    assert clock.now() == datetime(2024, 12, 31, 2, 31, 30, 250000, tzinfo=UTC)
    # two clocks given the same moment and anchor (two processes of a fleet) read the same time
    assert ShiftedClock(at, anchor=1_800_000_000.0 - 30).now() == clock.now()
    # without an anchor: anchored when it was made
    assert ShiftedClock(at).now() == datetime(2024, 12, 31, 1, 31, tzinfo=UTC)
    with pytest.raises(ValueError, match="needs a UTC offset"):
        ShiftedClock(datetime(2024, 12, 31, 9, 31))


def test_settings_build_a_shifted_clock_in_any_mode_and_refuse_an_incomplete_one(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    wall = Seconds(1_800_000_000.0)
    monkeypatch.setattr(clock_module, "unix_time", wall)
    monkeypatch.setenv("LH_MARKET_CLOCK", "shifted")
    monkeypatch.setenv("LH_MARKET_CLOCK_AT", "2024-12-31T09:31:00+08:00")
    monkeypatch.setenv("LH_MARKET_CLOCK_ANCHOR", "1799999990.5")
    s = Settings(mode=Mode.FLEET, internal_secret="x" * 32)
    assert s.market_clock_at == datetime(2024, 12, 31, 1, 31, tzinfo=UTC)
    assert s.market_clock_anchor == 1_799_999_990.5
    clock = market_clock(s)  # fleet mode allows it: the processes share it through their settings
    assert isinstance(clock, ShiftedClock) and clock.session() is None
    assert clock.now() == datetime(2024, 12, 31, 1, 31, 9, 500000, tzinfo=UTC)
    assert isinstance(Infra.from_settings(s, "execution").clock, ShiftedClock)
    warn_if_shifted(clock)  # what each process says at start
    warn_if_shifted(RealClock())
    [warned] = [r for r in caplog.records if r.name == "shared.platform.app"]
    assert warned.levelname == "WARNING" and "never in production" in warned.getMessage()
    assert warned.market_now == "2024-12-31T01:31:09.500000+00:00"  # type: ignore[attr-defined]

    # no anchor (or an empty one): when the settings were read
    monkeypatch.setenv("LH_MARKET_CLOCK_ANCHOR", "")
    monkeypatch.setattr("shared.platform.settings.time.time", lambda: 1_800_000_100.0)
    assert Settings().market_clock_anchor == 1_800_000_100.0

    for env, message in [
        ({"LH_MARKET_CLOCK_AT": ""}, "LH_MARKET_CLOCK=shifted needs LH_MARKET_CLOCK_AT"),
        ({"LH_MARKET_CLOCK_AT": "2024-12-31T09:31:00"}, "must give a UTC offset"),
        ({"LH_MARKET_CLOCK_AT": "the last day of 2024"}, "market_clock_at"),
        ({"LH_MARKET_CLOCK_ANCHOR": "-1"}, "market_clock_anchor"),
        ({"LH_MARKET_CLOCK": "real"}, "LH_MARKET_CLOCK is real: set LH_MARKET_CLOCK=shifted, or unset them"),
        ({"LH_MARKET_CLOCK": "replay"}, "LH_MARKET_CLOCK is replay"),
    ]:
        with monkeypatch.context() as m:
            for key, value in env.items():
                m.setenv(key, value)
            with pytest.raises(ValidationError, match=message):
                Settings()


def test_the_fleet_gives_its_processes_one_anchor_for_a_shifted_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("LH_MARKET_CLOCK", "LH_MARKET_CLOCK_AT", "LH_MARKET_CLOCK_ANCHOR"):
        monkeypatch.delenv(key, raising=False)
    shifted = {"LH_MARKET_CLOCK": "shifted", "LH_MARKET_CLOCK_AT": "2024-12-31T09:31:00+08:00"}
    refuse_replay_clock(shifted)  # only a replay clock is refused in fleet mode
    fleet = Fleet(env=dict(shifted))
    monkeypatch.setattr("lianghua.fleet.time.time", lambda: 1_800_000_000.25)
    fleet.pin_clock_anchor()
    anchors = {fleet.process_env(name)["LH_MARKET_CLOCK_ANCHOR"] for name in ("data", "risk", "execution", "strategy")}
    assert anchors == {"1800000000.25"}
    monkeypatch.setattr("lianghua.fleet.time.time", lambda: 1_800_000_999.0)
    fleet.pin_clock_anchor()  # a second call (a restart) keeps the anchor the processes started with
    assert fleet.process_env("execution")["LH_MARKET_CLOCK_ANCHOR"] == "1800000000.25"

    given = Fleet(env={**shifted, "LH_MARKET_CLOCK_ANCHOR": "1700000000"})
    given.pin_clock_anchor()
    assert given.process_env("risk")["LH_MARKET_CLOCK_ANCHOR"] == "1700000000"  # the environment's own is kept
    real = Fleet(env={"LH_MARKET_CLOCK": "real"})
    real.pin_clock_anchor()
    assert "LH_MARKET_CLOCK_ANCHOR" not in real.process_env("risk")


def test_a_replay_clock_may_start_at_a_session_and_only_a_replay_clock_takes_one() -> None:
    clock = market_clock(
        Settings(_env_file=None, mode=Mode.STANDALONE, market_clock="replay", replay_session="2024-12-31")  # type: ignore[call-arg, arg-type]
    )
    assert isinstance(clock, ReplayClock) and clock.session() == date(2024, 12, 31)
    # 09:30 Shanghai = 01:30 UTC, and on from there
    assert datetime(2024, 12, 31, 1, 30, tzinfo=UTC) <= clock.now() < datetime(2024, 12, 31, 7, 0, tzinfo=UTC)
    with pytest.raises(ValidationError, match="LH_REPLAY_SESSION"):
        Settings(_env_file=None, replay_session="2024-12-31")  # type: ignore[call-arg, arg-type]
    # empty means none set
    assert Settings(_env_file=None, market_clock="replay", replay_session="").replay_session is None  # type: ignore[call-arg, arg-type]


def test_make_run_replays_the_demo_market_at_its_last_session_unless_told_otherwise() -> None:
    from lianghua.standalone import demo_clock

    settings = Settings(_env_file=None, mode=Mode.STANDALONE)  # type: ignore[call-arg]
    demo = demo_clock(settings, {})
    assert (demo.market_clock, demo.replay_session) == ("replay", date(2024, 12, 31))
    assert demo.internal_secret == settings.internal_secret  # the same settings otherwise
    # the desk's orders are matched against the replay feed's quotes, unless LH_PAPER_FILLS or the feed say otherwise
    assert demo.paper_fills == "quotes" != settings.paper_fills
    assert demo_clock(settings, {"LH_PAPER_FILLS": "session"}).paper_fills == settings.paper_fills
    bridged = Settings(_env_file=None, mode=Mode.STANDALONE, quotes_feed="bridge")  # type: ignore[call-arg]
    assert demo_clock(bridged, {}).paper_fills == bridged.paper_fills
    # a demo ending on a Sunday parks at the Friday before; an explicit clock or Tushare data is left alone
    sunday = Settings(_env_file=None, mode=Mode.STANDALONE, demo_end="2024-12-29")  # type: ignore[call-arg]
    assert demo_clock(sunday, {}).replay_session == date(2024, 12, 27)
    assert demo_clock(settings, {"LH_MARKET_CLOCK": "real"}).market_clock == "real"
    tushare = Settings(_env_file=None, mode=Mode.STANDALONE, data_provider="tushare", tushare_token="t" * 40)  # type: ignore[call-arg]
    assert demo_clock(tushare, {}).market_clock == "real"


@pytest.mark.parametrize(
    ("local", "continuous"),
    [
        ("09:15:00", False),  # the opening call auction
        ("09:25:00", False),  # its result, then the pause
        ("09:29:59", False),
        ("09:30:00", True),
        ("11:29:59", True),
        ("11:30:00", False),  # the lunch break
        ("12:59:59", False),
        ("13:00:00", True),
        ("14:56:59", True),
        ("14:57:00", False),  # the closing call auction
        ("15:00:00", False),
    ],
)
def test_continuous_trading_is_told_by_the_exchange_clock(local: str, continuous: bool) -> None:
    cst = datetime.fromisoformat(f"2026-12-07T{local}+08:00")
    assert continuous_trading(cst) is continuous
    assert continuous_trading(cst.astimezone(UTC)) is continuous  # the same moment in UTC

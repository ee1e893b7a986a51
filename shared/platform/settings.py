"""Typed settings for every LiangHua process, read from the environment with the one `LH_` prefix."""

from __future__ import annotations

import os
import secrets
import time
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Mode(StrEnum):
    STANDALONE = "standalone"  # every service in one process, SQLite + in-memory bus and cache
    FLEET = "fleet"  # one process (or container) per service, MySQL + Redis + RabbitMQ


# Values that must never protect a real deployment: refused outside standalone mode.
_INSECURE_SECRETS = {"", "change-me", "changeme", "secret", "dev", "lianghua"}
_MIN_SECRET_LENGTH = 16


MIN_BRIDGE_SECRET_LENGTH = 16  # as the bridge requires of its own copy


class Settings(BaseSettings):
    """All configuration. Backing services are chosen by URL scheme (design invariant 6)."""

    model_config = SettingsConfigDict(env_prefix="LH_", extra="ignore")

    mode: Mode = Mode.STANDALONE
    # `{service}` is replaced by the service name, giving each service its own schema/database file.
    database_url: str = "sqlite+aiosqlite:///./var/{service}.db"
    redis_url: str = "memory://"
    amqp_url: str = "memory://"
    # Prefix of every exchange and queue name and of cache keys, so test runs (and tenants) never share them.
    bus_namespace: str = "lh"

    # Secrets. Empty means "generate one" in standalone mode and "refuse to start" (where the process needs it) in
    # fleet mode. Three keys, each held only where it is used, so a leak of one process's environment cannot mint
    # what it should not:
    internal_secret: str = ""  # signs the short-lived service-to-service tokens: every process holds it
    jwt_secret: str = ""  # signs users' session tokens: only the gateway (require_jwt_secret)
    approval_secret: str = ""  # HMAC key shared by risk (signs approvals) and execution (verifies them)
    admin_username: str = "admin"
    admin_password: str = ""

    # Where the other services are (fleet mode). In standalone mode they are mounted in-process.
    data_url: str = "http://127.0.0.1:8101"
    strategy_url: str = "http://127.0.0.1:8102"
    backtest_url: str = "http://127.0.0.1:8103"
    risk_url: str = "http://127.0.0.1:8104"
    execution_url: str = "http://127.0.0.1:8105"
    http_timeout_s: float = 10.0
    # The largest request body the gateway and every service read (bytes); larger ones get 413 body_too_large.
    # Every body is JSON (no uploads: files are imported by the CLI); the biggest, a backtest over a whole market's
    # ts_codes, is about 70 KB.
    max_body_bytes: int = Field(default=1024 * 1024, ge=1)
    # How long a MariaDB statement waits for a row lock before giving up (1205), per connection; such a unit of work
    # is run once more, so a request stuck behind a lock fails within about twice this (see docs/architecture.md).
    db_lock_wait_s: int = Field(default=10, ge=1)

    # Gateway
    jwt_ttl_s: int = 8 * 3600
    rate_limit_per_minute: int = Field(default=600, ge=1)
    # How long the gateway keeps its audit log's entries (days); older ones are deleted hourly, in batches.
    audit_retention_days: int = Field(default=400, ge=1)
    # The alerts page (gateway/alerts.py, docs/operations.md "The alerts page"): Alertmanager's base URL, whose API v2
    # the gateway reads and silences through. Empty (standalone `make run`): the alert routes answer 503
    # alertmanager_not_configured.
    alertmanager_url: str = ""
    # The bearer token Alertmanager presents to the alert-history webhook (POST /api/v1/alerts/webhook): the same
    # LH_NOTIFY_WEBHOOK_TOKEN it presents to the notify service (one token for Alertmanager's webhooks). Empty: the
    # webhook refuses every delivery (503 alert_history_not_configured).
    notify_webhook_token: str = ""

    # Risk
    max_order_value: Decimal = Decimal("1000000")  # CNY per order
    # The most orders one batch (`POST /v1/order-batches`) may carry; more is 422 batch_too_large, nothing placed.
    batch_max_orders: int = Field(default=100, ge=1, le=1000)

    # Execution: a paper account's opening cash (CNY, whole fen), its first ledger entry when it is first seen.
    paper_opening_cash: Decimal = Field(default=Decimal("10000000"), ge=0, decimal_places=2, allow_inf_nan=False)

    @field_validator("paper_opening_cash", mode="before")
    @classmethod
    def _empty_is_default(cls, value: object) -> object:
        # `LH_PAPER_OPENING_CASH=` (set but empty, as compose and shells pass unset options) means the default.
        return Decimal("10000000") if isinstance(value, str) and not value.strip() else value

    approval_ttl_s: int = 60  # execution refuses approvals older than this

    # The market clock (shared/platform/clock.py): "real", "replay" (a settable clock over historical trading days,
    # for paper trading on a replayed market) or "shifted" (the real clock moved to another moment, for rehearsals and
    # tests, never production). A replay clock is one process's object, so "replay" needs standalone mode (every
    # service in one process, sharing it); fleet mode refuses it at start. A shifted clock reads
    # `market_clock_at + (now - market_clock_anchor)`: processes given the same two values agree, in any mode.
    market_clock: Literal["real", "replay", "shifted"] = "real"
    # LH_MARKET_CLOCK_AT: the moment a shifted clock reads at its anchor, ISO 8601 with a UTC offset
    # (e.g. 2024-12-31T09:31:00+08:00); required with LH_MARKET_CLOCK=shifted, refused otherwise.
    market_clock_at: datetime | None = None
    # LH_MARKET_CLOCK_ANCHOR: the unix time (seconds) at which a shifted clock reads `market_clock_at`; default: when
    # the settings were read (the fleet launcher sets one for all its processes).
    market_clock_anchor: float | None = Field(default=None, ge=0, allow_inf_nan=False)

    # LH_REPLAY_SESSION: the trading day a replay clock starts at (empty: no session until a replay sets one). `make
    # run` on the demo market sets it to the demo's last session unless LH_MARKET_CLOCK is given (lianghua/standalone).
    replay_session: date | None = None

    @field_validator("market_clock_at", "market_clock_anchor", "replay_session", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("market_clock_at")
    @classmethod
    def _at_has_an_offset(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.utcoffset() is None:
            raise ValueError(
                f"LH_MARKET_CLOCK_AT must give a UTC offset (e.g. {value.isoformat()}+08:00): a time without one "
                "means a different moment on every machine"
            )
        return value

    @model_validator(mode="after")
    def _shifted_clock_is_complete(self) -> Settings:
        if self.market_clock == "shifted":
            if self.market_clock_at is None:
                raise ValueError(
                    "LH_MARKET_CLOCK=shifted needs LH_MARKET_CLOCK_AT: the moment the clock reads at its anchor, ISO "
                    "8601 with a UTC offset (e.g. 2024-12-31T09:31:00+08:00)"
                )
            if self.market_clock_anchor is None:
                object.__setattr__(self, "market_clock_anchor", time.time())  # when the settings were read
        if self.replay_session is not None and self.market_clock != "replay":
            raise ValueError(
                f"LH_REPLAY_SESSION sets where a replay clock starts, but LH_MARKET_CLOCK is {self.market_clock}: set "
                "LH_MARKET_CLOCK=replay, or unset it"
            )
        if self.market_clock != "shifted" and (
            self.market_clock_at is not None or self.market_clock_anchor is not None
        ):
            raise ValueError(
                f"LH_MARKET_CLOCK_AT and LH_MARKET_CLOCK_ANCHOR set a shifted clock, but LH_MARKET_CLOCK is "
                f"{self.market_clock}: set LH_MARKET_CLOCK=shifted, or unset them"
            )
        return self

    # How the paper broker matches an order on its session's own bar (shared.core.market.matching), the backtest
    # engine's rules of the same names (BacktestConfig): the fill price, slippage (basis points or ticks of 0.01 CNY)
    # and the most of the bar's volume one fill may take (a fraction in (0, 1]; empty: no cap).
    # When the paper broker matches on the real clock (docs/order-path.md, "The paper broker"): "session" (an order
    # rests until the bar of the session it was placed for is in, and is matched on it by the rules above, as on a
    # replayed session), or "immediate" (matched at once at the latest close, whatever the time: for tests and
    # benchmarks of the order path, never a simulation of a market), or "quotes" (matched against the real-time quotes,
    # docs/quotes.md: at once against the latest when it arrives, then a limit order against each `quotes.snapshot`;
    # standalone's `make run` on the demo market uses it). Otherwise a replay clock matches at the replayed session;
    # a strategy instance's order (its own fill rules) is matched on bars in every mode.
    paper_fills: Literal["session", "immediate", "quotes"] = "session"
    paper_fill_price: Literal["open", "close", "vwap"] = "open"
    paper_slippage: Literal["none", "bps", "ticks"] = "none"
    paper_slippage_amount: Decimal = Field(default=Decimal(0), ge=0, allow_inf_nan=False)
    paper_volume_cap: Decimal | None = Field(default=None, gt=0, le=1, allow_inf_nan=False)

    @field_validator("paper_volume_cap", mode="before")
    @classmethod
    def _empty_is_no_cap(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("paper_slippage_amount", mode="before")
    @classmethod
    def _empty_is_zero(cls, value: object) -> object:
        return Decimal(0) if isinstance(value, str) and not value.strip() else value

    # QMT bridges (docs/qmt-bridge.md): each bridge's shared secret, "bridge_id=secret,other=secret2" (SecretStr: never
    # shown by repr(Settings) nor logged; read with qmt_bridge_secret_map()), and how often (seconds) execution
    # reconciles its orders, trades, positions and cash with each connected bridge's broker; how long after it was
    # sent an order the broker does not know (or knows only as journalled, unconfirmed: status 255) stays `unknown`
    # before it is recorded `rejected` as never having reached the broker.
    qmt_bridge_secrets: SecretStr = SecretStr("")
    qmt_reconcile_s: float = Field(default=30.0, gt=0, allow_inf_nan=False)
    qmt_unknown_grace_s: float = Field(default=60.0, gt=0, allow_inf_nan=False)

    def qmt_bridge_secret_map(self) -> dict[str, str]:
        """{bridge_id: secret} from LH_QMT_BRIDGE_SECRETS; raises ValueError on an entry that is not `id=secret`."""
        found: dict[str, str] = {}
        for part in self.qmt_bridge_secrets.get_secret_value().split(","):
            if not part.strip():
                continue
            bridge_id, sep, secret = part.partition("=")
            if not sep or not bridge_id.strip() or not secret.strip():
                raise ValueError("LH_QMT_BRIDGE_SECRETS: each entry is bridge_id=secret")
            if len(secret.strip()) < MIN_BRIDGE_SECRET_LENGTH:
                # the bridge refuses a shorter one too (bridge/qmt/config.py): a guessable secret signs fills
                raise ValueError(
                    f"LH_QMT_BRIDGE_SECRETS: the secret of {bridge_id.strip()} must be at least "
                    f"{MIN_BRIDGE_SECRET_LENGTH} characters"
                )
            found[bridge_id.strip()] = secret.strip()
        return found

    # Strategy service: strategy folders besides the `strategies` package (their own `*.py` files; several folders
    # separated by os.pathsep, ":" on Linux), and how often (seconds) the strategy files are checked for changes
    # that hot reload takes (docs/strategy-instances.md); 0: never (no file is watched).
    strategy_dirs: str = ""
    strategy_reload_s: float = Field(default=2.0, ge=0, allow_inf_nan=False)
    # How many of a round's orders one instance has at risk and execution at once (the runner reserves each in the
    # sleeve before it is sent, and each carries the sleeve its predecessors leave, so risk checks each against what
    # the orders before it may spend); 1: one at a time,
    # the default: in one process (standalone) more was measured slower (docs/benchmarks.md, issue 12).
    strategy_orders_in_flight: int = Field(default=1, ge=1, le=32)

    def strategy_folders(self) -> list[Path]:
        return [Path(part).expanduser() for part in self.strategy_dirs.split(os.pathsep) if part.strip()]

    # Data
    demo_seed: int = 20240101
    demo_symbols: int = 60
    demo_start: str = "2023-01-03"
    demo_end: str = "2024-12-31"
    load_demo_data: bool = True
    # Market data source: "demo" (the generated demo market) or "tushare" (Tushare Pro; needs LH_TUSHARE_TOKEN).
    data_provider: Literal["demo", "tushare"] = "demo"
    tushare_token: SecretStr = SecretStr("")  # SecretStr: repr(Settings) and logs never show it
    tushare_url: str = "http://api.waditu.com/dataapi"
    tushare_timeout_s: float = Field(default=30.0, gt=0)
    # An ingest skips an optional endpoint the token may not use (stk_limit, suspend_d, daily_basic, namechange,
    # index_daily, index_weight) with a warning, and says so in the run; false: such a refusal fails the run.
    ingest_skip_denied_endpoints: bool = True
    # The daily update runs after the close on trading days, Asia/Shanghai time ("HH:MM"); "" disables it.
    data_update_at: str = "17:30"
    # The pre-open load of the day's exchange limits (Tushare stk_limit, out ~08:40) on trading days, Asia/Shanghai
    # ("HH:MM"; retried until the 09:30 open); "" disables it. Only with the Tushare provider and a quotes feed on.
    preopen_limits_at: str = "08:45"
    # Where the bulk Arrow/Parquet snapshots of the bars go (one per data version); default: <tmp>/lianghua-data/<db>
    data_snapshot_dir: str | None = None

    # Real-time quotes (docs/quotes.md). The feed: "replay" (snapshots made from the stored daily bars on the market
    # clock: standalone's default), "bridge" (a QMT bridge's xtdata snapshots over /v1/bridge/quotes: fleet's
    # default) or "off".
    quotes_feed: Literal["replay", "bridge", "off"] | None = None
    # What the data service asks a bridge for after the welcome: "*" (the whole market) or comma-separated ts_codes.
    quotes_subscribe: str = "*"
    # The replay feed: seconds between snapshot rounds (of the market clock), and its speed: empty follows the
    # market clock (a replay clock's session, or the real clock's today); a number replays the clock's session (or
    # the newest stored one) from its opening auction at that many market seconds per wall second.
    quotes_replay_interval_s: float = Field(default=3.0, gt=0, allow_inf_nan=False)
    quotes_replay_speed: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    # A minute's bar closes when a snapshot of a later minute arrives, or this long after the minute's end.
    quotes_bar_grace_s: float = Field(default=5.0, ge=0, allow_inf_nan=False)
    # The most codes one browser socket on the gateway's /ws may subscribe to.
    quotes_ws_max_codes: int = Field(default=50, ge=1, le=1000)
    # A snapshot whose time is more than this many seconds ahead of the market clock is refused (`future`).
    quotes_max_skew_s: float = Field(default=5.0, ge=0, le=3600, allow_inf_nan=False)
    # The bridge ids (of LH_QMT_BRIDGE_SECRETS) allowed to feed quotes on /v1/bridge/quotes, comma-separated:
    # "" (the default) allows none, fail closed (docs/qmt-bridge.md, "The quotes channel").
    quotes_bridges: str = ""
    # Ticks of the watched codes (docs/quotes.md): with the bridge feed, execution (open orders, armed conditional
    # orders) and each gateway process (its /ws subscriptions) lease their codes at the data service
    # (PUT /v1/quotes/watch), whose bridge endpoint asks the QMT bridge for those codes' ticks. Off: rounds only.
    quotes_ticks: bool = False

    def quotes_bridge_ids(self) -> frozenset[str]:
        """The bridge ids LH_QUOTES_BRIDGES allows to feed quotes (empty: none)."""
        return frozenset(part.strip() for part in self.quotes_bridges.split(",") if part.strip())

    @field_validator("quotes_feed", "quotes_replay_speed", mode="before")
    @classmethod
    def _empty_is_default_feed(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    def quotes_feed_mode(self) -> str:
        """The real-time feed the data service runs: LH_QUOTES_FEED, else replay standalone and bridge in fleet."""
        if self.quotes_feed is not None:
            return self.quotes_feed
        return "replay" if self.mode is Mode.STANDALONE else "bridge"

    log_level: str = "INFO"
    log_json: bool = True

    @model_validator(mode="after")
    def _paper_slippage_is_consistent(self) -> Settings:
        # The backtest's rules (BacktestConfig._check), so a paper replay can be configured as its backtest was.
        if self.paper_slippage == "ticks" and self.paper_slippage_amount != int(self.paper_slippage_amount):
            raise ValueError("LH_PAPER_SLIPPAGE_AMOUNT must be a whole number of ticks with LH_PAPER_SLIPPAGE=ticks")
        if self.paper_slippage == "none" and self.paper_slippage_amount != 0:
            raise ValueError("LH_PAPER_SLIPPAGE_AMOUNT is set but LH_PAPER_SLIPPAGE is none")
        return self

    @model_validator(mode="after")
    def _secrets_are_real(self) -> Settings:
        for name in ("internal_secret", "jwt_secret", "approval_secret"):
            value: str = getattr(self, name)
            if self.mode is Mode.STANDALONE:
                if not value:
                    # One process shares the generated value, so risk and execution agree on it.
                    object.__setattr__(self, name, secrets.token_urlsafe(32))
            elif name in ("jwt_secret", "approval_secret") and not value:
                continue  # held by some processes only: they call require_jwt_secret() / require_approval_secret()
            else:
                self._check_secret(name, value)
        if self.notify_webhook_token:
            # set: as strong as the notify service requires of the same token (empty: no alert history)
            self._check_secret("notify_webhook_token", self.notify_webhook_token)
        return self

    @staticmethod
    def _check_secret(name: str, value: str) -> None:
        if value.lower() in _INSECURE_SECRETS or len(value) < _MIN_SECRET_LENGTH:
            raise ValueError(
                f"LH_{name.upper()} must be set to a secret of at least {_MIN_SECRET_LENGTH} "
                f"characters outside standalone mode"
            )

    def require_jwt_secret(self) -> str:
        """The key of users' session tokens. The gateway calls this at start-up; no other process holds it. It must
        differ from the internal key, or a service could mint a user's session (and the gateway a service's token)."""
        self._check_secret("jwt_secret", self.jwt_secret)
        if self.jwt_secret == self.internal_secret:
            raise ValueError("LH_JWT_SECRET and LH_INTERNAL_SECRET must differ: one signs users' sessions, the other "
                             "the services' tokens")  # fmt: skip
        return self.jwt_secret

    def require_approval_secret(self) -> str:
        """The HMAC key of risk approvals. Risk and execution call this at start-up; no other service holds it."""
        self._check_secret("approval_secret", self.approval_secret)
        if self.approval_secret in (self.internal_secret, self.jwt_secret):
            raise ValueError(
                "LH_APPROVAL_SECRET must differ from LH_INTERNAL_SECRET and LH_JWT_SECRET: with a key every process "
                "holds, any process could sign approvals"
            )
        return self.approval_secret

    def database_url_for(self, service: str) -> str:
        return self.database_url.replace("{service}", service)

    @property
    def standalone(self) -> bool:
        return self.mode is Mode.STANDALONE

    def with_overrides(self, **overrides: Any) -> Settings:
        data = self.model_dump()
        data.update(overrides)
        return Settings.model_validate(data)

"""The notify service's own settings (LH_NOTIFY_*), beside the shared ones: its robots and their secrets, the bearer
token Alertmanager presents, and where Alertmanager is. Secrets come from the environment or from files, never from
the repository, and are never logged (SecretStr)."""

from __future__ import annotations

import json
import re
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ROBOT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
MIN_TOKEN_LENGTH = 16


class RobotKind(StrEnum):
    DINGTALK = "dingtalk"  # DingTalk custom robot, signed ("加签")
    WECOM = "wecom"  # WeCom (企业微信) group robot, its key in the URL


class Robot(BaseModel):
    """One robot. `url` carries the robot's access token (DingTalk) or key (WeCom), so the whole URL is a secret;
    `secret` is a DingTalk robot's signing secret (SEC...)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: RobotKind
    url: SecretStr
    secret: SecretStr | None = None

    @model_validator(mode="after")
    def _signed_dingtalk(self) -> Robot:
        url = self.url.get_secret_value()
        if not url.startswith(("https://", "http://")):
            raise ValueError("a robot's url is its webhook address, https://...")
        if self.kind is RobotKind.DINGTALK and not (self.secret and self.secret.get_secret_value()):
            raise ValueError("a DingTalk robot needs its signing secret (加签, SEC...): unsigned robots are refused")
        if self.kind is RobotKind.WECOM and self.secret is not None:
            raise ValueError("a WeCom group robot has no signing secret: its key is in the url")
        return self


class NotifySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LH_NOTIFY_", extra="ignore", env_ignore_empty=True)

    # The bearer token Alertmanager sends (its http_config.authorization): from the environment or a file.
    webhook_token: SecretStr = SecretStr("")
    webhook_token_file: Path | None = None
    # Robots by name (a-z, 0-9, _ and -): JSON {"trading": {"kind": "dingtalk", "url": "...", "secret": "SEC..."}},
    # from the environment or a file. Alertmanager posts to /v1/alertmanager/robots/<name>.
    robots: dict[str, Robot] = Field(default_factory=dict)
    robots_file: Path | None = None
    # Where business alerts go (Alertmanager's API). Empty: the service does not consume business events.
    alertmanager_url: str = ""
    # Notifications for one robot arriving within this many seconds become one message.
    merge_window_s: float = Field(default=2.0, ge=0, le=60)
    # At most this many messages per robot in any window of `rate_window_s` (DingTalk: 20 a minute).
    rate_limit: int = Field(default=20, ge=1, le=1000)
    rate_window_s: float = Field(default=60.0, gt=0, le=3600)
    # Retries of a robot message or an Alertmanager post: backoff from `retry_base_s`, doubling, capped.
    retry_base_s: float = Field(default=1.0, gt=0, le=60)
    retry_max_s: float = Field(default=300.0, gt=0, le=3600)
    send_timeout_s: float = Field(default=10.0, gt=0, le=120)
    # Business alerts that describe a moment (a risk warning, a reconciliation difference) end after this long;
    # conditions (a halt, a failed instance) last until the event that clears them.
    event_alert_ttl_s: int = Field(default=4 * 3600, ge=60, le=7 * 24 * 3600)
    # Prefixed to a relative runbook_url (docs/operations.md#...) in robot messages, e.g. the repository's web URL.
    runbook_base_url: str = ""

    @field_validator("robots", mode="before")
    @classmethod
    def _robots_json(cls, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _from_files(self) -> NotifySettings:
        if self.webhook_token_file is not None:
            self.webhook_token = SecretStr(self.webhook_token_file.read_text(encoding="utf-8").strip())
        if self.robots_file is not None:
            raw = json.loads(self.robots_file.read_text(encoding="utf-8"))
            self.robots = {name: Robot.model_validate(body) for name, body in raw.items()}
        for name in self.robots:
            if not ROBOT_NAME.fullmatch(name):
                raise ValueError(
                    f"robot name {name!r}: 1-32 characters a-z, 0-9, _ and -, starting with a letter or digit"
                )
        return self

    def require_webhook_token(self) -> str:
        """The token, or refuse to start: the webhook is never open (fail closed)."""
        token = self.webhook_token.get_secret_value()
        if len(token) < MIN_TOKEN_LENGTH:
            raise ValueError(
                f"LH_NOTIFY_WEBHOOK_TOKEN (or LH_NOTIFY_WEBHOOK_TOKEN_FILE) must hold at least {MIN_TOKEN_LENGTH} "
                "characters: Alertmanager presents it as its bearer token"
            )
        return token

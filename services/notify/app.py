"""The notify service's app: the robot channels (Alertmanager webhook -> DingTalk / WeCom) and the business-alert
consumer (the bus -> Alertmanager's API). Fleet mode only: `make run` (standalone) has no Alertmanager."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from urllib.parse import parse_qsl, urlsplit

import httpx
from fastapi import FastAPI

from services.notify import api
from services.notify.business import CONSUMER, EVENT_PATTERNS, AlertmanagerPoster
from services.notify.channels import RobotChannel, SlidingWindowLimit
from services.notify.metrics import NotifyMetrics
from services.notify.robots import SendResult, message_body, render_markdown, send_robot_message
from services.notify.schemas import WebhookNotification
from services.notify.settings import NotifySettings, Robot
from shared.platform.app import Infra, create_service_app
from shared.platform.observability import register_secrets
from shared.platform.settings import Settings

NAME = "notify"


def robot_secrets(notify: NotifySettings, token: str) -> list[str]:
    """Every secret value the service holds: the token, each robot's URL, its query values (DingTalk's access_token,
    WeCom's key) and its signing secret."""
    values = [token]
    for robot in notify.robots.values():
        url = robot.url.get_secret_value()
        values.append(url)
        values += [value for _, value in parse_qsl(urlsplit(url).query)]
        if robot.secret is not None:
            values.append(robot.secret.get_secret_value())
    return values


def create_app(settings: Settings, infra: Infra | None = None, notify: NotifySettings | None = None) -> FastAPI:
    infra = infra or Infra.from_settings(settings, NAME)
    notify = notify or NotifySettings()
    token = notify.require_webhook_token()  # refuses to start without one: the webhook is never open
    register_secrets(robot_secrets(notify, token))  # whatever logs them (httpx's request lines too) shows [REDACTED]
    state: dict[str, object] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        robots_http = httpx.AsyncClient(timeout=notify.send_timeout_s)
        am_http = httpx.AsyncClient(base_url=notify.alertmanager_url or "http://alertmanager.invalid",
                                    timeout=notify.send_timeout_s)  # fmt: skip
        try:
            for channel in channels.values():
                channel.start()
            if notify.alertmanager_url:
                poster = AlertmanagerPoster(am_http, metrics, retry_base_s=notify.retry_base_s,
                                            retry_max_s=notify.retry_max_s, ttl_s=notify.event_alert_ttl_s)  # fmt: skip
                app.state.poster = poster
                await infra.bus.subscribe(CONSUMER, EVENT_PATTERNS, poster.handle)
            state["robots_http"] = robots_http
            yield
        finally:
            for channel in channels.values():
                await channel.stop()
            await robots_http.aclose()
            await am_http.aclose()

    app = create_service_app(NAME, infra, public_routers=[api.router], lifespan=lifespan)
    metrics = NotifyMetrics(app.state.metrics_registry)

    async def send(name: str, robot: Robot, batch: list[WebhookNotification], deferred: int) -> SendResult:
        title, text = render_markdown(batch, kind=robot.kind, runbook_base=notify.runbook_base_url, deferred=deferred)
        http = state["robots_http"]
        assert isinstance(http, httpx.AsyncClient)
        return await send_robot_message(http, robot, message_body(robot.kind, title, text), int(time.time() * 1000))

    channels: dict[str, RobotChannel] = {}
    for name, robot in notify.robots.items():
        metrics.robot(name)
        channels[name] = RobotChannel(
            name, partial(send, name, robot), SlidingWindowLimit(notify.rate_limit, notify.rate_window_s), metrics,
            merge_window_s=notify.merge_window_s, retry_base_s=notify.retry_base_s, retry_max_s=notify.retry_max_s,
        )  # fmt: skip
    app.state.webhook_token = token
    app.state.channels = channels
    app.state.metrics = metrics
    app.state.notify_settings = notify
    return app

"""Business events as Alertmanager alerts: labels that identify the condition, a resolution when it clears, and a
poster that retries until Alertmanager takes them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from services.notify.business import AlertmanagerPoster, alerts_for
from services.notify.metrics import NotifyMetrics
from shared.platform.events import (
    BrokerBridgeLink,
    BrokerReconciliationDifference,
    RiskAlert,
    StopTriggered,
    StrategyInstanceChanged,
    TradingStateChanged,
    make_event,
)

AT = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)
NOW = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)
TTL_S = 4 * 3600


def halt(from_state: str, to_state: str) -> Any:
    return make_event("risk.trading_state.changed", TradingStateChanged(
        scope="account", key="acct-7", from_state=from_state, to_state=to_state, reason="daily loss 5.2% > 5%",
        by="risk:drawdown", at=AT), source="risk")  # fmt: skip


def test_a_risk_warning_is_a_warning_alert_that_ends_after_the_ttl() -> None:
    event = make_event("risk.alert", RiskAlert(
        severity="warning", account_id="acct-7", rule="position_limit", code="near_position_limit",
        message="600519.SH would be 18% of equity (limit 20%)", values={"share": "0.18", "limit": "0.20"}, at=AT,
    ), source="risk")  # fmt: skip
    (alert,) = alerts_for(event, now=NOW, ttl_s=TTL_S)
    assert alert["labels"] == {"alertname": "LianghuaRiskWarning", "severity": "warning", "team": "trading",
                               "account": "acct-7", "rule": "position_limit", "code": "near_position_limit"}  # fmt: skip
    assert alert["annotations"]["summary"] == "600519.SH would be 18% of equity (limit 20%)"
    assert alert["annotations"]["description"].endswith("[limit=0.20, share=0.18]")
    assert alert["annotations"]["runbook_url"] == "docs/operations.md#lianghuariskwarning"
    assert alert["startsAt"] == "2026-12-07T02:00:00+00:00"
    assert alert["endsAt"] == "2026-12-07T06:00:00+00:00"  # 02:00 + 4 h


def test_a_breach_is_critical() -> None:
    event = make_event("risk.alert", RiskAlert(
        severity="critical", account_id="acct-7", rule="drawdown", code="daily_loss_limit", message="m", at=AT,
    ), source="risk")  # fmt: skip
    (alert,) = alerts_for(event, now=NOW, ttl_s=TTL_S)
    assert (alert["labels"]["alertname"], alert["labels"]["severity"]) == ("LianghuaRiskBreach", "critical")


def test_a_halt_fires_until_the_account_is_active_again_which_resolves_it() -> None:
    (fired,) = alerts_for(halt("active", "halted"), now=NOW, ttl_s=TTL_S)
    assert fired["labels"] == {"alertname": "LianghuaTradingHalted", "severity": "critical", "team": "trading",
                               "scope": "account", "key": "acct-7", "account": "acct-7"}  # fmt: skip
    assert datetime.fromisoformat(fired["endsAt"]) - AT == timedelta(days=30)  # held until cleared
    (resolved,) = alerts_for(halt("halted", "active"), now=NOW, ttl_s=TTL_S)
    assert resolved["labels"] == fired["labels"]  # the same alert...
    assert resolved["endsAt"] == NOW.isoformat()  # ...ended now


def test_an_instance_halt_names_the_instances_account_so_its_people_see_it() -> None:
    def instance_halt(account_id: str | None) -> Any:
        return make_event("risk.trading_state.changed", TradingStateChanged(
            scope="instance", key="3f2b8c1d9e4a4b7c8d6e5f4a3b2c1d0e", from_state="active", to_state="halted",
            reason="bad params", by="admin", at=AT, account_id=account_id), source="risk")  # fmt: skip

    (fired,) = alerts_for(instance_halt("acct-7"), now=NOW, ttl_s=TTL_S)
    assert fired["labels"] == {"alertname": "LianghuaTradingHalted", "severity": "critical", "team": "trading",
                               "scope": "instance", "key": "3f2b8c1d9e4a4b7c8d6e5f4a3b2c1d0e",
                               "account": "acct-7"}  # fmt: skip
    # an instance that has placed no order: risk does not know its account, the alert is for admins (no account)
    (unknown,) = alerts_for(instance_halt(None), now=NOW, ttl_s=TTL_S)
    assert "account" not in unknown["labels"]


def test_halted_to_reducing_resolves_the_halt_and_fires_reducing() -> None:
    alerts = alerts_for(halt("halted", "reducing"), now=NOW, ttl_s=TTL_S)
    by_name = {a["labels"]["alertname"]: a for a in alerts}
    assert by_name["LianghuaTradingHalted"]["endsAt"] == NOW.isoformat()
    assert by_name["LianghuaTradingReducing"]["labels"]["severity"] == "warning"
    assert by_name["LianghuaTradingReducing"]["endsAt"] > NOW.isoformat()


def instance(event_type: str) -> Any:
    return make_event(event_type, StrategyInstanceChanged(
        instance_id="3f2b8c1d9e4a4b7c8d6e5f4a3b2c1d0e", strategy="dual_ma", owner="alice", account_id="alice",
        mode="paper", state=event_type.rsplit(".", 1)[1], error="ZeroDivisionError: division by zero", at=AT,
    ), source="strategy")  # fmt: skip


def test_a_failed_instance_fires_and_stopping_it_resolves_it() -> None:
    (fired,) = alerts_for(instance("strategy.instance.failed"), now=NOW, ttl_s=TTL_S)
    assert fired["labels"]["alertname"] == "LianghuaStrategyFailed"
    assert fired["labels"]["instance_id"] == "3f2b8c1d9e4a4b7c8d6e5f4a3b2c1d0e"
    assert "ZeroDivisionError" in fired["annotations"]["description"]
    (resolved,) = alerts_for(instance("strategy.instance.stopped"), now=NOW, ttl_s=TTL_S)
    assert resolved["labels"] == fired["labels"] and resolved["endsAt"] == NOW.isoformat()


def test_a_failed_stop_exit_alerts_and_a_triggered_one_does_not() -> None:
    def stop(status: str) -> Any:
        return make_event("risk.stop.triggered", StopTriggered(
            stop_id="s1", account_id="acct-7", owner="alice", ts_code="600519.SH", kind="stop_loss", price="1500.00",
            stop_level="1510.00", qty=100, client_order_id="stop-s1", status=status, code="trading_halted",
            message="the account is halted", at=AT), source="risk")  # fmt: skip

    assert alerts_for(stop("triggered"), now=NOW, ttl_s=TTL_S) == []
    (alert,) = alerts_for(stop("failed"), now=NOW, ttl_s=TTL_S)
    assert alert["labels"]["alertname"] == "LianghuaStopExitFailed"


def test_a_reconciliation_difference_names_each_difference() -> None:
    event = make_event("broker.reconciliation.difference", BrokerReconciliationDifference(
        reconciliation_id="r1", bridge_id="qmt-a", account_id="acct-7", at=AT,
        differences=[{"kind": "position", "ts_code": "000001.SZ", "platform": "1000", "broker": "900"},
                     {"kind": "cash", "ts_code": None, "platform": "10000.00", "broker": "9990.00"}]),
        source="execution")  # fmt: skip
    (alert,) = alerts_for(event, now=NOW, ttl_s=TTL_S)
    assert alert["labels"]["bridge_id"] == "qmt-a"
    assert alert["annotations"]["summary"] == "2 difference(s) between the platform and the broker of qmt-a"
    assert "position 000001.SZ: platform 1000, broker 900" in alert["annotations"]["description"]


async def test_the_poster_retries_until_alertmanager_takes_the_alerts() -> None:
    answers = iter([httpx.ConnectError("refused"), httpx.Response(503), httpx.Response(200)])
    posted: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        posted.append(request.read())
        return answer

    registry = CollectorRegistry()
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://am") as http:
        poster = AlertmanagerPoster(http, NotifyMetrics(registry), retry_base_s=0.01, retry_max_s=0.02, ttl_s=TTL_S,
                                    clock=lambda: NOW)  # fmt: skip
        await poster.handle(halt("active", "halted"))
    assert len(posted) == 2  # the 503 and the 200 (the refused connection sent nothing)
    assert registry.get_sample_value("lh_notify_alertmanager_post_failures_total") == 2
    assert registry.get_sample_value("lh_notify_business_alerts_total", {"alertname": "LianghuaTradingHalted"}) == 1


async def test_an_alert_alertmanager_refuses_as_bad_is_raised_not_retried_forever() -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(400, text="bad startsAt"))
    async with httpx.AsyncClient(transport=transport, base_url="http://am") as http:
        poster = AlertmanagerPoster(http, NotifyMetrics(CollectorRegistry()), retry_base_s=0.01, retry_max_s=0.02,
                                    ttl_s=TTL_S)  # fmt: skip
        with pytest.raises(ValueError, match="http_400"):
            await poster.handle(halt("active", "halted"))


def test_a_bridge_disconnect_fires_until_the_bridge_is_connected_again() -> None:
    def link(kind: str) -> Any:
        return make_event(f"broker.bridge.{kind}", BrokerBridgeLink(
            bridge_id="qmt-a", account_id="acct-7", why="closed" if kind == "disconnected" else None, at=AT),
            source="execution")  # fmt: skip

    (fired,) = alerts_for(link("disconnected"), now=NOW, ttl_s=TTL_S)
    assert fired["labels"] == {"alertname": "LianghuaBrokerDisconnected", "severity": "critical", "team": "trading",
                               "account": "acct-7", "bridge_id": "qmt-a"}  # fmt: skip
    assert fired["annotations"]["summary"] == "QMT bridge qmt-a of account acct-7 is disconnected"
    (resolved,) = alerts_for(link("connected"), now=NOW, ttl_s=TTL_S)
    assert resolved["labels"] == fired["labels"] and resolved["endsAt"] == NOW.isoformat()

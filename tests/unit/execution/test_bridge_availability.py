"""What a new order of a QMT account gets, as its account's broker tells the desk (docs/qmt-bridge.md)."""

from __future__ import annotations

import pytest

from services.execution.bridge_api import orders_refused
from services.execution.store import TradingSwitch


def _switch(enabled: bool, read_only: bool) -> TradingSwitch:
    return TradingSwitch("qmt-a", enabled=enabled, read_only=read_only, updated_by=None, updated_at=None)


@pytest.mark.parametrize(
    ("connected", "qmt", "switch", "expected"),
    [
        # away: refused before anything is stored, whatever the switches say
        (False, None, _switch(True, False), "broker_unavailable"),
        (True, "disconnected", _switch(True, False), "broker_unavailable"),
        (False, "connected", None, "broker_unavailable"),
        # there, but the admin's switch is off or read-only: rejected at the bridge
        (True, "connected", _switch(False, False), "trading_disabled"),
        (True, None, _switch(True, True), "trading_disabled"),
        (True, "connected", None, "trading_disabled"),
        # there and trading: nothing known against an order
        (True, "connected", _switch(True, False), None),
        (True, None, _switch(True, False), None),
    ],
    ids=["not-connected", "miniqmt-down", "no-switch-away", "switch-off", "read-only", "no-switch", "on", "on-unsaid"],
)
def test_orders_refused(connected: bool, qmt: str | None, switch: TradingSwitch | None, expected: str | None) -> None:
    assert orders_refused(connected, qmt, switch) == expected

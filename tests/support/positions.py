"""What order-path tests compare of `GET /v1/positions`: each position's shares (its value and P&L are tested where
they are worked out: tests/unit/execution/test_valuation.py, tests/integration/execution/test_execution_valuation.py)."""

from __future__ import annotations

from typing import Any

SHARES = ("ts_code", "qty", "sellable_qty")


def held(positions: Any) -> list[dict[str, Any]]:
    """The positions' codes, quantities and sellable quantities, in the order given."""
    return [{key: p[key] for key in SHARES} for p in positions]

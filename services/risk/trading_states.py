"""The kill switch: trading states per account, per strategy instance and global (docs/risk-rules.md "Trading states
and the kill switch"). An admin sets one (`POST /v1/risk/halt`); every order decision reads the states that apply to
it from risk's database (one query by primary key, on the database every risk process shares, so a change takes
effect at once in all of them) and applies the strictest with the losses rule's `check` (services/risk/rules/
drawdown.py): halted refuses every new order, reducing passes only a sell of no more than the position held. Cancels
never come through risk (gateway -> execution), so no trading state can block one."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Protocol

from services.risk.checks import OrderIntent, Reason, ReasonCode
from services.risk.events import trading_state_changed
from services.risk.rules import drawdown
from services.risk.rules.base import HeldPosition, Reference, RiskState, RuleOrder, TradingState
from services.risk.schemas import HaltRequest
from services.risk.store import RiskStore, Scope, ScopedState
from shared.core.domain import parse_ts_code
from shared.core.domain.codes import Board
from shared.platform.errors import Forbidden, ServiceError
from shared.platform.http import ServiceDirectory, _json_or_raise
from shared.platform.internal_auth import Principal, service_headers
from shared.platform.roles import Role

log = logging.getLogger(__name__)

STRICTNESS = [TradingState.ACTIVE, TradingState.REDUCING, TradingState.HALTED]
OPEN_STATUSES = ("accepted", "submitted", "partially_filled", "unknown")
PAGE = 500


class TradingStateSource(Protocol):
    async def trading_states_of(self, account_id: str, instance_id: str | None) -> list[ScopedState]:
        """The stored states of global, the account and the instance (a scope without one is active). Raises when
        they cannot be read."""


def strictest(states: list[ScopedState]) -> ScopedState | None:
    """The strictest stored state (None: all active)."""
    live = [s for s in states if s.state != TradingState.ACTIVE]
    return max(live, key=lambda s: STRICTNESS.index(TradingState(s.state)), default=None)


def _where(state: ScopedState) -> str:
    return "globally" if state.scope == Scope.GLOBAL else f"for {state.scope} {state.key}"


def trading_state_reasons(order: OrderIntent, governing: ScopedState | None, held_qty: int | None) -> list[Reason]:
    """The reasons the governing state refuses the order for, by the losses rule's `check`: `held_qty` is the
    position the order's security is held at (only read for a sell in reducing; None: none held)."""
    if governing is None:
        return []
    try:
        board = parse_ts_code(order.ts_code).board
    except ValueError:
        board = Board.MAIN  # not read by the check; the order is refused for its code anyway
    rule_order = RuleOrder(
        ts_code=order.ts_code, board=board, side=order.side, order_type=order.order_type, qty=order.qty,
        price=order.price, value=Decimal(0), at=governing.set_at, session=date.min, reference=Reference(None),
    )  # fmt: skip
    positions = {} if not held_qty else {order.ts_code: HeldPosition(qty=held_qty, market_value=Decimal(0))}
    state = RiskState(equity=Decimal(0), positions=positions, trading_state=TradingState(governing.state))
    findings = drawdown.check(rule_order, state, drawdown.LossConfig())
    if not findings:
        return []
    why = f"set by {governing.set_by} at {governing.set_at.isoformat()}: {governing.reason}"
    if governing.state == TradingState.HALTED:
        return [Reason(ReasonCode.TRADING_HALTED, f"trading is halted {_where(governing)} ({why}): only cancels pass")]
    return [
        Reason(
            ReasonCode.TRADING_REDUCING,
            f"trading is reducing {_where(governing)} ({why}): only a sell of no more than the "
            f"{held_qty or 0} shares held passes",
        )
    ]


@dataclass(frozen=True)
class CancelOutcome:
    cancelled: int
    failed: int
    failures: list[dict[str, str]]

    def as_json(self) -> dict[str, Any]:
        return {"cancelled": self.cancelled, "failed": self.failed, "failures": self.failures}


class ExecutionCancels:
    """Cancels every open order of a scope through execution's own API (`GET /v1/orders`, `POST
    /v1/orders/{id}/cancel`), as risk itself (a service sees and acts for every account)."""

    def __init__(self, services: ServiceDirectory, internal_secret: str) -> None:
        self.services = services
        self.internal_secret = internal_secret

    async def cancel_open(self, scope: Scope, key: str) -> CancelOutcome:
        client = self.services.client("execution")
        headers = service_headers(self.internal_secret, "risk")
        params: dict[str, Any] = {"limit": PAGE, "oldest_first": "true"}
        if scope is Scope.ACCOUNT:
            params["account_id"] = key
        elif scope is Scope.INSTANCE:
            params["strategy_instance_id"] = key
        cancelled, failures = 0, []
        for status in OPEN_STATUSES:
            after: str | None = None
            while True:
                page = await client.get_json(
                    "/v1/orders", params={**params, "status": status, **({"after": after} if after else {})},
                    headers=headers,
                )  # fmt: skip
                if not isinstance(page, list) or not page:
                    break
                for order in page:
                    order_id = str(order["order_id"])
                    try:
                        response = await client.request("POST", f"/v1/orders/{order_id}/cancel", headers=headers)
                        _json_or_raise("execution", response)
                    except ServiceError as exc:
                        failures.append({"order_id": order_id, "code": exc.code, "message": exc.message})
                    else:
                        cancelled += 1
                if len(page) < PAGE:
                    break
                after = str(page[-1]["order_id"])
        return CancelOutcome(cancelled, len(failures), failures)


class CancelPort(Protocol):
    async def cancel_open(self, scope: Scope, key: str) -> CancelOutcome: ...


class KillSwitch:
    def __init__(self, store: RiskStore, cancels: CancelPort, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.cancels = cancels
        self.clock = clock

    async def set(self, request: HaltRequest, principal: Principal) -> dict[str, Any]:
        if principal.is_service or not principal.at_least(Role.ADMIN):
            raise Forbidden("forbidden", f"only an admin may set a trading state ({principal.subject} may not)")
        scope = Scope(request.scope)
        before, changed = await self.store.set_trading_state(
            scope, request.key, request.state, reason=request.reason, by=principal.subject, at=self.clock(),
            make_event=trading_state_changed,
        )  # fmt: skip
        log.warning(
            "trading state set",
            extra={"scope": scope.value, "key": request.key, "from": before, "to": request.state,
                   "by": principal.subject, "changed": changed},
        )  # fmt: skip
        answer: dict[str, Any] = {
            "scope": scope.value, "key": request.key, "from_state": before, "state": request.state, "changed": changed,
        }  # fmt: skip
        if request.cancel_open_orders:
            answer["cancels"] = (await self.cancels.cancel_open(scope, request.key)).as_json()
        return answer

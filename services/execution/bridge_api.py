"""Execution's QMT routes (docs/qmt-bridge.md, "Execution"): the bridges' WebSocket (`/v1/bridge/trading`,
authenticated by the protocol's handshake, not by the internal token: the gateway relays `/bridge/v1/trading` here),
each account's broker (admins set it, traders read their own), the bridges' state, their reconciliations and their
trading switches (admins)."""

from __future__ import annotations

import logging
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request, WebSocket
from sqlalchemy.exc import IntegrityError

from services.execution.admission import principal_account
from services.execution.bridges import BridgeRegistry
from services.execution.broker_sync import QmtSync, ReconciliationResult
from services.execution.deps import CurrentPrincipal, Desk
from services.execution.desk import OrderDesk
from services.execution.schemas import (
    BRIDGE_ID_PATTERN,
    AccountBrokerIn,
    AccountBrokerOut,
    BridgeOut,
    DifferenceOut,
    ReconciliationOut,
    TradingSwitchIn,
    TradingSwitchOut,
)
from services.execution.store import AccountBroker, Reconciliation, TradingSwitch
from services.execution.store.brokers import PAPER, QMT
from shared.platform.errors import Conflict, Forbidden, NotFound, ServiceError
from shared.platform.internal_auth import Principal
from shared.platform.request_model import ACCOUNT_ID_PATTERN
from shared.platform.roles import Role

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["qmt"])
bridge_socket = APIRouter()

BridgeId = Annotated[str, Path(pattern=BRIDGE_ID_PATTERN)]
AccountIdPath = Annotated[str, Path(pattern=ACCOUNT_ID_PATTERN)]


@bridge_socket.websocket("/v1/bridge/trading")
async def bridge_trading(websocket: WebSocket) -> None:
    """A QMT bridge's trading channel: challenge, hello, welcome (or refused and closed 4403), then signed frames."""
    registry: BridgeRegistry = websocket.app.state.bridges
    await registry.serve(websocket)


def _admin(principal: Principal, what: str) -> None:
    if not principal.at_least(Role.ADMIN):
        raise Forbidden("forbidden", f"{principal.subject} may not {what}: admins only")


def orders_refused(
    connected: bool, qmt: str | None, switch: TradingSwitch | None
) -> Literal["broker_unavailable", "trading_disabled"] | None:
    """What a new order of a QMT account gets now, as the order path decides it (`QmtBroker.ready`, then the bridge's
    switches): refused with `broker_unavailable` while the bridge is not connected for the account or its MiniQMT is
    reported down; rejected as `trading_disabled` while the trading switch is off or read-only."""
    if not connected or qmt == "disconnected":
        return "broker_unavailable"
    if switch is None or not switch.enabled or switch.read_only:
        return "trading_disabled"
    return None


async def _broker_out(bound: AccountBroker, desk: OrderDesk, registry: BridgeRegistry) -> AccountBrokerOut:
    out = AccountBrokerOut(
        account_id=bound.account_id,
        broker=QMT if bound.broker == QMT else PAPER,
        bridge_id=bound.bridge_id,
        updated_by=bound.updated_by,
        updated_at=bound.updated_at,
    )
    if out.broker != QMT or bound.bridge_id is None:
        return out
    link = registry.links.get(bound.bridge_id)
    connected = link is not None and not link.closed and link.account_id == bound.account_id
    switch = await desk.store.trading_switch(bound.bridge_id)
    out.bridge_connected = connected and (link is None or link.qmt != "disconnected")
    out.trading_enabled = switch.enabled and not switch.read_only
    out.orders_refused = orders_refused(connected, None if link is None else link.qmt, switch)
    return out


@router.get(
    "/accounts/{account_id}/broker",
    response_model=AccountBrokerOut,
    responses={403: {"description": "`forbidden`: another account's, read by a person"}},
)
async def get_account_broker(
    account_id: AccountIdPath, principal: CurrentPrincipal, desk: Desk, request: Request
) -> AccountBrokerOut:
    """The broker the account trades through (`paper` unless an admin bound it to a QMT bridge). People read their
    own account's; services and admins any."""
    if not principal.acts_for_everyone and principal_account(principal) != account_id:
        raise Forbidden("forbidden", f"{principal.subject} may not see the broker of account {account_id}")
    return await _broker_out(await desk.store.account_broker(account_id), desk, request.app.state.bridges)


@router.put(
    "/accounts/{account_id}/broker",
    response_model=AccountBrokerOut,
    responses={
        403: {"description": "`forbidden`: admins only"},
        409: {"description": "`account_has_open_orders`; `bridge_in_use` (bound to another account)"},
        422: {"description": "`unknown_bridge` (not in LH_QMT_BRIDGE_SECRETS); `bridge_id_required`"},
    },
)
async def put_account_broker(
    account_id: AccountIdPath, body: AccountBrokerIn, principal: CurrentPrincipal, desk: Desk, request: Request
) -> AccountBrokerOut:
    """Bind the account to its broker (admins). Refused while the account has orders not final: they stay with the
    broker that has them."""
    _admin(principal, "choose an account's broker")
    registry: BridgeRegistry = request.app.state.bridges
    before = await desk.store.account_broker(account_id)
    if body.broker == QMT:
        if body.bridge_id is None:
            raise ServiceError("bridge_id_required", "bridge_id: a qmt account names its bridge", status_code=422)
        if body.bridge_id not in registry.secrets:
            raise ServiceError(
                "unknown_bridge", f"bridge_id: no bridge {body.bridge_id} in LH_QMT_BRIDGE_SECRETS", status_code=422
            )
    elif body.bridge_id is not None:
        raise ServiceError("bridge_id_not_allowed", "bridge_id: a paper account has no bridge", status_code=422)
    try:
        bound = await desk.store.set_account_broker(
            account_id, body.broker, body.bridge_id if body.broker == QMT else None, by=principal.subject
        )
    except IntegrityError:
        raise Conflict("bridge_in_use", f"bridge_id: {body.bridge_id} is bound to another account") from None
    if bound is None:
        raise Conflict(
            "account_has_open_orders", f"account {account_id} has open orders: its broker changes once they are final"
        )
    log.info(
        "account broker set",
        extra={"account_id": account_id, "broker": body.broker, "bridge_id": body.bridge_id, "by": principal.subject},
    )
    # A bridge whose binding changed is checked only at its hello: its live link (naming the old account) is closed,
    # so that it says hello again and is checked against the binding as it is now.
    for bridge_id in {before.bridge_id, bound.bridge_id} - {None}:
        link = registry.links.get(str(bridge_id))
        if link is not None and link.account_id != (account_id if bridge_id == bound.bridge_id else None):
            await registry.drop(str(bridge_id), f"account {account_id}'s broker changed")
    return await _broker_out(bound, desk, registry)


def _switch_out(switch: TradingSwitch, sent: bool = False) -> TradingSwitchOut:
    return TradingSwitchOut(
        bridge_id=switch.bridge_id,
        enabled=switch.enabled,
        read_only=switch.read_only,
        updated_by=switch.updated_by,
        updated_at=switch.updated_at,
        sent=sent,
    )


def _reconciliation_out(r: Reconciliation | ReconciliationResult) -> ReconciliationOut:
    if isinstance(r, ReconciliationResult):
        found = [d.as_dict() for d in r.differences]
        rid = r.reconciliation_id
    else:
        found, rid = r.differences, r.reconciliation_id
    return ReconciliationOut(
        reconciliation_id=rid,
        bridge_id=r.bridge_id,
        account_id=r.account_id,
        at=r.at,
        orders_checked=r.orders_checked,
        orders_updated=r.orders_updated,
        differences=[DifferenceOut.model_validate(d) for d in found],
    )


@router.get("/bridges", response_model=list[BridgeOut], responses={403: {"description": "`forbidden`: admins"}})
async def list_bridges(principal: CurrentPrincipal, desk: Desk, request: Request) -> list[BridgeOut]:
    """Every configured QMT bridge: connected or not, its account, its link to MiniQMT and the account's status
    there, its trading switches and its last reconciliation (admins and services)."""
    if not principal.acts_for_everyone:
        raise Forbidden("forbidden", f"{principal.subject} may not see the bridges: admins only")
    registry: BridgeRegistry = request.app.state.bridges
    sync: QmtSync = request.app.state.qmt_sync
    bound = await desk.store.bound_bridges()
    out = []
    for bridge_id in sorted(registry.secrets):
        link = registry.links.get(bridge_id)
        last = sync.last.get(bridge_id)
        out.append(
            BridgeOut(
                bridge_id=bridge_id,
                account_id=bound.get(bridge_id),
                connected=link is not None and not link.closed,
                connected_at=None if link is None else link.connected_at,
                last_seen=registry.last_seen.get(bridge_id),
                qmt=None if link is None else link.qmt,
                account_status=None if link is None else link.account_status,
                trading=_switch_out(await desk.store.trading_switch(bridge_id)),
                last_reconciliation=None if last is None else _reconciliation_out(last),
            )
        )
    return out


@router.get(
    "/bridges/{bridge_id}/reconciliations",
    response_model=list[ReconciliationOut],
    responses={403: {"description": "`forbidden`: admins"}, 404: {"description": "`bridge_not_found`"}},
)
async def list_reconciliations(
    bridge_id: BridgeId,
    principal: CurrentPrincipal,
    desk: Desk,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[ReconciliationOut]:
    """The bridge's stored reconciliations, newest first: those that found positions or cash differing from the
    broker's (when the differences changed) or that recorded orders' changes."""
    if not principal.acts_for_everyone:
        raise Forbidden("forbidden", f"{principal.subject} may not see reconciliations: admins only")
    if bridge_id not in request.app.state.bridges.secrets:
        raise NotFound("bridge_not_found", f"no bridge {bridge_id}")
    return [_reconciliation_out(r) for r in await desk.store.reconciliations(bridge_id, limit)]


@router.post(
    "/bridges/{bridge_id}/trading",
    response_model=TradingSwitchOut,
    responses={403: {"description": "`forbidden`: admins only"}, 404: {"description": "`bridge_not_found`"}},
)
async def set_trading(
    bridge_id: BridgeId, body: TradingSwitchIn, principal: CurrentPrincipal, desk: Desk, request: Request
) -> TradingSwitchOut:
    """Set a bridge's trading switches (admins): stored, audited (who, when, old -> new, why), sent to the bridge at
    once when it is connected and in every welcome. Default: trading disabled."""
    _admin(principal, "switch a bridge's trading")
    registry: BridgeRegistry = request.app.state.bridges
    if bridge_id not in registry.secrets:
        raise NotFound("bridge_not_found", f"no bridge {bridge_id}")
    old, new = await desk.store.set_trading_switch(
        bridge_id, body.enabled, body.read_only, reason=body.reason, by=principal.subject
    )
    log.warning(
        "bridge trading switches changed",
        extra={
            "bridge_id": bridge_id,
            "by": principal.subject,
            "old": old.wire(),
            "new": new.wire(),
            "reason": body.reason,
        },
    )
    sent = await registry.set_trading(bridge_id, new.wire())
    return _switch_out(new, sent)


__all__ = ["PAPER", "bridge_socket", "router"]

"""Risk's dependency aliases for its routes: the caller (`Caller`), the risk desk (`Desk`), its batches of orders
(`Batches`), its store (`Store`), the kill switch (`Killswitch`) and the rule sets (`RuleSetsDep`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from services.risk.batches import OrderBatches
from services.risk.desk import RiskDesk
from services.risk.rule_sets import RuleSets
from services.risk.store import RiskStore
from services.risk.trading_states import KillSwitch
from shared.platform.internal_auth import Caller

__all__ = [
    "Batches",
    "Caller",
    "Desk",
    "Killswitch",
    "RuleSetsDep",
    "Store",
    "get_batches",
    "get_desk",
    "get_kill_switch",
    "get_rule_sets",
    "get_store",
]


def get_desk(request: Request) -> RiskDesk:
    desk: RiskDesk = request.app.state.desk
    return desk


def get_batches(request: Request) -> OrderBatches:
    batches: OrderBatches = request.app.state.batches
    return batches


def get_store(request: Request) -> RiskStore:
    store: RiskStore = request.app.state.store
    return store


def get_kill_switch(request: Request) -> KillSwitch:
    switch: KillSwitch = request.app.state.kill_switch
    return switch


def get_rule_sets(request: Request) -> RuleSets:
    rule_sets: RuleSets = request.app.state.rule_sets
    return rule_sets


Desk = Annotated[RiskDesk, Depends(get_desk)]
Batches = Annotated[OrderBatches, Depends(get_batches)]
Store = Annotated[RiskStore, Depends(get_store)]
Killswitch = Annotated[KillSwitch, Depends(get_kill_switch)]
RuleSetsDep = Annotated[RuleSets, Depends(get_rule_sets)]

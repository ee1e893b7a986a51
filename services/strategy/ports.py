"""The strategy service's ports: the runner that trades its instances (`InstanceRunner`), and what it asks of its
peers when an instance is created (the universe from the data service, the account's cash from execution)."""

from __future__ import annotations

from decimal import Decimal
from typing import Protocol

from services.strategy.schemas import ReplaySpec
from services.strategy.store import InstanceRecord
from shared.platform.internal_auth import Principal
from shared.platform.universe import Universe

__all__ = ["AccountCash", "InstanceRecord", "InstanceRunner", "UniverseSource"]


class InstanceRunner(Protocol):
    """What runs the instances. The API calls it before it records the change: when it raises (a ServiceError,
    e.g. 422 `warmup_incomplete` naming the missing days), the state does not change and the error is the answer."""

    async def start(self, instance: InstanceRecord, replay: ReplaySpec | None = None) -> None: ...

    async def started(self, instance_id: str) -> None:
        """The start is recorded (state running, its event): the runner may trade now."""
        ...

    async def pause(self, instance_id: str) -> None: ...

    async def resume(self, instance: InstanceRecord) -> None: ...

    async def stop(self, instance_id: str, *, cancel_open_orders: bool) -> None: ...


class UniverseSource(Protocol):
    async def resolve(self, universe: Universe) -> list[str]:
        """The stocks the universe stands for today (a list: those of its codes the data service lists). Raises
        ServiceError: 422 when the data service refuses it (an unknown index), 503 when it cannot answer."""


class AccountCash(Protocol):
    async def balance(self, account_id: str, principal: Principal) -> Decimal:
        """The account's cash balance (CNY), asked of execution as `principal`. Raises ServiceError."""

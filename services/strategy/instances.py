"""What the strategy-instance API does, without HTTP: create an instance (strategy, parameters, costs, universe and
capital checked), move it through its lifecycle (the runner told first, then the change, its audit row and its event
committed together), keep every parameter version, and show each principal what it may see.

Who sees and does what: admins (and services) see and act on every instance; viewers read every instance; a trader
sees and acts on their own instances (they own it, or it trades their account) and no other (404, as if it did not
exist). Changes of one instance are serialised in this process (the strategy service runs as one process), as are the
capital checks of one account, so two instances created at once cannot both take the same unallocated cash."""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from services.strategy.events import instance_event
from services.strategy.lifecycle import (
    PARAMS_EDITABLE,
    Action,
    IllegalTransition,
    State,
    check_deletable,
    check_params_editable,
    next_state,
)
from services.strategy.metrics import InstanceMetrics
from services.strategy.ports import AccountCash, InstanceRunner, UniverseSource
from services.strategy.schemas import InstanceCreate, ReplaySpec
from services.strategy.store import Audit, AuditEntry, InstanceDay, InstanceRecord, InstanceStore, ParamsVersion
from shared.core.domain import from_fen, to_fen
from shared.platform.clock import utcnow
from shared.platform.errors import Conflict, Forbidden, NotFound, ServiceError
from shared.platform.internal_auth import Principal
from shared.platform.observability import new_id
from shared.platform.roles import Role
from shared.research.engine import BacktestConfig
from shared.research.strategy import Strategy

log = logging.getLogger(__name__)

RUNNER_ACTOR = "svc:strategy"  # who the audit names for what the runner does (a failure, a reload)
# The action's past tense: the audit's `action` and the event's `strategy.instance.<what>`.
DONE = {
    Action.START: "started",
    Action.PAUSE: "paused",
    Action.RESUME: "resumed",
    Action.STOP: "stopped",
    Action.FAIL: "failed",
}
BAR_FREQ_UNAVAILABLE = {
    "1m": "minute bars need a minute-bar feed, which the data service does not have yet (it comes with the QMT "
    "bridge); use 1d",
}


# Every state but stopped holds its capital (a failed instance may still hold positions and open orders).
ALLOCATING = tuple(s for s in State if s is not State.STOPPED)


@dataclass(frozen=True)
class Allocation:
    """An account's cash as its strategy instances share it: the balance, the capital of its instances that are not
    stopped (`instances`, newest first), and the unallocated rest (negative when the balance fell below the budgets,
    e.g. after a withdrawal)."""

    account_id: str
    balance_fen: int
    instances: tuple[InstanceRecord, ...]

    @property
    def allocated_fen(self) -> int:
        return sum(i.capital_fen for i in self.instances)

    @property
    def unallocated_fen(self) -> int:
        return self.balance_fen - self.allocated_fen


def account_of(principal: Principal) -> str:
    return principal.account_id or principal.subject


def sees_all(principal: Principal) -> bool:
    return principal.acts_for_everyone or principal.role == Role.VIEWER.value


def owns(principal: Principal, instance: InstanceRecord) -> bool:
    return instance.owner == principal.subject or instance.account_id == account_of(principal)


def _field_errors(exc: ValidationError, *prefix: str | int) -> RequestValidationError:
    """The model's errors as the request's, e.g. `params.fast: Input should be greater than 0`."""
    return RequestValidationError([{**e, "loc": ("body", *prefix, *e["loc"])} for e in exc.errors(include_url=False)])


class InstanceService:
    def __init__(
        self,
        store: InstanceStore,
        strategies: Mapping[str, type[Strategy]],
        *,
        universe: UniverseSource,
        cash: AccountCash,
        runner: InstanceRunner,
        metrics: InstanceMetrics,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.strategies = strategies
        self.universe = universe
        self.cash = cash
        self.runner = runner
        self.metrics = metrics
        self.clock = clock
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def _lock(self, key: str) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    # --- reading ------------------------------------------------------------------------------------------------
    async def visible(self, principal: Principal, instance_id: str) -> InstanceRecord:
        """The instance if `principal` may see it; 404 `instance_not_found` otherwise (whether it exists or not)."""
        instance = await self.store.get(instance_id)
        if instance is None or not (sees_all(principal) or owns(principal, instance)):
            raise NotFound("instance_not_found", f"there is no strategy instance {instance_id}")
        return instance

    async def _actionable(self, principal: Principal, instance_id: str) -> InstanceRecord:
        instance = await self.visible(principal, instance_id)
        if not (principal.at_least(Role.ADMIN) or (principal.at_least(Role.TRADER) and owns(principal, instance))):
            raise Forbidden("forbidden", f"role {principal.role} may not change strategy instance {instance_id}")
        return instance

    async def find(self, principal: Principal, *, state: State | None, strategy: str | None) -> list[InstanceRecord]:
        mine = None if sees_all(principal) else (principal.subject, account_of(principal))
        return await self.store.find(owner_or_account=mine, state=state, strategy=strategy)

    async def versions(self, principal: Principal, instance_id: str) -> list[ParamsVersion]:
        await self.visible(principal, instance_id)
        return await self.store.versions(instance_id)

    async def audit(self, principal: Principal, instance_id: str) -> list[AuditEntry]:
        await self.visible(principal, instance_id)
        return await self.store.audit(instance_id)

    async def days(
        self, principal: Principal, instance_id: str, start: date | None, end: date | None
    ) -> list[InstanceDay]:
        """The instance's recorded days from `start` to `end` (both included), oldest first."""
        if start is not None and end is not None and start > end:
            raise ServiceError("invalid_range", f"start {start} is after end {end}", status_code=422)
        await self.visible(principal, instance_id)
        return await self.store.days(instance_id, start, end)

    async def day(self, principal: Principal, instance_id: str, trade_date: date) -> InstanceDay:
        await self.visible(principal, instance_id)
        day = await self.store.day(instance_id, trade_date)
        if day is None:
            raise NotFound("day_not_found", f"strategy instance {instance_id} has no record of {trade_date}")
        return day

    # --- creating -----------------------------------------------------------------------------------------------
    def _strategy(self, name: str) -> type[Strategy]:
        strategy = self.strategies.get(name)
        if strategy is None:
            raise NotFound(
                "unknown_strategy",
                f"strategy: there is no strategy named {name!r} (installed: {', '.join(sorted(self.strategies))})",
            )
        return strategy

    def _params(self, strategy: type[Strategy], raw: Mapping[str, Any]) -> dict[str, Any]:
        try:
            parsed = strategy.parse_params(raw)
        except ValidationError as exc:
            raise _field_errors(exc, "params") from exc
        params: dict[str, Any] = parsed.model_dump(mode="json")
        return params

    async def create(self, principal: Principal, request: InstanceCreate) -> InstanceRecord:
        if not principal.at_least(Role.TRADER):
            raise Forbidden("forbidden", f"role {principal.role} may not create strategy instances")
        strategy = self._strategy(request.strategy)
        if request.bar_freq in BAR_FREQ_UNAVAILABLE:
            raise ServiceError(
                "bar_freq_unavailable",
                f"bar_freq: {request.bar_freq} is not available: {BAR_FREQ_UNAVAILABLE[request.bar_freq]}",
                status_code=422,
            )
        params = self._params(strategy, request.params)
        costs = request.costs.config_fields()
        if costs.get("corporate_actions") is False:
            # the account's positions follow them (execution applies them to every holder), so the sleeve does too
            raise RequestValidationError([{
                "loc": ("body", "costs", "corporate_actions"), "type": "value_error", "input": False,
                "msg": "an instance's sleeve always follows corporate actions, as its account's positions do "
                       "(leave it out, or true)",
            }])  # fmt: skip
        try:
            BacktestConfig(initial_cash=request.capital, **costs)  # the engine's own checks of the cost model
        except ValidationError as exc:
            raise _field_errors(exc, "costs") from exc
        account_id = request.account_id or account_of(principal)
        if account_id != account_of(principal) and not principal.at_least(Role.ADMIN):
            raise Forbidden(
                "forbidden",
                f"account_id: a trader runs instances on their own account ({account_of(principal)}), not {account_id}",
            )
        await self._check_universe(request)
        capital_fen = to_fen(request.capital)
        async with self._lock(f"account:{account_id}"):
            await self._check_capital(principal, account_id, capital_fen)
            now = self.clock()
            instance = InstanceRecord(
                instance_id=new_id(),
                strategy=strategy.name,
                owner=principal.subject,
                account_id=account_id,
                params=params,
                params_version=1,
                universe=request.universe.model_dump(mode="json", exclude_none=True),
                capital_fen=capital_fen,
                mode=request.mode,
                bar_freq=request.bar_freq,
                order_timing=request.order_timing,
                costs=costs,
                reload=request.reload,
                cancel_open_orders_on_stop=request.cancel_open_orders_on_stop,
                state=State.CREATED,
                error=None,
                created_at=now,
                updated_at=now,
            )
            audit = Audit(principal.subject, "created", None, instance.snapshot())
            await self.store.create(instance, audit, instance_event("created", instance))
        await self.refresh_metrics()
        return instance

    async def _check_universe(self, request: InstanceCreate) -> None:
        if not await self.universe.resolve(request.universe):
            raise ServiceError(
                "empty_universe", f"universe: {request.universe.label()} has no stocks today", status_code=422
            )

    async def allocation(self, principal: Principal, account_id: str | None = None) -> Allocation:
        """The account's cash balance, what its instances that are not stopped hold of it, and the rest. A trader
        (or viewer) reads their own account only; an admin any (403 `forbidden` otherwise)."""
        account_id = account_id or account_of(principal)
        if account_id != account_of(principal) and not principal.acts_for_everyone:
            raise Forbidden(
                "forbidden", f"account_id: you may read your own account ({account_of(principal)}), not {account_id}"
            )
        balance_fen = to_fen(await self.cash.balance(account_id, principal))
        holding = await self.store.find(account_id=account_id, states=ALLOCATING)
        return Allocation(account_id, balance_fen, tuple(holding))

    async def _check_capital(self, principal: Principal, account_id: str, capital_fen: int) -> None:
        """The capital must fit in the account's unallocated cash."""
        allocation = await self.allocation(principal, account_id)
        if capital_fen > allocation.unallocated_fen:
            raise ServiceError(
                "insufficient_unallocated_cash",
                f"capital: {from_fen(capital_fen)} CNY is more than the account's unallocated cash, "
                f"{from_fen(allocation.unallocated_fen)} CNY (balance {from_fen(allocation.balance_fen)} less "
                f"{from_fen(allocation.allocated_fen)} allocated to its instances that are not stopped)",
                status_code=422,
                capital=str(from_fen(capital_fen)),
                balance=str(from_fen(allocation.balance_fen)),
                allocated=str(from_fen(allocation.allocated_fen)),
                unallocated=str(from_fen(allocation.unallocated_fen)),
            )

    # --- changing -----------------------------------------------------------------------------------------------
    async def act(
        self,
        principal: Principal,
        instance_id: str,
        action: Action,
        *,
        cancel_open_orders: bool | None = None,
        replay: ReplaySpec | None = None,
    ) -> InstanceRecord:
        """start, pause, resume or stop: the runner first (its refusal leaves the state as it was), then the new
        state with its audit row and event, in one transaction."""
        if action is Action.FAIL:
            raise ValueError("an instance fails through fail(), not through the API")
        await self._actionable(principal, instance_id)
        async with self._lock(f"instance:{instance_id}"):
            instance = await self._actionable(principal, instance_id)  # as it is now that we hold the lock
            target = next_state(instance.state, action)
            after: dict[str, Any] = {"state": target.value}
            cancel = instance.cancel_open_orders_on_stop if cancel_open_orders is None else cancel_open_orders
            if action is Action.STOP:
                after["cancel_open_orders"] = cancel
            try:
                if action is Action.START:
                    await self.runner.start(instance, replay)
                elif action is Action.PAUSE:
                    await self.runner.pause(instance_id)
                elif action is Action.RESUME:
                    await self.runner.resume(instance)
                elif instance.state is not State.CREATED:  # stop; a created instance never ran: nothing to stop
                    await self.runner.stop(instance_id, cancel_open_orders=cancel)
            except ServiceError:
                raise  # the runner's refusal, as it gave it (e.g. 422 warmup_incomplete)
            except Exception as exc:
                log.exception("the runner failed", extra={"instance_id": instance_id, "action": action.value})
                raise ServiceError(
                    "runner_error",
                    f"the runner could not {action.value} the instance ({type(exc).__name__}); it is still "
                    f"{instance.state.value}",
                    status_code=500,
                ) from exc
            changed = replace(instance, state=target, error=None)
            try:
                stored = await self.store.transition(
                    instance_id,
                    from_state=instance.state,
                    to_state=target,
                    audit=Audit(principal.subject, DONE[action], {"state": instance.state.value}, after),
                    event=instance_event(DONE[action], changed),
                )
            except Exception:
                if action is Action.START:  # not recorded: the runner must not trade it
                    await self.runner.stop(instance_id, cancel_open_orders=True)
                raise
        if stored is None:
            if action is Action.START:
                await self.runner.stop(instance_id, cancel_open_orders=True)
            raise self._moved(instance, action, target)
        if action is Action.START:
            await self.runner.started(instance_id)
        await self.refresh_metrics()
        return stored

    def _moved(self, instance: InstanceRecord, action: Action, target: State) -> IllegalTransition:
        # The row was no longer in the state read under the lock: another process changed it first.
        return IllegalTransition(instance.state, action.value, target.value)

    async def update_params(self, principal: Principal, instance_id: str, raw: Mapping[str, Any]) -> InstanceRecord:
        """New parameters, validated, as a new version (the old ones are kept); only while the instance is paused or
        not yet started."""
        await self._actionable(principal, instance_id)
        async with self._lock(f"instance:{instance_id}"):
            instance = await self._actionable(principal, instance_id)
            check_params_editable(instance.state)
            params = self._params(self._strategy(instance.strategy), raw)
            before = {"params": instance.params, "params_version": instance.params_version}
            after = {"params": params, "params_version": instance.params_version + 1}
            stored = await self.store.update_params(
                instance_id,
                states=PARAMS_EDITABLE,
                from_version=instance.params_version,
                params=params,
                audit=Audit(principal.subject, "params_updated", before, after),
            )
        if stored is None:
            raise Conflict("instance_changed", f"strategy instance {instance_id} changed meanwhile: read it again")
        return stored

    async def delete(self, principal: Principal, instance_id: str) -> None:
        await self._actionable(principal, instance_id)
        async with self._lock(f"instance:{instance_id}"):
            instance = await self._actionable(principal, instance_id)
            check_deletable(instance.state)
            deleted = await self.store.delete(
                instance_id,
                from_state=instance.state,
                audit=Audit(principal.subject, "deleted", instance.snapshot(), None),
                event=instance_event("deleted", instance),
            )
        if not deleted:
            raise Conflict("instance_changed", f"strategy instance {instance_id} changed meanwhile: read it again")
        await self.refresh_metrics()

    # --- for the runner -------------------------------------------------------------------------------------------
    async def fail(self, instance_id: str, error: str, *, actor: str = RUNNER_ACTOR) -> InstanceRecord | None:
        """The runner's: the instance failed (`error`: the traceback, kept whole on the instance). None when it is
        not running or paused (already stopped, failed or deleted): nothing is written then."""
        async with self._lock(f"instance:{instance_id}"):
            instance = await self.store.get(instance_id)
            if instance is None or instance.state not in (State.RUNNING, State.PAUSED):
                return None
            target = next_state(instance.state, Action.FAIL)
            stored = await self.store.transition(
                instance_id,
                from_state=instance.state,
                to_state=target,
                audit=Audit(actor, "failed", {"state": instance.state.value}, {"state": target.value, "error": error}),
                event=instance_event("failed", replace(instance, state=target, error=error)),
                error=error,
            )
        if stored is not None:
            self.metrics.failed()
            log.error("strategy instance failed", extra={"instance_id": instance_id, "error": error[-2000:]})
            await self.refresh_metrics()
        return stored

    async def finished(self, instance_id: str, detail: str, *, actor: str = RUNNER_ACTOR) -> InstanceRecord | None:
        """The runner's: the instance has nothing more to trade (a replay played its last day): it stops. None when
        it is no longer running or paused."""
        async with self._lock(f"instance:{instance_id}"):
            instance = await self.store.get(instance_id)
            if instance is None or instance.state not in (State.RUNNING, State.PAUSED):
                return None
            target = next_state(instance.state, Action.STOP)
            stored = await self.store.transition(
                instance_id,
                from_state=instance.state,
                to_state=target,
                audit=Audit(actor, "stopped", {"state": instance.state.value}, {"state": target.value, "why": detail}),
                event=instance_event("stopped", replace(instance, state=target)),
            )
        await self.refresh_metrics()
        return stored

    async def reloaded(self, instance_id: str, detail: dict[str, Any], *, actor: str = RUNNER_ACTOR) -> None:
        """The runner's: the instance's strategy code was reloaded (`detail`: what changed, e.g. the file)."""
        instance = await self.store.get(instance_id)
        if instance is None:
            return
        await self.store.record_event(
            instance_id, Audit(actor, "reloaded", None, detail), instance_event("reloaded", instance)
        )

    async def refresh_metrics(self) -> None:
        """`lh_strategy_instances{state}` and `lh_strategy_instance_state{instance_id,state}` from the table (after
        every change this process makes, and every minute for the others'). A failure only leaves the gauges as they
        were."""
        try:
            states = await self.store.states()
        except Exception:
            log.warning("could not read the strategy instances' states for the metrics", exc_info=True)
            return
        self.metrics.counted(dict(Counter(states.values())))
        self.metrics.states(states)

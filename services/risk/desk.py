"""The risk desk: checks an order against the market rules, limits, and the account's position (a sell) or available
cash (a buy), records the decision, and only for an approved order signs an approval and hands the order to
execution. Fails closed: without market data (or the position of a sell, the cash of a buy) there is no approval.
A retry of an approved client_order_id is not checked again while it is the same decision: execution placed it
(whatever its age), or its answer was lost and the approval TTL has not run out; it is re-signed. A decision
execution refused is spent: a retry is decided afresh, every check again. An order of a strategy instance (only the
strategy service places one) is for its sleeve's account and is checked against the sleeve as well, the sleeve the
strategy service carries in the order (it is the authority on its instances' sleeves; risk reads nothing of it per
order: docs/order-path.md "Orders of a strategy instance"). No HTTP server code here; the ports to the data and
execution services are small adapters."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from services.risk.assess import equity_of, priced, recent_order, risk_state, rule_order
from services.risk.checks import (
    Holding,
    OrderIntent,
    Reason,
    ReasonCode,
    Sleeve,
    buy_cap,
    cash_checks,
    position_checks,
    quote_checks,
    session_limits_checks,
    sleeve_checks,
    sleeve_state_checks,
    static_checks,
)
from services.risk.events import order_denied, risk_alert
from services.risk.metrics import Outcome, RiskMetrics
from services.risk.rules import drawdown, effective, evaluate, evaluate_order
from services.risk.rules.base import Finding, Level, RuleConfig, TradingState, measuring_utilisation
from services.risk.rules.duplicates import DuplicatesConfig
from services.risk.schemas import CarriedSleeve, OrderRequest
from services.risk.state.activity import ActivityLog, MemoryActivity, fingerprint
from services.risk.state.keeper import BookKeeper
from services.risk.state.ports import BookUnavailable, BookView, Reservation, Verdict
from services.risk.store import Decision, ExecutionOutcome, Recorded, ScopedState, StatesMoved
from services.risk.trading_states import TradingStateSource, strictest, trading_state_reasons
from shared.core.domain import (
    PRICE_TICK,
    InvalidTsCode,
    OrderSide,
    OrderType,
    SecurityCode,
    from_fen,
    parse_ts_code,
    to_fen,
)
from shared.core.market.order_types import DEFAULT_MARKET_TYPE, order_type_error
from shared.core.market.orders import buy_reservation_fen
from shared.core.market.rules import on_tick
from shared.platform.approval import OrderTerms, sign_approval
from shared.platform.calendar import CalendarUnavailable, OrderSessions, TradingCalendar
from shared.platform.clock import EXCHANGE_TZ, OrderSession, market_today, no_session, utcnow
from shared.platform.errors import Forbidden, ServiceError, Unavailable
from shared.platform.events import Envelope
from shared.platform.http import ServiceDirectory
from shared.platform.internal_auth import (
    INTERNAL_HEADER,
    STRATEGY_SUBJECT,
    Principal,
    mint_internal_token,
)
from shared.platform.observability import current_correlation_id, new_id
from shared.platform.quotes import Quote, QuoteSource, QuoteUnavailable, quote_ahead_of, quotes_of
from shared.platform.roles import Role

log = logging.getLogger(__name__)

# Roles that may not place orders (the gateway checks too; risk does not rely on it).
# Who may place orders: people with a trading role. Viewers watch; a service acting as itself has no account.


class AccountBooks(Protocol):
    """Risk's hot books of accounts (services/risk/state): what an account holds and has reserved, read from memory
    or Redis, never asked of execution per order; and the atomic reservation of an approved order."""

    async def view(self, account_id: str, session: date, principal: Principal) -> BookView | None:
        """The account's book for an order of `session` placed by `principal`; None when execution has no such
        account. Raises BookUnavailable."""

    async def reserve(
        self,
        account_id: str,
        client_order_id: str,
        *,
        ts_code: str,
        side: OrderSide,
        qty: int,
        cap_fen: int,
        need_fen: int,
        session: date,
        decided_at: datetime,
    ) -> Reservation:
        """Re-check the cash (a buy) or sellable shares (a sell) and reserve them, in one atomic step."""

    async def release(self, account_id: str, client_order_id: str) -> None:
        """Drop the reservation of an order execution refused."""


# Codes with which execution refuses an approved order the account cannot afford (checked atomically there):
# passed to the caller as they are, with execution's status (422).
EXECUTION_REFUSALS = frozenset(
    {"insufficient_position", "insufficient_cash", "price_cap_unknown", "limits_unknown", "no_session"}
)
# Codes of execution's 503s that say why it cannot take the order now: relayed as they are (broker_unavailable with
# no order id: the account's QMT bridge, or its MiniQMT, is away and nothing was stored or sent).
EXECUTION_UNAVAILABLE_CODES = frozenset({"market_data_unavailable", "calendar_unavailable", "broker_unavailable"})
# Execution's own dependency down (shared.platform.errors.dependency_failure): relayed with its code. The order may
# or may
# not be stored (a COMMIT whose answer was lost may have landed): the client sends it again with the same
# client_order_id, which either finds it or places it once.
EXECUTION_DEPENDENCY_CODES = frozenset({"database_unavailable", "cache_unavailable", "bus_unavailable"})


class EffectiveRules(Protocol):
    @property
    def configs(self) -> Mapping[str, RuleConfig]: ...

    @property
    def versions(self) -> Mapping[str, int | None]: ...


class RuleSource(Protocol):
    async def effective_for(self, account_id: str, instance_id: str | None) -> EffectiveRules:
        """The rules' settings for an order of the account (and instance): the strictest of the global, account and
        instance rule sets, with the versions they came from. Raises when they cannot be read."""


@dataclass(frozen=True)
class _Defaults:
    configs: Mapping[str, RuleConfig]
    versions: Mapping[str, int | None]


class DefaultRules:
    """Every rule with its defaults (no rule set stored): tests of the desk, and a risk without rule sets."""

    def __init__(self) -> None:
        self._defaults = _Defaults(effective(), {"global": None, "account": None, "instance": None})

    async def effective_for(self, account_id: str, instance_id: str | None) -> EffectiveRules:
        return self._defaults


class ExecutionPort(Protocol):
    async def submit_many(
        self, bodies: Sequence[dict[str, Any]], principal: Principal
    ) -> list[tuple[int, dict[str, Any]]]:
        """Execution's answer to each submission of a batch, in order, as `submit` gives one; raises Unavailable
        when execution did not answer (each outcome unknown)."""
        ...

    async def submit(self, body: dict[str, Any], principal: Principal) -> tuple[int, dict[str, Any]]:
        """POST the approved order to execution as `principal`; (status, JSON body). Raises Unavailable."""


class DecisionLog(Protocol):
    async def record(self, decision: Decision, event: Envelope | None = None, *, alerts: Sequence[Envelope] = ()) -> (
        None
    ):  # fmt: skip
        """The decision and, in the same transaction, the events that report it (a denial's, the rules' alerts)."""

    async def replayable_for(
        self,
        account_id: str | None,
        client_order_id: str,
        *,
        unknown_since: datetime,
        strategy_instance_id: str | None = None,
    ) -> Decision | None:
        """The approved decision a retry of this client_order_id (of the account's people, or else of the strategy
        instance) is answered with: one execution placed, or one whose outcome is unknown made at or after
        `unknown_since`; never one execution refused."""

    async def record_outcome(self, decision_id: str, outcome: ExecutionOutcome) -> None:
        """What execution answered for a forwarded decision (PLACED and REFUSED are final)."""

    async def note_outcome(self, decision_id: str, outcome: ExecutionOutcome) -> None:
        """PLACED or UNKNOWN, which may be written after the order is answered (a lost one only makes a retry
        within the approval TTL replay the decision, one after it be checked afresh)."""


class Preflight(Protocol):
    async def replayable_and_states(
        self,
        account_id: str | None,
        client_order_id: str,
        *,
        unknown_since: datetime,
        strategy_instance_id: str | None = None,
        state_account_id: str,
    ) -> tuple[Decision | None, list[ScopedState]]:
        """`DecisionLog.replayable_for` and `TradingStateSource.trading_states_of(state_account_id,
        strategy_instance_id)` in one read (one transaction of the store both are in). Raises when it cannot read."""


class BatchLog(Protocol):
    """The decision log's reads and writes of a batch (`place_many`): the replay lookup and the trading states in one
    read for every item, and the decisions recorded together before any is sent (the app's RiskStore)."""

    async def replayable_many_and_states(
        self,
        account_id: str | None,
        client_order_ids: Sequence[str],
        *,
        unknown_since: datetime,
        strategy_instance_id: str | None = None,
        state_account_id: str,
    ) -> tuple[dict[str, Decision], list[ScopedState]]:
        """`Preflight.replayable_and_states` of several client_order_ids: each one's replayable decision (those that
        have one) and the trading states. Raises when it cannot read."""

    async def record_many(
        self, records: Sequence[Recorded], *, expected_states: tuple[str, str | None, list[ScopedState]] | None = None
    ) -> None:
        """The decisions and their events in one transaction; StatesMoved (nothing written) when the trading states
        read in it are not `expected_states`' (account, instance, states)."""


@dataclass
class _Batch:
    """`place_many`'s items read and recorded together: the replay lookup and the trading states read once before the
    first is decided, the decisions kept here until they are recorded together (before any is sent)."""

    account_id: str | None  # whose decisions a retry is looked up among (None: an instance's)
    instance_id: str | None
    state_account: str  # the account whose trading state applies
    earlier: dict[str, Decision]
    states: list[ScopedState]
    records: list[Recorded] = field(default_factory=list)
    alerts: list[Envelope] = field(default_factory=list)
    outcomes: list[tuple[Outcome, list[str]]] = field(default_factory=list)  # counted once recorded


class ExecutionAccounts:
    """Opens a trader's account at execution the first time they trade: execution's `GET /v1/account`, asked as
    the caller, opens the account of a trader seen for the first time (with the paper opening cash) only when it is
    the caller's own. An account a service names (a strategy instance's) must exist already."""

    def __init__(self, services: ServiceDirectory, internal_secret: str) -> None:
        self.services = services
        self.internal_secret = internal_secret

    async def open(self, account_id: str, principal: Principal) -> None:
        if principal.is_service or account_id != (principal.account_id or principal.subject):
            return
        headers = {INTERNAL_HEADER: mint_internal_token(self.internal_secret, principal)}
        try:
            await self.services.client("execution").get_json("/v1/account", headers=headers)
        except ServiceError as exc:
            raise BookUnavailable(f"execution could not open account {account_id}: {exc.code}: {exc.message}") from exc


class HotBooks:
    """The desk's books: the keeper's (seeded from execution's snapshot on first use, kept by its events), opening
    a trader's account at execution first when it has none."""

    def __init__(self, keeper: BookKeeper, accounts: ExecutionAccounts) -> None:
        self.keeper = keeper
        self.accounts = accounts

    async def view(self, account_id: str, session: date, principal: Principal) -> BookView | None:
        async def opener() -> None:
            await self.accounts.open(account_id, principal)

        return await self.keeper.view(account_id, session, opener=opener)

    async def reserve(
        self,
        account_id: str,
        client_order_id: str,
        *,
        ts_code: str,
        side: OrderSide,
        qty: int,
        cap_fen: int,
        need_fen: int,
        session: date,
        decided_at: datetime,
    ) -> Reservation:
        return await self.keeper.book.reserve(
            account_id, client_order_id, ts_code=ts_code, side=side, qty=qty, cap_fen=cap_fen, need_fen=need_fen,
            session=session, decided_at=decided_at,
        )  # fmt: skip

    async def release(self, account_id: str, client_order_id: str) -> None:
        await self.keeper.book.release(account_id, client_order_id)


SUBMISSION_S = 0.1  # what one order of a batch may take execution (admission, the broker's answer), at most


class ExecutionService:
    """Execution's `POST /v1/orders`, called with the caller's identity (the approval binds the account)."""

    def __init__(self, services: ServiceDirectory, internal_secret: str) -> None:
        self.services = services
        self.internal_secret = internal_secret

    async def submit(self, body: dict[str, Any], principal: Principal) -> tuple[int, dict[str, Any]]:
        headers = {INTERNAL_HEADER: mint_internal_token(self.internal_secret, principal)}
        response = await self.services.client("execution").request("POST", "/v1/orders", json=body, headers=headers)
        try:
            payload = response.json()
        except ValueError:
            payload = {"message": response.text[:200]}
        return response.status_code, payload if isinstance(payload, dict) else {"body": payload}

    async def submit_many(
        self, bodies: Sequence[dict[str, Any]], principal: Principal
    ) -> list[tuple[int, dict[str, Any]]]:
        """Execution's `POST /v1/order-submissions`: each item's status and body as `POST /v1/orders` answers it.
        An answer that is not the batch's (an error for the whole request) is every item's."""
        headers = {INTERNAL_HEADER: mint_internal_token(self.internal_secret, principal)}
        client = self.services.client("execution")
        response = await client.request(
            "POST", "/v1/order-submissions", json={"orders": list(bodies)}, headers=headers,
            timeout=client.batch_timeout_s(len(bodies), SUBMISSION_S),
        )  # fmt: skip
        try:
            payload = response.json()
        except ValueError:
            payload = {"message": response.text[:200]}
        items = payload.get("items") if isinstance(payload, dict) and response.status_code == 200 else None
        if not isinstance(items, list) or len(items) != len(bodies):
            whole = payload if isinstance(payload, dict) else {"body": payload}
            status = response.status_code if response.status_code != 200 else 502
            return [(status, whole) for _ in bodies]
        replies: list[tuple[int, dict[str, Any]]] = []
        for item in items:
            if item.get("order") is not None:
                replies.append((int(item["status_code"]), item["order"]))
            else:
                error = {"code": item.get("code"), "message": item.get("message")}
                if item.get("details"):
                    error["details"] = item["details"]
                replies.append((int(item["status_code"]), error))
        return replies


@dataclass(frozen=True)
class Placement:
    """The answer to a placement: HTTP status and body."""

    status_code: int
    body: dict[str, Any]


@dataclass(frozen=True)
class _Pending:
    """An approval to send to execution: a new one (with what `_forwarded` needs after execution's answer), or an
    earlier one replayed for a retry (`intent` None: nothing to count again)."""

    decision: Decision
    intent: OrderIntent | None = None
    trade_date: date | None = None
    claimed: str | None = None  # the duplicate rule's fingerprint it claimed


class RiskDesk:
    def __init__(
        self,
        *,
        approval_secret: str,
        approval_ttl_s: int,
        max_order_value: Decimal,
        quotes: QuoteSource,
        books: AccountBooks,
        execution: ExecutionPort,
        decisions: DecisionLog,
        metrics: RiskMetrics,
        clock: Callable[[], datetime] = utcnow,
        market_session: Callable[[], date | None] = no_session,
        trading_states: TradingStateSource,
        calendar: TradingCalendar | None = None,
        rules: RuleSource | None = None,
        activity: ActivityLog | None = None,
        on_breach: Callable[[str, TradingState, str], Awaitable[None]] | None = None,
        preflight: Preflight | None = None,
        batch_log: BatchLog | None = None,
    ) -> None:
        self.approval_secret = approval_secret
        self.approval_ttl_s = approval_ttl_s  # how long an approval whose forwarding outcome is unknown is replayed
        self.max_order_value = max_order_value
        self.quotes = quotes
        self.books = books
        self.rules: RuleSource = rules or DefaultRules()  # the rule sets (global, account, instance), versioned
        self.activity: ActivityLog = activity or MemoryActivity()  # counters, recent orders, equity marks
        self.on_breach = on_breach  # records a trading state a loss limit calls for (the kill switch's store)
        self.execution = execution
        self.decisions = decisions
        self.trading_states = trading_states  # the kill switch's states (services/risk/trading_states.py)
        # The replay lookup and the trading states in one read, when `decisions` and `trading_states` are one store
        # (the app's RiskStore): one transaction per order fewer. None: each read on its own.
        self.preflight = preflight
        # A batch's reads and records together (the app's RiskStore). None: each item's on its own.
        self.batch_log = batch_log
        self.metrics = metrics
        self.clock = clock
        # The market clock's replayed session (None on the real clock): quotes are asked as of it, and it is the
        # trading day fees are reckoned for.
        self.market_session = market_session
        # On the real clock, the session an order placed now is for (its T+1, fee date and price limits), from the
        # data service's trade calendar kept in memory. None: the exchange date of now (tests of the checks only).
        self.sessions = OrderSessions(calendar) if calendar is not None else None

    async def place(
        self,
        request: OrderRequest,
        principal: Principal,
        *,
        parent_id: str | None = None,
        replaces_order_id: str | None = None,
    ) -> Placement:
        """`parent_id`: the conditional order (held by execution) whose child this is; `replaces_order_id`: the
        amended order this one replaces (docs/order-path.md "Amending an order"); each recorded with the decision."""
        decided = await self._decide(request, principal, parent_id=parent_id, replaces_order_id=replaces_order_id)
        if isinstance(decided, Placement):
            return decided
        placement = await self._forward(decided.decision, principal)
        await self._forwarded(decided, placement)
        return placement

    async def place_many(
        self,
        requests: Sequence[OrderRequest],
        principal: Principal,
        *,
        stop: Callable[[], bool] | None = None,
        together: bool = True,
    ) -> list[Placement | Exception | None]:
        """Orders of one batch (a strategy instance's round, `POST /v1/order-batches`), each decided exactly as by
        `place` and in the order given — every check, its reservation in the hot book (so each later item is
        checked with the earlier ones' cash and shares taken), its decision recorded — and the approved ones then
        sent to execution in one request (`POST /v1/order-submissions`) instead of one each. The order-rate rule
        counts the batch's earlier approvals as sent in the same second. An item answered 503 (risk or a
        dependency unavailable) stops the batch: the items after it are not decided (None), so a later order never
        goes ahead of an earlier one; those decided before it are still sent. An exception deciding an item (what
        `place` would raise) is that item's answer and stops the batch the same way, as does `stop()` turning true
        before an item is decided (the caller lost its claim to the batch). Each other answer is the one `place`
        gives for that order; an exception taking execution's answer to one item (its refusal not recorded) is that
        item's, the others' answers are taken all the same.

        With a `batch_log` (`together`), the items' replay lookups and trading states are read once before the first
        is decided and their decisions recorded in one transaction once all are decided, before any is sent; the
        trading states are read again in it, and if they moved (an admin's halt, a loss limit reached by an item),
        nothing is recorded, every reservation is given back and the batch is decided again item by item, each
        reading the states itself. A record that fails answers every decided item with its error (nothing sent)."""
        answers: list[Placement | Exception | None] = [None] * len(requests)
        pending: list[tuple[int, _Pending]] = []
        batch: _Batch | None = None
        if together and self.batch_log is not None:
            try:
                batch = await self._batch(requests, principal)
            except Exception as exc:  # the read every item would have made first: the first answers it
                answers[0] = exc
                return answers
        approved = 0  # the batch's new approvals so far: they go out with the next order (a replay was counted before)
        for index, request in enumerate(requests):
            if stop is not None and stop():
                break
            try:
                decided = await self._decide(request, principal, batch_approved=approved, batch=batch)
            except Exception as exc:
                answers[index] = exc
                break
            if isinstance(decided, _Pending):
                pending.append((index, decided))
                approved += decided.intent is not None
                continue
            answers[index] = decided
            if decided.status_code >= 500:
                break
        if batch is not None and batch.records:
            # Recorded together before any is sent, under the trading states they were decided under: when those
            # moved meanwhile (the kill switch, a loss limit), nothing is recorded and the batch is decided again
            # item by item.
            assert self.batch_log is not None
            expected = (batch.state_account, batch.instance_id, batch.states)
            try:
                await self.batch_log.record_many(batch.records, expected_states=expected)
            except StatesMoved:
                await self._undo(pending)
                return await self.place_many(requests, principal, stop=stop, together=False)
            except Exception as exc:
                await self._undo(pending)
                taken = {index for index, _ in pending} | {i for i, a in enumerate(answers) if a is not None}
                for _ in taken:  # each decision's record failed, as a single order's would count it
                    self.metrics.decided(Outcome.ERROR)
                return [exc if index in taken else None for index in range(len(requests))]
            for outcome, denied in batch.outcomes:
                self._count(None, outcome, denied if outcome is Outcome.REJECTED else None)
            self.metrics.alerted(batch.alerts)
        if pending:
            bodies = [self._submission(p.decision) for _, p in pending]
            try:
                replies = await self.execution.submit_many(bodies, principal)
            except Unavailable as exc:
                for index, p in pending:
                    answers[index] = await self._unreached(p.decision, exc.message)
            else:
                for (index, p), (status, payload) in zip(pending, replies, strict=True):
                    try:
                        placement = await self._answered(p.decision, status, payload)
                        await self._forwarded(p, placement)
                    except Exception as exc:  # (a refusal whose record failed: the caller sends it again)
                        answers[index] = exc
                        if p.claimed is not None and 400 <= status < 500:
                            await self._unclaim(p.decision.account_id, p.claimed)  # refused: no order to duplicate
                        continue
                    answers[index] = placement
        return answers

    async def _batch(self, requests: Sequence[OrderRequest], principal: Principal) -> _Batch | None:
        """The batch's replay lookups and trading states read once, when its items are one account's or one
        instance's (None: each item reads its own, as does a batch with an item `check_request` refuses)."""
        assert self.batch_log is not None
        keys: set[tuple[str | None, str | None, str]] = set()
        for request in requests:
            try:
                sleeve = check_request(request, principal)
            except ServiceError:
                return None
            instance_id = request.strategy_instance_id
            account_id = None if instance_id else (principal.account_id or principal.subject)
            state_account = sleeve.account_id if sleeve is not None else account_id
            assert state_account is not None
            keys.add((account_id, instance_id, state_account))
        if len(keys) != 1:
            return None
        ((account_id, instance_id, state_account),) = keys
        earlier, states = await self.batch_log.replayable_many_and_states(
            account_id, [r.client_order_id for r in requests],
            unknown_since=self.clock() - timedelta(seconds=self.approval_ttl_s),
            strategy_instance_id=instance_id, state_account_id=state_account,
        )  # fmt: skip
        return _Batch(account_id, instance_id, state_account, earlier, states)

    async def _undo(self, pending: list[tuple[int, _Pending]]) -> None:
        """The reservations and duplicate claims of decisions that will not be sent, given back."""
        for _, p in pending:
            if p.intent is None:
                continue  # a replayed decision: it reserved nothing here
            await self._release(p.decision.account_id, p.decision.client_order_id)
            if p.claimed is not None:
                await self._unclaim(p.decision.account_id, p.claimed)

    async def _forwarded(self, pending: _Pending, placement: Placement) -> None:
        """After execution's answer to a new approval: the order counted (it took it), or the duplicate claim given
        back (it refused it: no order to be a duplicate of). Nothing for a replayed decision."""
        if pending.intent is None or pending.trade_date is None:
            return
        if placement.status_code in (200, 201):
            await self._note(pending.decision.account_id, pending.decision.client_order_id, pending.intent,
                             pending.trade_date)  # fmt: skip
        elif 400 <= placement.status_code < 500 and pending.claimed is not None:
            await self._unclaim(pending.decision.account_id, pending.claimed)

    async def _decide(
        self,
        request: OrderRequest,
        principal: Principal,
        *,
        parent_id: str | None = None,
        replaces_order_id: str | None = None,
        batch_approved: int = 0,
        batch: _Batch | None = None,
    ) -> Placement | _Pending:
        """The order decided and its decision recorded: the final answer (refused, unavailable, a conflict), or the
        approval to send to execution (a new one, or an earlier one replayed for a retry). `batch_approved`: the
        approvals of the same batch before it, not yet sent (the order-rate rule counts them)."""
        instance_id = request.strategy_instance_id
        sleeve = check_request(request, principal)
        request = _typed(request)  # a market order naming no type: counterparty best

        # A retry after a lost answer: the order was approved (and may be filled) already. Checking it again could
        # answer "rejected" or "unavailable" for an order execution holds, e.g. a sell whose shares it sold. Only
        # while the approval could have been admitted (its TTL) when execution's answer is unknown; never once
        # execution refused it (then the retry is a new order, checked afresh). An instance's retry is found by its
        # instance, before its sleeve is checked: a sleeve stopped since then does not undo an order placed.
        unknown_since = self.clock() - timedelta(seconds=self.approval_ttl_s)
        account_id: str | None = None if instance_id else (principal.account_id or principal.subject)
        states: list[ScopedState] | None = None  # the trading states, when read with the replay lookup
        if batch is not None:  # read for the whole batch (`place_many`)
            earlier, states = batch.earlier.get(request.client_order_id), batch.states
        elif self.preflight is not None:
            state_account = sleeve.account_id if sleeve is not None else account_id
            assert state_account is not None
            earlier, states = await self.preflight.replayable_and_states(
                account_id, request.client_order_id, unknown_since=unknown_since, strategy_instance_id=instance_id,
                state_account_id=state_account,
            )  # fmt: skip
        else:
            earlier = await self.decisions.replayable_for(
                account_id, request.client_order_id, unknown_since=unknown_since, strategy_instance_id=instance_id
            )
        if earlier is not None:
            return self._replay(earlier, request)

        # The session the order is for: its T+1, fee date and price limits (on a replay clock, the replayed one).
        unavailable: list[str] = []
        session = self.market_session()
        order_session, session_reason = await self._order_session(session, unavailable)
        trade_date = order_session.day if order_session is not None else market_today(self.clock(), session)

        if sleeve is not None:
            account_id = sleeve.account_id  # the instance trades in its owner's account
        assert account_id is not None

        book = _OrderBook(self.books, account_id, trade_date, principal)
        reservation: tuple[int, int] | None = None  # (cap_fen, need_fen) of an order that reserves if approved
        intent = OrderIntent(request.ts_code, request.side, request.order_type, request.qty, request.price)
        security, reasons = static_checks(intent, max_order_value=self.max_order_value)
        if session_reason is not None:
            reasons.append(session_reason)
        if sleeve is not None:
            reasons.extend(sleeve_state_checks(sleeve))
        state_reasons, governing = await self._trading_state(
            intent, account_id, instance_id, sleeve, book, unavailable, states
        )
        reasons.extend(state_reasons)
        if security is not None:
            intent = OrderIntent(security.ts_code, request.side, request.order_type, request.qty, request.price)
            quote, quote_known = await self._quote_checks(intent, session, order_session, reasons, unavailable)
            # Buys: the available cash must cover the order at its price cap, with fees; sells: no short selling,
            # T+1. Both from the account's hot book (no read of execution per order); reserved atomically below.
            # Execution checks again under its account lock when it admits the order.
            priced = quote_known or request.order_type is OrderType.LIMIT
            if (request.side is OrderSide.BUY and priced) or request.side is OrderSide.SELL:
                view = await book.get(unavailable)
                if view is not None and request.side is OrderSide.BUY:
                    available = from_fen(view.available_fen)
                    reasons.extend(cash_checks(intent, quote, available, trade_date=trade_date))
                    cap = buy_cap(intent, quote)
                    if isinstance(cap, tuple) and on_tick(cap[0]):  # (off the tick: refused for it already)
                        cap_fen = to_fen(cap[0])
                        reservation = (cap_fen, buy_reservation_fen(intent.qty, cap_fen, trade_date))
                elif view is not None:
                    holding = view.holdings.get(security.ts_code)
                    held = None if holding is None else Holding(
                        ts_code=holding.ts_code, qty=holding.qty, sellable_qty=holding.sellable_qty
                    )  # fmt: skip
                    reasons.extend(position_checks(intent, security, held))
                    reservation = (0, 0)
            # An instance's order: its sleeve's cash or shares too, with the same arithmetic as the account's.
            if sleeve is not None:
                reasons.extend(sleeve_checks(intent, quote, sleeve, trade_date=trade_date))
        judged: _Judged | None = None
        if security is not None and quote is not None and not unavailable:
            view = await book.get(unavailable)
            if view is not None:
                judged = await self._rules(
                    intent, security, quote, view, account_id, instance_id, trade_date, session,
                    request.client_order_id, unavailable, batch_approved,
                )  # fmt: skip
        if judged is not None:
            known = {r.code for r in reasons}
            reasons.extend(r for r in judged.reasons if r.code not in known)
            if judged.breach is not None and (governing is None or _stricter(judged.breach, governing.state)):
                # The losses rule moved the account's trading state: the order is judged by the new state too.
                moved = await self._breach(account_id, judged)
                reasons.extend(await self._state_reasons(intent, moved, sleeve, book, unavailable))
        claimed: str | None = None
        if not reasons and not unavailable and judged is not None and judged.duplicate_window_s:
            # Of identical orders sent at once, one passes: its fingerprint is claimed atomically for the window.
            claimed = await self._claim(
                account_id, request.client_order_id, intent, trade_date, judged.duplicate_window_s, reasons, unavailable
            )
        if not reasons and not unavailable and reservation is not None:
            # The decision and its reservation are one atomic step: concurrent orders never spend the same cash or
            # shares twice (the store re-checks them as it reserves).
            reasons.extend(
                await self._reserve(account_id, request.client_order_id, intent, reservation, trade_date, unavailable)
            )
        if claimed is not None and (reasons or unavailable):
            await self._unclaim(account_id, claimed)
        if unavailable:
            reasons.append(
                Reason(ReasonCode.RISK_UNAVAILABLE, f"risk cannot check the order: {'; '.join(unavailable)}")
            )

        decision = Decision(
            decision_id=new_id(),
            client_order_id=request.client_order_id,
            account_id=account_id,
            ts_code=intent.ts_code,
            side=request.side.value,
            order_type=request.order_type.value,
            qty=request.qty,
            price=request.price,
            approved=not reasons,
            reasons=[r.as_dict() for r in reasons],
            created_at=self.clock(),
            correlation_id=current_correlation_id(),
            strategy_instance_id=instance_id,
            paper_fill=request.paper_fill,
            rule_check=_record(judged, request.sleeve, parent_id, replaces_order_id),
            market_type=request.market_type,
            time_in_force=request.time_in_force,
        )
        alerts = [] if judged is None else judged.alerts(decision)
        # Before anything leaves risk; a refusal is also a fact on the bus (risk.order.denied, through the outbox),
        # and so is every rule's warning and breach (risk.alert).
        denial = None if decision.approved else order_denied(decision)
        if batch is not None:  # recorded with the batch's others, before any is sent (`place_many`)
            batch.records.append(Recorded(decision, denial, tuple(alerts)))
            batch.alerts.extend(alerts)
        else:
            try:
                await self.decisions.record(decision, denial, alerts=alerts)
            except Exception:
                self.metrics.decided(Outcome.ERROR)
                if decision.approved:
                    await self._release(account_id, request.client_order_id)
                raise
            self.metrics.alerted(alerts)

        # counted once recorded (a batch's: when the batch's decisions are)
        counted = batch.outcomes if batch is not None else None
        if unavailable and len(reasons) == 1:
            # Nothing else was wrong: the order might be fine, but risk cannot tell. Fail closed, retryable.
            self._count(counted, Outcome.ERROR)
            return _refused(503, "risk_unavailable", reasons[0].message, decision)
        if reasons:
            self._count(counted, Outcome.REJECTED, [r.code for r in reasons])
            return _refused(422, "order_rejected", "; ".join(r.message for r in reasons), decision)
        self._count(counted, Outcome.APPROVED)
        return _Pending(decision, intent, trade_date, claimed)

    def _count(
        self, held: list[tuple[Outcome, list[str]]] | None, outcome: Outcome, denied: list[str] | None = None
    ) -> None:
        """A decision's outcome in the metrics (and a refusal's reasons), or held with its batch's until recorded."""
        if held is not None:
            held.append((outcome, denied or []))
            return
        self.metrics.decided(outcome)
        if denied is not None:
            self.metrics.denied(denied)

    async def _quote_checks(
        self,
        intent: OrderIntent,
        session: date | None,
        order_session: OrderSession | None,
        reasons: list[Reason],
        unavailable: list[str],
    ) -> tuple[Quote | None, bool]:
        """The order's quote (that of its session) and the checks against it (known, not suspended, the session's
        price limits, a market order's value) added to `reasons`: (the quote, whether it is known and of the order's
        session). A quote that cannot be read adds why to `unavailable`."""
        code = intent.ts_code
        try:
            quote = await (self.quotes.quote(code) if session is None else self.quotes.quote(code, session))
            if (
                quote is not None
                and order_session is not None
                and quote_ahead_of(quote.next_trade_date, quote.last_trade_date, order_session.day)
            ):
                # the store is past the order's session (a shifted clock over history): that session's quote
                quote = await self.quotes.quote(code, order_session.day)
        except QuoteUnavailable as exc:
            unavailable.append(str(exc))
            log.warning("risk cannot check an order", extra={"ts_code": code, "error": str(exc)})
            return None, False
        limits = [] if order_session is None else session_limits_checks(intent, quote, order_session)
        reasons.extend(limits)
        if limits:
            # not against another session's limits, nor a market buy's cash at another session's limit-up
            checked = None if quote is None else quote.model_copy(update={"limit_up": None, "limit_down": None})
            reasons.extend(quote_checks(intent, checked, max_order_value=self.max_order_value))
            return None, False
        reasons.extend(quote_checks(intent, quote, max_order_value=self.max_order_value))
        return quote, True

    async def precheck(self, request: OrderRequest, principal: Principal, *, own_unfilled: int = 0) -> Placement:
        """An amend's new terms checked before its original is cancelled (`POST /v1/replacement-orders` with
        `check_only`; docs/order-path.md "Amending an order"): the checks of an order that need no reservation — the
        code, the tick, a buy's lots, the value, the session's price limits, the order-only rules (the exchange's
        maximum qty and price cage, order limits, liquidity, codes), and a sell's sellable shares counting
        `own_unfilled` (the original's unfilled shares, which its cancel frees) as the account's. Nothing is recorded
        or reserved; cash is decided with the replacement itself. 200 `{"checked": true}`, 422 `order_rejected` with
        the reasons (each naming its `field`), 503 `risk_unavailable`."""
        request = _typed(request)
        account_id = principal.account_id or principal.subject
        unavailable: list[str] = []
        session = self.market_session()
        order_session, session_reason = await self._order_session(session, unavailable)
        trade_date = order_session.day if order_session is not None else market_today(self.clock(), session)
        intent = OrderIntent(request.ts_code, request.side, request.order_type, request.qty, request.price)
        security, reasons = static_checks(intent, max_order_value=self.max_order_value)
        if session_reason is not None:
            reasons.append(session_reason)
        if security is not None:
            intent = OrderIntent(security.ts_code, request.side, request.order_type, request.qty, request.price)
            quote, _known = await self._quote_checks(intent, session, order_session, reasons, unavailable)
            if quote is not None:
                try:
                    effective = await self.rules.effective_for(account_id, None)
                except Exception as exc:  # without the rule sets there is no answer
                    log.warning("risk cannot read its rule sets", extra={"account": account_id, "error": repr(exc)})
                    unavailable.append(f"the rule sets cannot be read ({type(exc).__name__})")
                else:
                    order = rule_order(
                        ts_code=security.ts_code, board=security.board, side=intent.side, order_type=intent.order_type,
                        qty=intent.qty, price=intent.price, quote=quote, at=self.clock(), session=trade_date,
                    )  # fmt: skip
                    known = {r.code for r in reasons}
                    findings = evaluate_order(order, effective.configs)
                    reasons.extend(
                        Reason(f.code, f.message) for f in findings if f.level is Level.DENY and f.code not in known
                    )
            if request.side is OrderSide.SELL:
                view = await _OrderBook(self.books, account_id, trade_date, principal).get(unavailable)
                if view is not None:
                    holding = view.holdings.get(security.ts_code)
                    qty = 0 if holding is None else holding.qty
                    sellable = (0 if holding is None else holding.sellable_qty) + own_unfilled
                    held = Holding(ts_code=security.ts_code, qty=qty, sellable_qty=min(sellable, qty))
                    reasons.extend(position_checks(intent, security, held))
        answer: dict[str, Any] = {"checked": True, "reasons": [dict(r.as_dict(), field=_field(r)) for r in reasons]}
        if reasons:
            return Placement(422, {"code": "order_rejected", "message": "; ".join(r.message for r in reasons),
                                   **answer})  # fmt: skip
        if unavailable:
            message = f"risk cannot check the order: {'; '.join(unavailable)}"
            return Placement(503, {"code": ReasonCode.RISK_UNAVAILABLE.value, "message": message})
        return Placement(200, answer)

    async def _trading_state(
        self,
        intent: OrderIntent,
        account_id: str,
        instance_id: str | None,
        sleeve: Sleeve | None,
        book: _OrderBook,
        unavailable: list[str],
        states: list[ScopedState] | None = None,
    ) -> tuple[list[Reason], ScopedState | None]:
        """The kill switch: the strictest trading state of global, the account and the instance, read per order from
        the database every risk process shares (one query by primary key), so a change holds at once everywhere
        (`states`: as read with the replay lookup). Reducing reads the position of a sell (the account's, and the
        sleeve's if less). Unreadable: fail closed."""
        try:
            if states is None:
                states = await self.trading_states.trading_states_of(account_id, instance_id)
            governing = strictest(states)
        except Exception as exc:  # the database: without the state there is no approval
            log.warning("risk cannot read the trading states", extra={"account": account_id, "error": repr(exc)})
            unavailable.append(f"the trading states cannot be read ({type(exc).__name__})")
            return [], None
        return await self._state_reasons(intent, governing, sleeve, book, unavailable), governing

    async def _state_reasons(
        self,
        intent: OrderIntent,
        governing: ScopedState | None,
        sleeve: Sleeve | None,
        book: _OrderBook,
        unavailable: list[str],
    ) -> list[Reason]:
        """Why the governing trading state refuses the order: reducing reads the position of a sell (the
        account's, and the sleeve's if less)."""
        code = _canonical_code(intent.ts_code)
        held: int | None = None
        if governing is not None and governing.state == TradingState.REDUCING and intent.side is OrderSide.SELL:
            view = await book.get(unavailable)
            if view is None:
                return []
            holding = view.holdings.get(code)
            held = 0 if holding is None else holding.qty
            if sleeve is not None:
                own = sleeve.holding(code)
                held = min(held, 0 if own is None else own.qty)
        return trading_state_reasons(replace(intent, ts_code=code), governing, held)

    async def _rules(
        self,
        intent: OrderIntent,
        security: SecurityCode,
        quote: Quote,
        view: BookView,
        account_id: str,
        instance_id: str | None,
        trade_date: date,
        replayed: date | None,
        client_order_id: str,
        unavailable: list[str],
        batch_approved: int = 0,
    ) -> _Judged | None:
        """The configured rules (services/risk/rules) over the order and the account's hot state: every finding
        kept; the denials as reasons, the warnings as alerts; a loss limit breached moves the trading state."""
        try:
            effective = await self.rules.effective_for(account_id, instance_id)
        except Exception as exc:  # without the rule sets there is no approval
            log.warning("risk cannot read its rule sets", extra={"account": account_id, "error": repr(exc)})
            unavailable.append(f"the rule sets cannot be read ({type(exc).__name__})")
            return None
        configs = dict(effective.configs)
        if instance_id is not None:
            # A strategy instance's orders are deterministic per (instance, bar, sequence): the same order twice is
            # its strategy's intent (a replayed market moves faster than the window), never a double click.
            configs["duplicates"] = DuplicatesConfig(enabled=False)
        duplicates = configs.get("duplicates")
        window = duplicates.window_s if isinstance(duplicates, DuplicatesConfig) and duplicates.enabled else None
        # a security without a quote is valued at 0: the smaller equity is the stricter
        codes = sorted(set(view.holdings) | {o.ts_code for o in view.open_orders})
        quotes = await quotes_of(self.quotes, codes, replayed)
        equity = equity_of(view, quotes)
        known = priced(view, quotes)  # a holding without a price: its equity, its P&L and its marks are not known
        now = self.clock()  # the market's time: the exchange's windows
        sent = utcnow()  # the wall's: order rates and duplicates count what is sent per real second
        try:
            activity = await self.activity.read(
                account_id, now=sent, day=trade_date, equity=equity if known else None, recent=window is not None
            )
        except BookUnavailable as exc:
            unavailable.append(f"the account's activity cannot be read: {exc}")
            return None
        if batch_approved:
            # the batch's approvals before this order go out with it: counted as sent this second and today
            c = activity.counters
            counters = replace(c, orders_last_second=c.orders_last_second + batch_approved,
                               orders_today=c.orders_today + batch_approved)  # fmt: skip
            activity = replace(activity, counters=counters)
        state = risk_state(
            view, quotes, activity, equity=equity, client_order_id=client_order_id, session=trade_date,
            ages_to=(sent, now),
        )  # fmt: skip
        order = rule_order(
            ts_code=security.ts_code, board=security.board, side=intent.side, order_type=intent.order_type,
            qty=intent.qty, price=intent.price, quote=quote, at=now, session=trade_date,
        )  # fmt: skip
        with measuring_utilisation() as shares:
            findings = evaluate(order, state, configs)
            losses = configs.get(drawdown.RULE)
            breach: TradingState | None = None
            if isinstance(losses, drawdown.LossConfig) and losses.enabled and known:
                wanted, loss_findings = drawdown.breach_state(state, losses)
                findings.extend(loss_findings)
                if wanted is not TradingState.ACTIVE and any(f.level is Level.DENY for f in loss_findings):
                    breach = wanted
        self.metrics.utilised(account_id, shares)
        return _Judged(
            findings=findings,
            versions=dict(effective.versions),
            equity=equity,
            breach=breach,
            duplicate_window_s=window or 0,
            account_id=account_id,
            instance_id=instance_id,
            at=now,
        )

    async def _breach(self, account_id: str, judged: _Judged) -> ScopedState:
        """Move the account to the trading state its losses call for (recorded and published like an admin's)."""
        assert judged.breach is not None
        why = "; ".join(f.message for f in judged.findings if f.rule == drawdown.RULE and f.level is Level.DENY)
        at = self.clock()
        if self.on_breach is not None:
            try:
                await self.on_breach(account_id, judged.breach, why)
            except Exception:
                log.exception("risk could not record a breach's trading state", extra={"account": account_id})
        log.warning("a loss limit moved an account's trading state", extra={"account": account_id, "to": judged.breach})
        return ScopedState("account", account_id, judged.breach.value, why, BREACH_SETTER, at)

    async def _claim(
        self,
        account_id: str,
        client_order_id: str,
        intent: OrderIntent,
        session: date,
        window_s: int,
        reasons: list[Reason],
        unavailable: list[str],
    ) -> str | None:
        recent = recent_order(intent.ts_code, intent.side, intent.price, intent.qty, utcnow(), client_order_id, session)
        print_ = fingerprint(recent)
        try:
            if await self.activity.claim(account_id, print_, window_s, client_order_id):
                return print_
        except BookUnavailable as exc:
            unavailable.append(f"the account's activity cannot be written: {exc}")
            return None
        reasons.append(
            Reason(
                "duplicate_order",
                f"the same order ({intent.side} {intent.qty:,} {intent.ts_code} at {intent.price or 'market'}) "
                f"is being placed or was placed in the last {window_s} s",
            )
        )
        return None

    async def _unclaim(self, account_id: str, claimed: str) -> None:
        try:
            await self.activity.unclaim(account_id, claimed)
        except BookUnavailable as exc:  # it expires with its window
            log.warning("risk could not give a duplicate claim back", extra={"account": account_id, "error": str(exc)})

    async def _note(self, account_id: str, client_order_id: str, intent: OrderIntent, day: date) -> None:
        """Count an order execution took (the rate rule) and keep it as a recent one (the duplicate rule)."""
        recent = recent_order(intent.ts_code, intent.side, intent.price, intent.qty, utcnow(), client_order_id, day)
        try:
            await self.activity.note_order(account_id, recent, day=day)
        except BookUnavailable as exc:
            log.warning("risk could not count an order", extra={"account": account_id, "error": str(exc)})

    async def _reserve(
        self,
        account_id: str,
        client_order_id: str,
        intent: OrderIntent,
        reservation: tuple[int, int],
        session: date,
        unavailable: list[str],
    ) -> list[Reason]:
        """Reserve an approved order's cash or shares in the account's book, re-checking them atomically: the
        reasons when another order took them first (or why the book cannot say, in `unavailable`)."""
        cap_fen, need_fen = reservation
        try:
            reserved = await self.books.reserve(
                account_id, client_order_id, ts_code=intent.ts_code, side=intent.side, qty=intent.qty,
                cap_fen=cap_fen, need_fen=need_fen, session=session, decided_at=utcnow(),  # wall time: its expiry's
            )  # fmt: skip
        except BookUnavailable as exc:
            unavailable.append(f"the account's book cannot be written: {exc}")
            log.warning("risk cannot reserve an order", extra={"account": account_id, "error": str(exc)})
            return []
        if reserved.verdict in (Verdict.RESERVED, Verdict.ALREADY):
            return []
        if reserved.verdict is Verdict.INSUFFICIENT_CASH:
            message = (
                f"buying {intent.qty} shares of {intent.ts_code} needs {from_fen(need_fen)} CNY with fees; "
                f"{from_fen(reserved.available)} available (other orders reserved the rest)"
            )
            return [Reason(ReasonCode.INSUFFICIENT_CASH, message)]
        if reserved.verdict is Verdict.INSUFFICIENT_POSITION:
            message = (
                f"cannot sell {intent.qty} shares of {intent.ts_code}: {reserved.available} sellable "
                "(other orders reserved the rest)"
            )
            return [Reason(ReasonCode.INSUFFICIENT_POSITION, message)]
        unavailable.append(f"the book of {account_id} was dropped while the order was checked")
        return []

    async def _release(self, account_id: str, client_order_id: str) -> None:
        try:
            await self.books.release(account_id, client_order_id)
        except BookUnavailable as exc:  # it expires with the approval's TTL
            log.warning("risk could not release a reservation", extra={"account": account_id, "error": str(exc)})

    async def order_day(self) -> date:
        """The trading day an order placed now is for (its T+1 and fees): the replayed session, or on the real clock
        the calendar's next session to close (after 15:00, tomorrow's). Raises CalendarUnavailable."""
        replayed = self.market_session()
        if replayed is None and self.sessions is not None:
            found = await self.sessions.session_of(self.clock())
            if found is not None:
                return found.day
        return market_today(self.clock(), replayed)

    async def _order_session(
        self, replayed: date | None, unavailable: list[str]
    ) -> tuple[OrderSession | None, Reason | None]:
        """On the real clock, the session an order placed now is for (`shared.platform.clock.order_session`), or a
        reason when the calendar has no trading day ahead; when the calendar cannot be read (and is not kept), why is
        added to `unavailable`. (None, None) on a replay clock, whose session is given, and without a calendar."""
        if replayed is not None or self.sessions is None:
            return None, None
        now = self.clock()
        try:
            found = await self.sessions.session_of(now)
        except CalendarUnavailable as exc:
            unavailable.append(f"no trade calendar to tell which session the order is for: {exc}")
            log.warning("risk cannot read the trade calendar", extra={"error": str(exc)})
            return None, None
        if found is None:
            local = now.astimezone(EXCHANGE_TZ).strftime("%Y-%m-%d %H:%M")
            message = f"the trade calendar has no trading day after {local} (Asia/Shanghai) for the order to trade on"
            return None, Reason(ReasonCode.NO_SESSION, message)
        return found, None

    def _replay(self, earlier: Decision, request: OrderRequest) -> Placement | _Pending:
        """Answer a repeated client_order_id with the approved decision: the same terms are re-signed for the same
        decision_id (execution then finds the order by client_order_id and answers 200 with it, or creates it if
        the first attempt never reached it); other terms are a conflict. Nothing new is recorded."""
        asked = (_canonical_code(request.ts_code), request.side.value, request.order_type.value, request.qty)
        if (
            asked != (earlier.ts_code, earlier.side, earlier.order_type, earlier.qty)
            or request.price != earlier.price
            or request.paper_fill != earlier.paper_fill
            or (request.market_type, request.time_in_force) != (earlier.market_type, earlier.time_in_force)
        ):
            return _refused(
                409,
                "client_order_id_conflict",
                f"client_order_id {request.client_order_id} was approved in decision {earlier.decision_id} for "
                "different terms",
                earlier,
            )
        log.info(
            "repeated client_order_id: forwarding the approved decision again",
            extra={"decision_id": earlier.decision_id, "client_order_id": earlier.client_order_id},
        )
        return _Pending(earlier)

    def _submission(self, decision: Decision) -> dict[str, Any]:
        """Execution's submission of an approved decision: its terms and the signed approval."""
        terms = OrderTerms(
            client_order_id=decision.client_order_id,
            account_id=decision.account_id,
            ts_code=decision.ts_code,
            side=decision.side,
            order_type=decision.order_type,
            qty=decision.qty,
            price=None if decision.price is None else decision.price.quantize(PRICE_TICK),  # exact: on the tick
            strategy_instance_id=decision.strategy_instance_id,
            paper_fill=decision.paper_fill,
            market_type=decision.market_type,
            time_in_force=decision.time_in_force,
        )
        approval = sign_approval(self.approval_secret, terms, decision.decision_id)
        return {**terms.model_dump(mode="json"), "approval": approval.model_dump(mode="json")}

    async def _forward(self, decision: Decision, principal: Principal) -> Placement:
        try:
            status, payload = await self.execution.submit(self._submission(decision), principal)
        except Unavailable as exc:
            return await self._unreached(decision, exc.message)
        return await self._answered(decision, status, payload)

    async def _unreached(self, decision: Decision, why: str) -> Placement:
        """Execution did not answer: whether it holds the order is unknown."""
        await self._outcome(decision, ExecutionOutcome.UNKNOWN)
        return _refused(
            503,
            "execution_unavailable",
            f"{why}; the order was approved, send it again with the same client_order_id within "
            f"{self.approval_ttl_s}s (later it is checked afresh)",
            decision,
        )

    async def _answered(self, decision: Decision, status: int, payload: dict[str, Any]) -> Placement:
        """Execution's answer to the submission of `decision`, recorded, as the caller's answer."""
        if status in (200, 201):
            await self._outcome(decision, ExecutionOutcome.PLACED)
            return Placement(status, {"decision": decision.summary(), "order": payload})
        code = str(payload.get("code", f"http_{status}"))
        message = str(payload.get("message", ""))
        details = payload.get("details")
        if status >= 500 and isinstance(details, dict) and details.get("order_id"):
            # Execution stored the order and will send it itself (e.g. 503 broker_unavailable): it is placed, and
            # its cash or shares are reserved. A retry replays this decision at any age and gets that order; a
            # fresh check would be refused by the order's own reservation while the order is live.
            await self._outcome(decision, ExecutionOutcome.PLACED)
            return _refused(503, code, f"{message} (order {details['order_id']} is accepted: do not place it again; "
                            "GET /orders shows when it is sent)", decision, details)  # fmt: skip
        if status >= 500:
            await self._outcome(decision, ExecutionOutcome.UNKNOWN)
            if status == 503 and code in EXECUTION_UNAVAILABLE_CODES:
                # Execution could not decide for a reason it names (e.g. no market data to price a market buy).
                return _refused(503, code, message, decision, payload.get("details"))
            if status == 503 and code in EXECUTION_DEPENDENCY_CODES:
                hint = "send the order again with the same client_order_id"
                return _refused(503, code, f"{message}; {hint}", decision, payload.get("details"))
            return _refused(
                503,
                "execution_unavailable",
                f"execution answered HTTP {status} ({code}: {message}); send the order again with the same "
                "client_order_id",
                decision,
            )
        # Any 4xx: execution holds no order under this decision and never will. Spent: a retry is decided afresh.
        try:
            await self._outcome(decision, ExecutionOutcome.REFUSED)
        finally:
            await self._release(decision.account_id, decision.client_order_id)  # no order holds it, recorded or not
        if status == 409:
            return _refused(409, code, message, decision)
        if status == 422 and code in EXECUTION_REFUSALS:
            # Approved here, but the account could not afford it when execution admitted it (e.g. another order
            # took the shares or the cash first). Nothing was stored there; the caller may retry later.
            return _refused(422, code, message, decision, payload.get("details"))
        # Execution refusing an approval risk just signed means the two disagree (secrets, clocks, versions).
        log.error("execution refused an approved order", extra={"status": status, "code": code, "detail": message})
        return _refused(502, "execution_refused", f"execution refused the approved order ({code}: {message})", decision)

    async def _outcome(self, decision: Decision, outcome: ExecutionOutcome) -> None:
        """Record execution's answer. A lost REFUSED would let a retry replay the approval unchecked, so that one
        fails the request (the caller retries; execution refuses again and it is recorded then); the others are
        logged: a missing PLACED/UNKNOWN only makes a retry within the TTL replay, or one after it be checked."""
        try:
            if outcome is ExecutionOutcome.REFUSED:
                await self.decisions.record_outcome(decision.decision_id, outcome)
            else:
                await self.decisions.note_outcome(decision.decision_id, outcome)
        except Exception:
            log.exception(
                "could not record execution's answer to a decision",
                extra={"decision_id": decision.decision_id, "outcome": outcome.value},
            )
            if outcome is ExecutionOutcome.REFUSED:
                raise


BREACH_SETTER = "risk:losses"  # who moved a trading state for a loss limit breached


@dataclass(frozen=True)
class _Judged:
    """What the rules found for one order."""

    findings: list[Finding]
    versions: dict[str, int | None]
    equity: Decimal
    breach: TradingState | None  # the trading state a loss limit breached calls for
    duplicate_window_s: int
    account_id: str
    instance_id: str | None
    at: datetime

    @property
    def reasons(self) -> list[Reason]:
        return [
            Reason(f.code, f.message)
            for f in self.findings
            if f.level is Level.DENY and f.rule != drawdown.RULE  # a breach moves the state; the state refuses
        ]

    @property
    def record(self) -> dict[str, Any]:
        return {
            "rule_versions": self.versions,
            "equity": str(self.equity),
            "findings": [
                {"rule": f.rule, "code": f.code, "level": f.level.value, "message": f.message, "values": dict(f.values)}
                for f in self.findings
            ],
        }

    def alerts(self, decision: Decision) -> list[Envelope]:
        """A warning for each finding near a limit; a critical alert for a loss limit breached."""
        out = []
        for f in self.findings:
            breach = f.rule == drawdown.RULE and f.level is Level.DENY
            if f.level is Level.WARN or breach:
                out.append(
                    risk_alert(
                        severity="critical" if breach else "warning",
                        account_id=self.account_id,
                        instance_id=self.instance_id,
                        rule=f.rule,
                        code=f.code,
                        message=f.message,
                        values=dict(f.values),
                        decision_id=decision.decision_id,
                        at=self.at,
                    )
                )
        return out


def _stricter(wanted: TradingState, current: str) -> bool:
    order = [TradingState.ACTIVE, TradingState.REDUCING, TradingState.HALTED]
    return order.index(wanted) > order.index(TradingState(current))


class _OrderBook:
    """The account's book as one order reads it: read once, on first need."""

    def __init__(self, books: AccountBooks, account_id: str, session: date, principal: Principal) -> None:
        self.books = books
        self.account_id = account_id
        self.session = session
        self.principal = principal
        self._read = False
        self._view: BookView | None = None
        self._error: str | None = None

    async def get(self, unavailable: list[str]) -> BookView | None:
        """The view, or None with why added to `unavailable` (once per order)."""
        if not self._read:
            self._read = True
            try:
                self._view = await self.books.view(self.account_id, self.session, self.principal)
                if self._view is None:
                    self._error = f"execution has no account {self.account_id}"
            except BookUnavailable as exc:
                self._error = f"the account's book cannot be read: {exc}"
                log.warning("risk cannot read an account's book", extra={"account": self.account_id, "error": str(exc)})
            if self._error is not None:
                unavailable.append(self._error)
        return self._view


def check_request(request: OrderRequest, principal: Principal) -> Sleeve | None:
    """What is refused before anything is read or recorded: who may place it (403), paper_fill from anyone but the
    strategy service for an instance (403), an instance's sleeve (403 sleeve_not_allowed, 422 sleeve_required,
    sleeve_mismatch), and the order types (422 market_type_invalid, protection_price_required,
    time_in_force_unsupported). Returns the sleeve as the checks read it (None: a person's order). A batch runs it on
    every item before placing any (services/risk/batches.py)."""
    instance_id = request.strategy_instance_id
    _check_placer(principal, instance_id)
    if request.paper_fill is not None and instance_id is None:
        # (a person's order naming an instance is refused above; the strategy service always names one)
        raise Forbidden(
            "forbidden",
            f"{principal.subject} may not send paper_fill: only a strategy instance's orders "
            "(strategy_instance_id, from the strategy service) carry their own fill rules",
        )
    # An instance's sleeve comes with its order, from the strategy service (checked above to be the sender of
    # every order naming an instance): it is checked here, before anything is read or recorded.
    sleeve = _carried_sleeve(request, principal)
    # The market type on the code's exchange, a STAR market order's protection price, the time in force: a request
    # the exchange could not take is refused here (422 naming the field), nothing recorded or sent.
    _typed(request)
    return sleeve


def _check_placer(principal: Principal, instance_id: str | None) -> None:
    """Who may place: people with a trading role, their own orders; the strategy service, only orders of a strategy
    instance (whose sleeve then says which account). Viewers watch; any other service has no account."""
    strategy_service = principal.is_service and principal.subject == STRATEGY_SUBJECT
    if instance_id is not None:
        if not strategy_service:
            raise Forbidden(
                "forbidden",
                f"{principal.subject} may not place orders for a strategy instance (strategy_instance_id): only the "
                "strategy service does",
            )
        return
    if strategy_service:
        raise Forbidden(
            "forbidden",
            f"{principal.subject} places orders only for a strategy instance: name its strategy_instance_id",
        )
    if not principal.at_least(Role.TRADER):
        raise Forbidden("forbidden", f"role {principal.role} may not place orders")


def _typed(request: OrderRequest) -> OrderRequest:
    """The request with its market type named (a market order without one: counterparty_best, what market orders
    were placed as before types existed), or 422 with the code and the field of the first thing the exchange would
    not take (`shared.core.market.order_types.order_type_error`: market_type_invalid, protection_price_required,
    time_in_force_unsupported)."""
    error = order_type_error(
        request.ts_code, request.order_type, request.price, request.market_type, request.time_in_force
    )
    if error is not None:
        raise ServiceError(error.code, error.message, status_code=422, field=error.field)
    if request.order_type is OrderType.MARKET and request.market_type is None:
        return request.model_copy(update={"market_type": DEFAULT_MARKET_TYPE})
    return request


def _carried_sleeve(request: OrderRequest, principal: Principal) -> Sleeve | None:
    """The sleeve an instance's order carries, as the checks read it; None for a person's order. Refused (nothing
    read, nothing recorded): a sleeve on an order that names no instance (only the strategy service's orders of an
    instance carry one: 403 sleeve_not_allowed), an instance's order without one (422 sleeve_required), and one that
    is not for the order's instance or security (422 sleeve_mismatch)."""
    carried, instance_id = request.sleeve, request.strategy_instance_id
    if instance_id is None:
        if carried is not None:
            raise Forbidden(
                "sleeve_not_allowed",
                f"{principal.subject} may not send a sleeve: only the strategy service's orders of a strategy instance "
                "(strategy_instance_id) carry one",
                field="sleeve",
            )
        return None
    if carried is None:
        raise ServiceError(
            "sleeve_required",
            f"sleeve: an order of strategy instance {instance_id} carries the instance's sleeve (its state, cash and "
            "position, as the strategy service's runner computed them when it sent the order)",
            status_code=422,
            field="sleeve",
        )
    if carried.instance_id != instance_id:
        raise ServiceError(
            "sleeve_mismatch",
            f"sleeve.instance_id: the sleeve is strategy instance {carried.instance_id}'s, the order is for "
            f"{instance_id}",
            status_code=422,
            field="sleeve.instance_id",
        )
    code = _canonical_code(request.ts_code)
    position = carried.position
    if position is not None and _canonical_code(position.ts_code) != code:
        raise ServiceError(
            "sleeve_mismatch",
            f"sleeve.position.ts_code: the sleeve gives the position in {position.ts_code}, the order is for {code}",
            status_code=422,
            field="sleeve.position.ts_code",
        )
    return Sleeve(
        instance_id=carried.instance_id,
        account_id=carried.account_id,
        state=carried.state,
        cash_available=carried.cash_available,
        positions=[]
        if position is None
        else [Holding(ts_code=code, qty=position.qty, sellable_qty=position.sellable_qty)],
    )


def _record(
    judged: _Judged | None,
    sleeve: CarriedSleeve | None,
    parent_id: str | None = None,
    replaces_order_id: str | None = None,
) -> dict[str, Any] | None:
    """What the decision read, for its record: the rules' versions, equity and findings (when they ran), the
    sleeve the order carried (an instance's order), the conditional order whose child it is (`parent_id`) and the
    amended order it replaces (`replaces_order_id`)."""
    record: dict[str, Any] = {} if judged is None else judged.record
    if sleeve is not None:
        record = {**record, "sleeve": sleeve.model_dump(mode="json")}
    if parent_id is not None:
        record = {**record, "parent_id": parent_id}
    if replaces_order_id is not None:
        record = {**record, "replaces_order_id": replaces_order_id}
    return record or None


def _canonical_code(ts_code: str) -> str:
    try:
        return parse_ts_code(ts_code).ts_code
    except InvalidTsCode:
        return ts_code  # never approved, so it matches no approved decision


# the request's field each reason of a precheck concerns (a reason of both, the order's value: the quantity); None
# for a reason of neither (the security suspended, a code not allowed, no session, the auction's pause)
_PRICE_REASONS = frozenset(
    {ReasonCode.PRICE_TICK, ReasonCode.PRICE_LIMIT, ReasonCode.LIMITS_UNKNOWN, "price_cage", "price_deviation"}
)
_QTY_REASONS = frozenset(
    {ReasonCode.LOT_SIZE, ReasonCode.MAX_ORDER_VALUE, ReasonCode.INSUFFICIENT_POSITION, "exchange_max_qty",
     "max_order_qty", "liquidity_pct"}
)  # fmt: skip


def _field(reason: Reason) -> str | None:
    if reason.code in _PRICE_REASONS:
        return "price"
    return "qty" if reason.code in _QTY_REASONS else None


def _refused(status: int, code: str, message: str, decision: Decision, details: Any = None) -> Placement:
    body: dict[str, Any] = {"code": code, "message": message, "decision": decision.summary()}
    if isinstance(details, dict) and details:
        body["details"] = details  # execution's, passed through (e.g. needed / available cash)
    return Placement(status, body)

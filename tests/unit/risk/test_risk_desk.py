"""The risk desk with fake ports: what is recorded, signed, forwarded and answered. No I/O."""

from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from services.risk.checks import Holding
from services.risk.desk import QuoteUnavailable, RiskDesk
from services.risk.metrics import RiskMetrics
from services.risk.schemas import OrderRequest
from services.risk.state.ports import BookUnavailable, BookView, HoldingView, Reservation, Verdict
from services.risk.store import Decision, ExecutionOutcome, ScopedState
from shared.core.domain import OrderSide, to_fen
from shared.core.domain.codes import Board
from shared.platform.approval import Approval, OrderTerms, approval_error
from shared.platform.errors import ServiceError, Unavailable
from shared.platform.events import Envelope, OrderDenied
from shared.platform.internal_auth import Principal
from shared.platform.quotes import Quote

SECRET = "unit-approval-secret-0123456789"
TTL_S = 60
ALICE = Principal("alice", "trader", "acct-alice")
QUOTE = Quote(
    ts_code="600000.SH",
    name="浦发银行",
    board=Board.MAIN,
    is_st=False,
    last_trade_date=date(2024, 12, 31),
    last_close=Decimal("10.00"),
    suspended=False,
    next_trade_date=date(2025, 1, 2),
    limit_up=Decimal("11.00"),
    limit_down=Decimal("9.00"),
)


class FakeQuotes:
    def __init__(self, down: bool = False) -> None:
        self.down = down
        self.asked: list[str] = []

    async def quote(self, ts_code: str) -> Quote | None:
        self.asked.append(ts_code)
        if self.down:
            raise QuoteUnavailable("the data service did not answer: ConnectError")
        return QUOTE if ts_code == "600000.SH" else None


class FakeBooks:
    """The account's hot book: its holdings and available cash; `reserve` re-checks and reserves as the stores do
    (cash for buys, sellable shares for sells). `down`: the store cannot be read."""

    def __init__(self, *holdings: Holding, available: str = "10000000.00", down: bool = False) -> None:
        self.holdings = {h.ts_code: h for h in holdings}
        self.value = Decimal(available)
        self.down = down
        self.asked: list[str] = []
        self.reserved: dict[str, tuple[str, int, int]] = {}  # client_order_id -> (side, qty, need_fen)
        self.released: list[str] = []

    def _available_fen(self) -> int:
        return to_fen(self.value) - sum(need for side, _, need in self.reserved.values() if side == "buy")

    def _sellable(self, ts_code: str) -> int:
        held = self.holdings.get(ts_code)
        selling = sum(qty for side, qty, _ in self.reserved.values() if side == "sell")
        return max((0 if held is None else held.sellable_qty) - selling, 0)

    async def view(self, account_id: str, session: date, principal: Principal) -> BookView | None:
        # Asked as the account's owner; a strategy instance's order (a service's) names its sleeve's account.
        assert principal.is_service or account_id == (principal.account_id or principal.subject)
        self.asked.append(account_id)
        if self.down:
            raise BookUnavailable("Redis did not answer: ConnectionError")
        holdings = {c: HoldingView(c, h.qty, min(self._sellable(c), h.qty)) for c, h in self.holdings.items()}
        reserved = to_fen(self.value) - self._available_fen()
        return BookView(account_id, to_fen(self.value), reserved, holdings, ())

    async def reserve(
        self, account_id: str, client_order_id: str, *, ts_code: str, side: OrderSide, qty: int, cap_fen: int,
        need_fen: int, session: date, decided_at: datetime,
    ) -> Reservation:  # fmt: skip
        if client_order_id in self.reserved:
            return Reservation(Verdict.ALREADY)
        if side is OrderSide.BUY and need_fen > self._available_fen():
            return Reservation(Verdict.INSUFFICIENT_CASH, self._available_fen())
        if side is OrderSide.SELL and qty > self._sellable(ts_code):
            return Reservation(Verdict.INSUFFICIENT_POSITION, self._sellable(ts_code))
        self.reserved[client_order_id] = (side.value, qty, need_fen)
        return Reservation(Verdict.RESERVED)

    async def release(self, account_id: str, client_order_id: str) -> None:
        self.released.append(client_order_id)
        self.reserved.pop(client_order_id, None)


FakePositions = FakeBooks


def FakeCash(available: str = "10000000.00", down: bool = False) -> FakeBooks:
    return FakeBooks(available=available, down=down)


class FakeExecution:
    def __init__(self, answer: tuple[int, dict[str, Any]] | None = None, down: bool = False) -> None:
        self.answer = answer or (201, {"order_id": "o1", "status": "filled"})
        self.down = down
        self.calls: list[tuple[dict[str, Any], Principal]] = []
        self.batches: list[list[str]] = []  # the client_order_ids of each batch request
        self.answers: dict[str, tuple[int, dict[str, Any]]] = {}  # a batch item's own answer, by client_order_id

    async def submit(self, body: dict[str, Any], principal: Principal) -> tuple[int, dict[str, Any]]:
        self.calls.append((body, principal))
        if self.down:
            raise Unavailable("execution_unavailable", "the execution service did not answer: ConnectError")
        return self.answer

    async def submit_many(
        self, bodies: Sequence[dict[str, Any]], principal: Principal
    ) -> list[tuple[int, dict[str, Any]]]:
        """Execution's batch: one request (`batches`), each item answered as `submit` answers it (`answers` by
        client_order_id, else `answer`)."""
        self.batches.append([b["client_order_id"] for b in bodies])
        if self.down:
            raise Unavailable("execution_unavailable", "the execution service did not answer: ConnectError")
        replies = []
        for body in bodies:
            self.calls.append((body, principal))
            replies.append(self.answers.get(body["client_order_id"], self.answer))
        return replies


class FakeLog:
    def __init__(self) -> None:
        self.decisions: list[Decision] = []
        self.events: list[Envelope] = []  # written with the decision, in its transaction
        self.outcomes: dict[str, ExecutionOutcome] = {}

    async def record(self, decision: Decision, event: Envelope | None = None, *, alerts: Sequence[Envelope] = ()) -> (
        None
    ):  # fmt: skip
        self.decisions.append(decision)
        if event is not None:
            self.events.append(event)
        self.events.extend(alerts)

    async def replayable_for(
        self,
        account_id: str | None,
        client_order_id: str,
        *,
        unknown_since: datetime,
        strategy_instance_id: str | None = None,
    ) -> Decision | None:
        mine = [
            d
            for d in self.decisions
            if d.approved
            and d.client_order_id == client_order_id
            and d.strategy_instance_id == strategy_instance_id
            and (strategy_instance_id is not None or d.account_id == account_id)
        ]
        placed = [d for d in mine if self.outcomes.get(d.decision_id) is ExecutionOutcome.PLACED]
        unknown = [
            d
            for d in mine
            if self.outcomes.get(d.decision_id, ExecutionOutcome.UNKNOWN) is ExecutionOutcome.UNKNOWN
            and d.created_at >= unknown_since
        ]
        return (placed + unknown or [None])[0]

    async def record_outcome(self, decision_id: str, outcome: ExecutionOutcome) -> None:
        if self.outcomes.get(decision_id, ExecutionOutcome.UNKNOWN) is ExecutionOutcome.UNKNOWN:
            self.outcomes[decision_id] = outcome

    async def note_outcome(self, decision_id: str, outcome: ExecutionOutcome) -> None:
        await self.record_outcome(decision_id, outcome)


class FakeTradingStates:
    """The kill switch's stored states: {(scope, key): state}; `down`: the store cannot be read."""

    def __init__(self, states: dict[tuple[str, str], str] | None = None, down: bool = False) -> None:
        self.states = states or {}
        self.down = down
        self.asked: list[tuple[str, str | None]] = []

    async def trading_states_of(self, account_id: str, instance_id: str | None) -> list[ScopedState]:
        self.asked.append((account_id, instance_id))
        if self.down:
            raise ConnectionError("the database is gone")
        wanted = {("global", ""), ("account", account_id), ("instance", instance_id or "")}
        at = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)
        return [ScopedState(sc, k, st, "drill", "root", at) for (sc, k), st in self.states.items() if (sc, k) in wanted]


def _desk(
    quotes: FakeQuotes,
    execution: FakeExecution,
    log: FakeLog,
    positions: FakeBooks | None = None,
    cash: FakeBooks | None = None,
    clock: Callable[[], datetime] | None = None,
    trading_states: FakeTradingStates | None = None,
) -> tuple[RiskDesk, CollectorRegistry]:
    registry = CollectorRegistry()
    desk = RiskDesk(
        approval_secret=SECRET,
        approval_ttl_s=TTL_S,
        clock=clock or (lambda: datetime.now(UTC)),
        max_order_value=Decimal("1000000"),
        quotes=quotes,
        books=positions or cash or FakeBooks(),
        execution=execution,
        decisions=log,
        metrics=RiskMetrics(registry),
        trading_states=trading_states or FakeTradingStates(),
    )
    return desk, registry


def _order(**kw: object) -> OrderRequest:
    values: dict[str, object] = dict(
        client_order_id="c-1", ts_code="600000.SH", side="buy", order_type="limit", qty=300, price="10.50"
    )
    values.update(kw)
    return OrderRequest.model_validate(values)


def _count(registry: CollectorRegistry, outcome: str) -> float:
    value = registry.get_sample_value("lh_risk_decisions_total", {"outcome": outcome})
    return value or 0.0


async def test_approved_order_is_recorded_signed_and_forwarded_as_the_caller() -> None:
    quotes, execution, log = FakeQuotes(), FakeExecution(), FakeLog()
    desk, registry = _desk(quotes, execution, log)
    placement = await desk.place(_order(ts_code="600000.sh"), ALICE)

    assert placement.status_code == 201
    [decision] = log.decisions
    assert decision.approved and decision.reasons == [] and decision.account_id == "acct-alice"
    assert placement.body == {
        "decision": {"decision_id": decision.decision_id, "approved": True, "reasons": []},
        "order": {"order_id": "o1", "status": "filled"},
    }
    [(body, principal)] = execution.calls
    assert principal == ALICE
    assert quotes.asked == ["600000.SH"]  # canonical code
    terms = OrderTerms.model_validate({k: v for k, v in body.items() if k != "approval"})
    assert terms == OrderTerms(
        client_order_id="c-1",
        account_id="acct-alice",
        ts_code="600000.SH",
        side="buy",
        order_type="limit",
        qty=300,
        price=Decimal("10.50"),
    )
    approval = Approval.model_validate(body["approval"])
    assert approval.decision_id == decision.decision_id
    assert approval_error(SECRET, terms, approval, max_age_s=60) is None
    assert _count(registry, "approved") == 1


async def test_rejected_order_is_recorded_and_never_forwarded() -> None:
    execution, log = FakeExecution(), FakeLog()
    desk, registry = _desk(FakeQuotes(), execution, log)
    placement = await desk.place(_order(qty=150, price="11.01"), ALICE)

    assert placement.status_code == 422
    assert placement.body["code"] == "order_rejected"
    reasons = placement.body["decision"]["reasons"]
    assert [r["code"] for r in reasons] == ["lot_size", "price_limit"]
    assert placement.body["message"] == "; ".join(r["message"] for r in reasons)
    assert execution.calls == []
    assert [d.approved for d in log.decisions] == [False]
    assert _count(registry, "rejected") == 1 and _count(registry, "approved") == 0


async def test_a_denial_is_recorded_with_its_order_denied_event_and_an_approval_with_none() -> None:
    log = FakeLog()
    desk, _ = _desk(FakeQuotes(), FakeExecution(), log)
    denied = await desk.place(_order(qty=150, price="11.01"), ALICE)
    approved = await desk.place(_order(client_order_id="c-2"), ALICE)

    assert (denied.status_code, approved.status_code) == (422, 201)
    [event] = log.events  # the approval wrote none
    denial = event.parsed()
    assert event.type == "risk.order.denied" and isinstance(denial, OrderDenied)
    assert denial.decision_id == denied.body["decision"]["decision_id"] == log.decisions[0].decision_id
    assert (denial.account_id, denial.client_order_id, denial.ts_code, denial.side, denial.qty, denial.price) == (
        "acct-alice",
        "c-1",
        "600000.SH",
        "buy",
        150,
        Decimal("11.01"),
    )
    assert [(r.code, r.message) for r in denial.reasons] == [
        (r["code"], r["message"]) for r in denied.body["decision"]["reasons"]
    ]
    assert [r.code for r in denial.reasons] == ["lot_size", "price_limit"]


async def test_unknown_security_is_rejected() -> None:
    execution, log = FakeExecution(), FakeLog()
    desk, _ = _desk(FakeQuotes(), execution, log)
    placement = await desk.place(_order(ts_code="600999.SH"), ALICE)
    assert placement.status_code == 422
    assert [r["code"] for r in placement.body["decision"]["reasons"]] == ["unknown_security"]
    assert execution.calls == []


async def test_fails_closed_when_market_data_is_unavailable() -> None:
    execution, log = FakeExecution(), FakeLog()
    desk, registry = _desk(FakeQuotes(down=True), execution, log)
    placement = await desk.place(_order(), ALICE)

    assert placement.status_code == 503
    assert placement.body["code"] == "risk_unavailable"
    assert [r["code"] for r in placement.body["decision"]["reasons"]] == ["risk_unavailable"]
    assert placement.body["decision"]["approved"] is False
    assert execution.calls == []
    assert [d.approved for d in log.decisions] == [False]
    assert _count(registry, "error") == 1


async def test_without_market_data_a_certain_rejection_is_still_a_rejection() -> None:
    # 150 shares is wrong whatever the quote says: the answer is final (422), not "try again" (503).
    execution, log = FakeExecution(), FakeLog()
    desk, registry = _desk(FakeQuotes(down=True), execution, log)
    placement = await desk.place(_order(qty=150), ALICE)
    assert placement.status_code == 422
    assert [r["code"] for r in placement.body["decision"]["reasons"]] == ["lot_size", "risk_unavailable"]
    assert execution.calls == [] and _count(registry, "rejected") == 1


async def test_execution_unavailable_keeps_the_approved_decision() -> None:
    log = FakeLog()
    desk, _ = _desk(FakeQuotes(), FakeExecution(down=True), log)
    placement = await desk.place(_order(), ALICE)
    assert placement.status_code == 503
    assert placement.body["code"] == "execution_unavailable"
    assert placement.body["decision"]["approved"] is True
    assert [d.approved for d in log.decisions] == [True]


@pytest.mark.parametrize(
    ("answer", "status", "code"),
    [
        ((200, {"order_id": "o1"}), 200, None),
        ((409, {"code": "client_order_id_conflict", "message": "used"}), 409, "client_order_id_conflict"),
        ((403, {"code": "approval_invalid", "message": "signature"}), 502, "execution_refused"),
        # the account's QMT bridge away, nothing stored: execution's code, as the issue names it
        ((503, {"code": "broker_unavailable", "message": "later"}), 503, "broker_unavailable"),
        # Execution's database down: its code passed on (risk's own database is up: it is not risk's).
        ((503, {"code": "database_unavailable", "message": "down"}), 503, "database_unavailable"),
        ((500, {"code": "database_error", "message": "bug"}), 503, "execution_unavailable"),
        # The account could not afford it when execution admitted it: execution's code, as it said it.
        ((422, {"code": "insufficient_position", "message": "0 sellable"}), 422, "insufficient_position"),
        ((422, {"code": "insufficient_cash", "message": "0.00 available"}), 422, "insufficient_cash"),
        ((422, {"code": "price_cap_unknown", "message": "no limit"}), 422, "price_cap_unknown"),
        ((422, {"code": "invalid_request", "message": "shape"}), 502, "execution_refused"),
    ],
)
async def test_execution_answers_are_mapped(answer: tuple[int, dict[str, Any]], status: int, code: str | None) -> None:
    desk, _ = _desk(FakeQuotes(), FakeExecution(answer=answer), FakeLog())
    placement = await desk.place(_order(), ALICE)
    assert placement.status_code == status
    assert placement.body.get("code") == code
    assert placement.body["decision"]["approved"] is True


@pytest.mark.parametrize("principal", [Principal("victor", "viewer"), Principal("svc:backtest", "service")])
async def test_only_trading_roles_place_orders(principal: Principal) -> None:
    execution, log = FakeExecution(), FakeLog()
    desk, _ = _desk(FakeQuotes(), execution, log)
    with pytest.raises(ServiceError) as err:
        await desk.place(_order(), principal)
    assert err.value.status_code == 403
    assert log.decisions == [] and execution.calls == []


def test_request_shape() -> None:
    with pytest.raises(ValueError, match="needs a price"):
        _order(price=None)
    with pytest.raises(ValueError, match="takes no price"):
        _order(order_type="market", price="10.00")
    with pytest.raises(ValueError, match="client_order_id"):
        _order(client_order_id="a\x1fb")  # the approval's field separator
    with pytest.raises(ValueError, match="client_order_id"):
        _order(client_order_id="x" * 65)
    assert _order(price="10.005").price == Decimal("10.005")  # off the tick: risk's reason, not a shape error


def _sell(**kw: object) -> OrderRequest:
    return _order(**{"side": "sell", **kw})


async def test_a_sell_without_the_shares_is_rejected_and_never_forwarded() -> None:
    execution, log, positions = FakeExecution(), FakeLog(), FakePositions()
    desk, registry = _desk(FakeQuotes(), execution, log, positions)
    placement = await desk.place(_sell(qty=1000), ALICE)
    assert placement.status_code == 422
    [reason] = placement.body["decision"]["reasons"]
    assert reason["code"] == "insufficient_position"
    assert "cannot sell 1000 shares of 600000.SH: 0 sellable now (held 0;" in reason["message"]
    assert positions.asked == ["acct-alice"]
    assert execution.calls == [] and _count(registry, "rejected") == 1


async def test_a_sell_within_the_sellable_shares_is_approved_odd_lot_closing_included() -> None:
    execution, log = FakeExecution(), FakeLog()
    positions = FakePositions(Holding(ts_code="600000.SH", qty=150, sellable_qty=150))
    desk, _ = _desk(FakeQuotes(), execution, log, positions)
    assert (await desk.place(_sell(client_order_id="c-all", qty=150), ALICE)).status_code == 201
    positions.reserved.clear()  # (c-all reserved the 150: as if it had been cancelled)
    part = await desk.place(_sell(client_order_id="c-part", qty=50), ALICE)
    assert part.status_code == 422
    assert [r["code"] for r in part.body["decision"]["reasons"]] == ["lot_size"]
    assert len(execution.calls) == 1


async def test_an_order_reads_the_book_once_and_an_approval_reserves_what_it_needs() -> None:
    # 300 x 10.50 = 3,150.00 + commission 5.00 (minimum) + transfer fee 0.03 = 3,155.03 = 315,503 fen.
    books = FakeBooks(Holding(ts_code="600000.SH", qty=300, sellable_qty=300))
    desk, _ = _desk(FakeQuotes(), FakeExecution(), FakeLog(), books)
    assert (await desk.place(_order(), ALICE)).status_code == 201
    assert (await desk.place(_sell(client_order_id="c-s", qty=300), ALICE)).status_code == 201
    assert books.asked == ["acct-alice", "acct-alice"]
    assert books.reserved == {"c-1": ("buy", 300, 315_503), "c-s": ("sell", 300, 0)}
    # the 300 shares are reserved by the first sell: a second is refused by the book's atomic re-check... or by
    # the view, which already counts the reservation
    again = await desk.place(_sell(client_order_id="c-s2", qty=300), ALICE)
    assert [r["code"] for r in again.body["decision"]["reasons"]] == ["insufficient_position"]


async def test_the_reservation_re_check_refuses_what_another_order_took_meanwhile() -> None:
    class Racing(FakeBooks):
        async def view(self, account_id: str, session: date, principal: Principal) -> BookView | None:
            seen = await super().view(account_id, session, principal)
            self.reserved["other"] = ("buy", 100, 300_000)  # another order reserved 3,000.00 after the read
            return seen

    books = Racing(available="5000.00")
    execution, log = FakeExecution(), FakeLog()
    desk, registry = _desk(FakeQuotes(), execution, log, books)
    placement = await desk.place(_order(), ALICE)  # needs 3,155.03; 2,000.00 left
    assert placement.status_code == 422
    [reason] = placement.body["decision"]["reasons"]
    assert reason["code"] == "insufficient_cash"
    assert reason["message"] == (
        "buying 300 shares of 600000.SH needs 3155.03 CNY with fees; 2000.00 available (other orders reserved the rest)"
    )
    assert execution.calls == [] and [d.approved for d in log.decisions] == [False]
    assert _count(registry, "rejected") == 1


async def test_an_order_execution_refuses_gives_its_reservation_back() -> None:
    books = FakeBooks()
    answer = (422, {"code": "insufficient_cash", "message": "0.00 available"})
    desk, _ = _desk(FakeQuotes(), FakeExecution(answer=answer), FakeLog(), books)
    assert (await desk.place(_order(), ALICE)).status_code == 422
    assert books.released == ["c-1"] and books.reserved == {}


async def test_fails_closed_when_positions_are_unavailable_for_a_sell() -> None:
    execution, log = FakeExecution(), FakeLog()
    desk, registry = _desk(FakeQuotes(), execution, log, FakePositions(down=True))
    placement = await desk.place(_sell(), ALICE)
    assert placement.status_code == 503
    assert placement.body["code"] == "risk_unavailable"
    [reason] = placement.body["decision"]["reasons"]
    assert reason["code"] == "risk_unavailable" and "book cannot be read: Redis did not answer" in reason["message"]
    assert execution.calls == [] and [d.approved for d in log.decisions] == [False]
    assert _count(registry, "error") == 1


async def test_a_retry_of_an_approved_order_is_re_signed_without_checking_again() -> None:
    quotes, execution, log = FakeQuotes(), FakeExecution(), FakeLog()
    desk, registry = _desk(quotes, execution, log)
    first = await desk.place(_order(), ALICE)
    assert first.status_code == 201

    quotes.down = True  # checking again would fail closed
    execution.answer = (200, {"order_id": "o1", "status": "filled"})  # execution has the order already
    again = await desk.place(_order(ts_code="600000.sh", price="10.5"), ALICE)  # same terms, other spelling
    assert again.status_code == 200
    assert again.body == {"decision": first.body["decision"], "order": {"order_id": "o1", "status": "filled"}}
    assert quotes.asked == ["600000.SH"]  # asked once, for the first attempt
    assert len(log.decisions) == 1 and _count(registry, "approved") == 1

    (body1, _), (body2, _) = execution.calls
    assert {k: v for k, v in body1.items() if k != "approval"} == {k: v for k, v in body2.items() if k != "approval"}
    decision_id = log.decisions[0].decision_id
    assert body1["approval"]["decision_id"] == body2["approval"]["decision_id"] == decision_id
    terms = OrderTerms.model_validate({k: v for k, v in body2.items() if k != "approval"})
    assert approval_error(SECRET, terms, Approval.model_validate(body2["approval"]), max_age_s=60) is None


async def test_a_retry_of_a_filled_sell_is_not_told_the_shares_are_gone() -> None:
    execution, log = FakeExecution(), FakeLog()
    positions = FakePositions(Holding(ts_code="600000.SH", qty=300, sellable_qty=300))
    desk, _ = _desk(FakeQuotes(), execution, log, positions)
    assert (await desk.place(_sell(), ALICE)).status_code == 201
    positions.holdings.clear()  # sold
    execution.answer = (200, {"order_id": "o1", "status": "filled"})
    assert (await desk.place(_sell(), ALICE)).status_code == 200
    assert len(positions.asked) == 1


async def test_a_retry_with_other_terms_is_a_conflict() -> None:
    execution, log = FakeExecution(), FakeLog()
    desk, _ = _desk(FakeQuotes(), execution, log)
    first = await desk.place(_order(), ALICE)
    conflict = await desk.place(_order(qty=400), ALICE)
    assert conflict.status_code == 409
    assert conflict.body["code"] == "client_order_id_conflict"
    assert conflict.body["decision"] == first.body["decision"]
    assert len(execution.calls) == 1 and len(log.decisions) == 1


async def test_a_rejected_order_may_be_sent_again_and_is_checked_again() -> None:
    quotes, execution, log = FakeQuotes(down=True), FakeExecution(), FakeLog()
    desk, _ = _desk(quotes, execution, log)
    assert (await desk.place(_order(), ALICE)).status_code == 503
    quotes.down = False
    assert (await desk.place(_order(), ALICE)).status_code == 201
    assert [d.approved for d in log.decisions] == [False, True]
    assert quotes.asked == ["600000.SH", "600000.SH"]


# --- buying power ------------------------------------------------------------------------------------------


async def test_a_buy_beyond_the_available_cash_is_rejected_and_never_forwarded() -> None:
    # 300 x 10.50 = 3,150.00 + commission 0.7875 -> 5.00 minimum + transfer fee 0.0315 -> 0.03 = 3,155.03.
    execution, log, cash = FakeExecution(), FakeLog(), FakeCash("3155.02")
    desk, registry = _desk(FakeQuotes(), execution, log, cash=cash)
    placement = await desk.place(_order(), ALICE)
    assert placement.status_code == 422 and placement.body["code"] == "order_rejected"
    assert placement.body["decision"]["reasons"] == [
        {
            "code": "insufficient_cash",
            "message": "buying 300 shares of 600000.SH at up to 10.50 (limit price) needs 3155.03 CNY with fees; "
            "3155.02 available",
        }
    ]
    assert cash.asked == ["acct-alice"] and execution.calls == [] and _count(registry, "rejected") == 1

    cash.value = Decimal("3155.03")  # exactly enough
    assert (await desk.place(_order(client_order_id="c-2"), ALICE)).status_code == 201


async def test_a_market_buy_is_valued_at_the_limit_up_price() -> None:
    # 300 x 11.00 = 3,300.00 + 5.00 + 0.03 (0.033) = 3,305.03.
    desk, _ = _desk(FakeQuotes(), FakeExecution(), FakeLog(), cash=FakeCash("3305.02"))
    placement = await desk.place(_order(order_type="market", price=None), ALICE)
    [reason] = placement.body["decision"]["reasons"]
    assert reason["code"] == "insufficient_cash"
    assert "at up to 11.00 (limit-up price) needs 3305.03 CNY" in reason["message"]


async def test_fails_closed_when_the_cash_is_unavailable_for_a_buy() -> None:
    execution, log = FakeExecution(), FakeLog()
    desk, registry = _desk(FakeQuotes(), execution, log, cash=FakeCash(down=True))
    placement = await desk.place(_order(), ALICE)
    assert placement.status_code == 503 and placement.body["code"] == "risk_unavailable"
    assert "the account's book cannot be read: Redis did not answer" in placement.body["message"]
    assert [d.approved for d in log.decisions] == [False] and execution.calls == []
    assert _count(registry, "error") == 1


# --- replays: only of a decision execution placed, or whose answer was lost within the approval TTL ------------


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2025, 1, 2, 2, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


async def test_a_retry_of_an_order_execution_refused_is_checked_afresh() -> None:
    quotes, log = FakeQuotes(), FakeLog()
    execution = FakeExecution(answer=(422, {"code": "insufficient_cash", "message": "0.00 available"}))
    desk, _ = _desk(quotes, execution, log)
    assert (await desk.place(_order(), ALICE)).status_code == 422
    assert log.outcomes == {log.decisions[0].decision_id: ExecutionOutcome.REFUSED}

    quotes.down = True  # a fresh check fails closed; a replay would not look
    again = await desk.place(_order(), ALICE)
    assert again.status_code == 503 and again.body["code"] == "risk_unavailable"
    assert len(execution.calls) == 1  # not forwarded again
    assert [d.approved for d in log.decisions] == [True, False]
    assert quotes.asked == ["600000.SH", "600000.SH"]


async def test_after_a_refusal_a_fresh_approval_is_the_one_replayed() -> None:
    quotes, log = FakeQuotes(), FakeLog()
    execution = FakeExecution(answer=(422, {"code": "insufficient_position", "message": "0 sellable"}))
    desk, _ = _desk(quotes, execution, log)
    await desk.place(_order(), ALICE)
    execution.answer = (201, {"order_id": "o2", "status": "submitted"})
    second = await desk.place(_order(), ALICE)
    assert second.status_code == 201
    execution.answer = (200, {"order_id": "o2", "status": "submitted"})
    third = await desk.place(_order(), ALICE)
    assert third.status_code == 200 and third.body["decision"] == second.body["decision"]
    assert [c[0]["approval"]["decision_id"] for c in execution.calls] == [
        log.decisions[0].decision_id,
        log.decisions[1].decision_id,
        log.decisions[1].decision_id,
    ]
    assert quotes.asked == ["600000.SH", "600000.SH"]  # the third was not checked


async def test_a_lost_answer_is_replayed_within_the_ttl_and_checked_afresh_after_it() -> None:
    clock, quotes, log = Clock(), FakeQuotes(), FakeLog()
    execution = FakeExecution(down=True)
    desk, _ = _desk(quotes, execution, log, clock=clock)
    assert (await desk.place(_order(), ALICE)).status_code == 503

    clock.now += timedelta(seconds=TTL_S)  # exactly the TTL: still replayed, unchecked
    quotes.down = True
    assert (await desk.place(_order(), ALICE)).status_code == 503
    assert len(log.decisions) == 1 and quotes.asked == ["600000.SH"] and len(execution.calls) == 2

    clock.now += timedelta(seconds=1)  # past it: a new decision, every check again
    again = await desk.place(_order(), ALICE)
    assert again.body["code"] == "risk_unavailable"
    assert [d.approved for d in log.decisions] == [True, False] and len(execution.calls) == 2


async def test_a_placed_order_is_replayed_at_any_age() -> None:
    clock, quotes, log = Clock(), FakeQuotes(), FakeLog()
    execution = FakeExecution()
    desk, _ = _desk(quotes, execution, log, clock=clock)
    assert (await desk.place(_order(), ALICE)).status_code == 201
    clock.now += timedelta(days=3)
    quotes.down = True
    execution.answer = (200, {"order_id": "o1", "status": "filled"})
    assert (await desk.place(_order(), ALICE)).status_code == 200
    assert len(log.decisions) == 1 and quotes.asked == ["600000.SH"]


async def test_execution_refusal_details_and_named_unavailability_are_relayed() -> None:
    details = {"needed": "3155.03", "available": "100.00"}
    answer = (422, {"code": "insufficient_cash", "message": "short", "details": details})
    desk, _ = _desk(FakeQuotes(), FakeExecution(answer=answer), FakeLog())
    placement = await desk.place(_order(), ALICE)
    assert (placement.status_code, placement.body["code"], placement.body["details"]) == (
        422,
        "insufficient_cash",
        details,
    )

    answer = (503, {"code": "market_data_unavailable", "message": "cannot price a market buy"})
    log = FakeLog()
    desk, _ = _desk(FakeQuotes(), FakeExecution(answer=answer), log)
    placement = await desk.place(_order(), ALICE)
    assert (placement.status_code, placement.body["code"]) == (503, "market_data_unavailable")
    assert placement.body["message"] == "cannot price a market buy"
    assert log.outcomes == {log.decisions[0].decision_id: ExecutionOutcome.UNKNOWN}  # retried within the TTL

    # a QMT account whose bridge is away: nothing stored, nothing sent; the trader sees execution's own code
    message = "the broker cannot take orders now (the QMT bridge b1 is not connected); nothing was sent"
    log = FakeLog()
    desk, _ = _desk(FakeQuotes(), FakeExecution(answer=(503, {"code": "broker_unavailable", "message": message})), log)
    placement = await desk.place(_order(), ALICE)
    assert (placement.status_code, placement.body["code"], placement.body["message"]) == (
        503,
        "broker_unavailable",
        message,
    )


async def test_an_order_execution_stored_but_could_not_send_is_placed_and_its_retry_replayed() -> None:
    # Execution admitted the order (reserving its cash) but the broker did not answer: 503 with the order's id. The
    # order is live; a retry, however late, must get that order, not a fresh check that its own reservation fails.
    clock, quotes, log = Clock(), FakeQuotes(), FakeLog()
    details = {"order_id": "o7"}
    answer = (503, {"code": "broker_unavailable", "message": "broker down; it stays accepted", "details": details})
    execution = FakeExecution(answer=answer)
    desk, _ = _desk(quotes, execution, log, cash=FakeCash(available="5000.00"), clock=clock)
    first = await desk.place(_order(), ALICE)
    assert (first.status_code, first.body["code"], first.body["details"]) == (503, "broker_unavailable", details)
    assert log.outcomes == {log.decisions[0].decision_id: ExecutionOutcome.PLACED}

    clock.now += timedelta(seconds=TTL_S + 60)
    quotes.down = True  # a fresh check would fail closed: the retry must not be checked again
    execution.answer = (200, {"order_id": "o7", "status": "filled"})
    again = await desk.place(_order(), ALICE)
    assert again.status_code == 200 and again.body["order"]["order_id"] == "o7"
    assert len(log.decisions) == 1 and quotes.asked == ["600000.SH"]


async def test_a_refusal_is_remembered_when_later_decisions_are_recorded() -> None:
    quotes, log = FakeQuotes(), FakeLog()
    execution = FakeExecution(answer=(422, {"code": "insufficient_cash", "message": "0.00 available"}))
    desk, _ = _desk(quotes, execution, log)
    await desk.place(_order(), ALICE)  # D1 refused by execution
    await desk.place(_order(), ALICE)  # D2 decided afresh, refused again
    execution.answer = (201, {"order_id": "o3", "status": "submitted"})
    third = await desk.place(_order(), ALICE)  # D3 decided afresh: neither refused decision is replayed
    assert third.status_code == 201
    assert [c[0]["approval"]["decision_id"] for c in execution.calls] == [d.decision_id for d in log.decisions]
    assert len(log.decisions) == 3


# --- orders of a strategy instance --------------------------------------------------------------------------------

INSTANCE = "0123456789abcdef0123456789abcdef"
STRATEGY = Principal("svc:strategy", "service")


def _sleeve(
    state: str = "running", cash: str = "100000.00", position: dict[str, object] | None = None, **kw: object
) -> dict[str, object]:
    """The sleeve an instance's order carries (OrderRequest.sleeve), as the strategy service's runner sends it."""
    return {"instance_id": INSTANCE, "account_id": "acct-alice", "state": state, "cash_available": cash,
            "position": position, **kw}  # fmt: skip


def _instance_order(sleeve: dict[str, object] | None = None, **kw: object) -> OrderRequest:
    return _order(strategy_instance_id=INSTANCE, sleeve=_sleeve() if sleeve is None else sleeve, **kw)


async def test_an_instance_order_is_checked_for_the_sleeve_account_and_forwarded_with_its_instance() -> None:
    execution, log, cash = FakeExecution(), FakeLog(), FakeCash()
    desk, registry = _desk(FakeQuotes(), execution, log, cash=cash)
    placement = await desk.place(_instance_order(_sleeve(session="2025-01-02")), STRATEGY)

    assert placement.status_code == 201, placement.body
    [decision] = log.decisions
    assert (decision.account_id, decision.strategy_instance_id) == ("acct-alice", INSTANCE)
    assert cash.asked == ["acct-alice"]  # the account's cash checked too: the sleeve's account
    # the sleeve it was checked against, recorded with the decision's other values
    assert decision.rule_check is not None
    assert decision.rule_check["sleeve"] == {
        "instance_id": INSTANCE, "account_id": "acct-alice", "state": "running", "cash_available": "100000.00",
        "position": None, "session": "2025-01-02",
    }  # fmt: skip
    [(body, principal)] = execution.calls
    assert principal == STRATEGY
    assert "sleeve" not in body  # the approval's terms only: execution admits the account, not the sleeve
    terms = OrderTerms.model_validate({k: v for k, v in body.items() if k != "approval"})
    assert (terms.account_id, terms.strategy_instance_id) == ("acct-alice", INSTANCE)
    assert approval_error(SECRET, terms, Approval.model_validate(body["approval"]), max_age_s=60) is None
    # The same approval does not cover the order without its instance (nor for another one).
    for other in (None, "f" * 32):
        changed = terms.model_copy(update={"strategy_instance_id": other})
        assert approval_error(SECRET, changed, Approval.model_validate(body["approval"]), max_age_s=60) == (
            "approval signature does not match the order"
        )
    assert _count(registry, "approved") == 1


async def test_the_sleeve_s_account_is_the_order_s_account() -> None:
    execution, log, books = FakeExecution(), FakeLog(), FakeBooks()
    desk, _ = _desk(FakeQuotes(), execution, log, cash=books)
    placement = await desk.place(_instance_order(_sleeve(account_id="acct-bob")), STRATEGY)
    assert placement.status_code == 201, placement.body
    assert books.asked == ["acct-bob"] and log.decisions[0].account_id == "acct-bob"
    assert execution.calls[0][0]["account_id"] == "acct-bob"


@pytest.mark.parametrize(
    "principal",
    [
        ALICE,
        Principal("root", "admin", "acct-root"),
        Principal("svc:backtest", "service"),
        Principal("svc:strategy", "trader"),
    ],
)
async def test_only_the_strategy_service_names_a_strategy_instance(principal: Principal) -> None:
    execution, log, books = FakeExecution(), FakeLog(), FakeBooks()
    desk, _ = _desk(FakeQuotes(), execution, log, cash=books)
    with pytest.raises(ServiceError) as err:
        await desk.place(_instance_order(), principal)
    assert (err.value.status_code, err.value.code) == (403, "forbidden")
    assert "strategy_instance_id" in err.value.message
    assert log.decisions == [] and execution.calls == [] and books.asked == []


@pytest.mark.parametrize(
    "principal", [ALICE, Principal("root", "admin", "acct-root"), Principal("svc:strategy", "trader")]
)
async def test_a_person_cannot_send_a_sleeve(principal: Principal) -> None:
    """A sleeve says what an instance may spend: on a person's order it would be a way round nothing, and is refused
    whatever it says, before anything is read or recorded."""
    execution, log, books = FakeExecution(), FakeLog(), FakeBooks()
    desk, registry = _desk(FakeQuotes(), execution, log, cash=books)
    for sleeve in (_sleeve(), _sleeve(account_id="acct-root", cash="99999999.00")):
        with pytest.raises(ServiceError) as err:
            await desk.place(_order(sleeve=sleeve), principal)
        assert (err.value.status_code, err.value.code) == (403, "sleeve_not_allowed")
        assert err.value.details == {"field": "sleeve"}
        assert err.value.message.startswith(f"{principal.subject} may not send a sleeve")
    assert log.decisions == [] and execution.calls == [] and books.asked == []
    assert _count(registry, "approved") == _count(registry, "rejected") == 0


async def test_an_instance_order_without_its_sleeve_is_refused() -> None:
    execution, log, books = FakeExecution(), FakeLog(), FakeBooks()
    desk, _ = _desk(FakeQuotes(), execution, log, cash=books)
    with pytest.raises(ServiceError) as err:
        await desk.place(_order(strategy_instance_id=INSTANCE), STRATEGY)
    assert (err.value.status_code, err.value.code) == (422, "sleeve_required")
    assert err.value.details == {"field": "sleeve"}
    assert log.decisions == [] and execution.calls == [] and books.asked == []


@pytest.mark.parametrize(
    ("sleeve", "field"),
    [
        (_sleeve(instance_id="f" * 32), "sleeve.instance_id"),  # another instance's
        (_sleeve(position={"ts_code": "600036.SH", "qty": 300, "sellable_qty": 300}), "sleeve.position.ts_code"),
    ],
)
async def test_a_sleeve_that_is_not_for_the_order_is_refused(sleeve: dict[str, object], field: str) -> None:
    execution, log, books = FakeExecution(), FakeLog(), FakeBooks()
    desk, _ = _desk(FakeQuotes(), execution, log, cash=books)
    with pytest.raises(ServiceError) as err:
        await desk.place(_instance_order(sleeve), STRATEGY)
    assert (err.value.status_code, err.value.code) == (422, "sleeve_mismatch")
    assert err.value.details == {"field": field} and err.value.message.startswith(f"{field}: ")
    assert log.decisions == [] and execution.calls == [] and books.asked == []


async def test_the_strategy_service_places_only_orders_of_an_instance() -> None:
    execution, log = FakeExecution(), FakeLog()
    desk, _ = _desk(FakeQuotes(), execution, log)
    for order in (_order(), _order(sleeve=_sleeve())):
        with pytest.raises(ServiceError) as err:
            await desk.place(order, STRATEGY)
        assert (err.value.status_code, err.value.code) == (403, "forbidden")
    assert log.decisions == [] and execution.calls == []


HELD_300 = {"ts_code": "600000.SH", "qty": 300, "sellable_qty": 200}


@pytest.mark.parametrize(
    ("sleeve", "order", "codes"),
    [
        (_sleeve(state="stopped"), {}, ["strategy_instance_not_running"]),
        (_sleeve(state="created"), {}, ["strategy_instance_not_running"]),
        # 300 x 10.50 = 3,150.00 + 5.00 (0.7875 -> minimum) + 0.03 (0.0315) = 3,155.03 > 3,155.02.
        (_sleeve(cash="3155.02"), {}, ["insufficient_strategy_cash"]),
        (_sleeve(cash="3155.03"), {}, []),
        (_sleeve(cash="-1.00"), {}, ["insufficient_strategy_cash"]),  # its open buys reserve more than its cash
        (_sleeve(state="stopped", cash="0.00"), {}, ["strategy_instance_not_running", "insufficient_strategy_cash"]),
        (_sleeve("running", "0.00", HELD_300), {"side": "sell"}, ["insufficient_strategy_position"]),
        (_sleeve("running", "0.00", HELD_300), {"side": "sell", "qty": 200}, []),
        (_sleeve("running", "0.00", {**HELD_300, "ts_code": "600000.sh"}), {"side": "sell", "qty": 200}, []),
        (_sleeve("running", "0.00"), {"side": "sell", "qty": 100}, ["insufficient_strategy_position"]),  # none held
    ],
)
async def test_an_instance_order_is_checked_against_its_sleeve(
    sleeve: dict[str, object], order: dict[str, object], codes: list[str]
) -> None:
    execution, log = FakeExecution(), FakeLog()
    # The account holds plenty: only the sleeve can refuse.
    positions = FakePositions(Holding(ts_code="600000.SH", qty=10_000, sellable_qty=10_000))
    desk, _ = _desk(FakeQuotes(), execution, log, positions=positions)
    placement = await desk.place(_instance_order(sleeve, **order), STRATEGY)
    [decision] = log.decisions
    assert [r["code"] for r in decision.reasons] == codes
    assert decision.rule_check is not None
    recorded = decision.rule_check["sleeve"]
    assert (recorded["state"], recorded["cash_available"]) == (sleeve["state"], sleeve["cash_available"])
    assert recorded["position"] == sleeve["position"]
    if codes:
        assert (placement.status_code, placement.body["code"]) == (422, "order_rejected")
        assert execution.calls == []
        [event] = log.events
        assert event.payload["strategy_instance_id"] == INSTANCE
    else:
        assert placement.status_code == 201


async def test_the_account_checks_run_for_an_instance_order_too() -> None:
    execution, log = FakeExecution(), FakeLog()
    desk, _ = _desk(FakeQuotes(), execution, log, cash=FakeCash("100.00"))
    placement = await desk.place(_instance_order(), STRATEGY)
    assert placement.status_code == 422
    assert [r["code"] for r in placement.body["decision"]["reasons"]] == ["insufficient_cash"]


async def test_an_instance_order_fails_closed_when_its_account_cannot_be_read() -> None:
    """The sleeve comes with the order; the account's book does not: without it, no approval (503, recorded)."""
    execution, log = FakeExecution(), FakeLog()
    desk, registry = _desk(FakeQuotes(), execution, log, cash=FakeCash(down=True))
    placement = await desk.place(_instance_order(), STRATEGY)
    assert (placement.status_code, placement.body["code"]) == (503, "risk_unavailable")
    [decision] = log.decisions
    assert not decision.approved and decision.strategy_instance_id == INSTANCE
    assert execution.calls == [] and _count(registry, "error") == 1


async def test_a_rejected_instance_order_records_the_sleeve_even_when_the_rules_did_not_run() -> None:
    execution, log = FakeExecution(), FakeLog()
    desk, _ = _desk(FakeQuotes(), execution, log)
    placement = await desk.place(_instance_order(_sleeve(cash="1.00"), ts_code="600036.SH"), STRATEGY)  # unknown
    assert placement.status_code == 422
    [decision] = log.decisions
    assert decision.rule_check == {"sleeve": {**_sleeve(cash="1.00"), "session": None}}


async def test_a_retry_of_an_instance_order_is_replayed_without_checking_its_sleeve_again() -> None:
    execution, log = FakeExecution(), FakeLog()
    desk, _ = _desk(FakeQuotes(), execution, log)
    first = await desk.place(_instance_order(), STRATEGY)
    # stopped since (the retry carries the sleeve as it is now): the placed order stays placed
    again = await desk.place(_instance_order(_sleeve(state="stopped", cash="0.00")), STRATEGY)
    assert (first.status_code, again.status_code) == (201, 201)
    assert len(log.decisions) == 1
    [(body1, _), (body2, _)] = execution.calls
    assert body1["approval"]["decision_id"] == body2["approval"]["decision_id"]
    assert body2["strategy_instance_id"] == INSTANCE


async def test_a_person_s_order_is_not_answered_with_an_instance_decision_of_the_same_client_order_id() -> None:
    execution, log = FakeExecution(), FakeLog()
    desk, _ = _desk(FakeQuotes(), execution, log)
    await desk.place(_instance_order(), STRATEGY)
    await desk.place(_order(), ALICE)  # alice's account, the same client_order_id: a decision of its own
    assert [d.strategy_instance_id for d in log.decisions] == [INSTANCE, None]
    assert execution.calls[1][0]["strategy_instance_id"] is None
    assert log.decisions[1].rule_check is None or "sleeve" not in log.decisions[1].rule_check


# --- the kill switch's trading states ------------------------------------------------------------------------------


async def test_a_halted_account_has_buys_and_sells_refused_and_others_pass() -> None:
    execution, log = FakeExecution(), FakeLog()
    positions = FakePositions(Holding(ts_code="600000.SH", qty=1000, sellable_qty=1000))
    states = FakeTradingStates({("account", "acct-alice"): "halted"})
    desk, registry = _desk(FakeQuotes(), execution, log, positions, trading_states=states)
    for order in (_order(client_order_id="c-b"), _sell(client_order_id="c-s", qty=100)):
        placement = await desk.place(order, ALICE)
        assert placement.status_code == 422
        [reason] = placement.body["decision"]["reasons"]
        assert reason["code"] == "trading_halted"
        assert reason["message"].startswith("trading is halted for account acct-alice (set by root at ")
    assert execution.calls == [] and _count(registry, "rejected") == 2
    bob = Principal("bob", "trader", "acct-bob")
    assert (await desk.place(_order(client_order_id="c-bob"), bob)).status_code == 201
    assert states.asked == [("acct-alice", None), ("acct-alice", None), ("acct-bob", None)]


@pytest.mark.parametrize(
    ("order", "codes"),
    [
        ({"side": "sell", "qty": 300}, []),  # within the 300 held: reduces
        ({"side": "sell", "qty": 400}, ["trading_reducing", "insufficient_position"]),  # more than held
        ({"side": "buy", "qty": 100}, ["trading_reducing"]),  # adds
    ],
)
async def test_reducing_passes_only_sells_within_the_position(order: dict[str, Any], codes: list[str]) -> None:
    positions = FakePositions(Holding(ts_code="600000.SH", qty=300, sellable_qty=300))
    states = FakeTradingStates({("global", ""): "reducing", ("account", "acct-alice"): "active"})
    desk, _ = _desk(FakeQuotes(), FakeExecution(), FakeLog(), positions, trading_states=states)
    placement = await desk.place(_order(**order), ALICE)
    reasons = [] if placement.status_code == 201 else [r["code"] for r in placement.body["decision"]["reasons"]]
    assert reasons == codes


async def test_the_strictest_state_applies() -> None:
    states = FakeTradingStates({("global", ""): "reducing", ("account", "acct-alice"): "halted"})
    desk, _ = _desk(FakeQuotes(), FakeExecution(), FakeLog(), trading_states=states)
    placement = await desk.place(_sell(qty=100), ALICE)
    assert [r["code"] for r in placement.body["decision"]["reasons"]] == ["trading_halted", "insufficient_position"]


async def test_fails_closed_when_the_trading_states_cannot_be_read() -> None:
    execution, log = FakeExecution(), FakeLog()
    desk, _ = _desk(FakeQuotes(), execution, log, trading_states=FakeTradingStates(down=True))
    placement = await desk.place(_order(), ALICE)
    assert placement.status_code == 503 and placement.body["code"] == "risk_unavailable"
    assert "the trading states cannot be read (ConnectionError)" in placement.body["message"]
    assert execution.calls == []


class FakePreflight:
    """The replay lookup and the trading states in one read (the app's RiskStore: `replayable_and_states`)."""

    def __init__(self, log: FakeLog, states: FakeTradingStates) -> None:
        self.log, self.states = log, states
        self.asked: list[tuple[str | None, str, str | None, str]] = []

    async def replayable_and_states(
        self,
        account_id: str | None,
        client_order_id: str,
        *,
        unknown_since: datetime,
        strategy_instance_id: str | None = None,
        state_account_id: str,
    ) -> tuple[Decision | None, list[ScopedState]]:
        self.asked.append((account_id, client_order_id, strategy_instance_id, state_account_id))
        earlier = await self.log.replayable_for(
            account_id, client_order_id, unknown_since=unknown_since, strategy_instance_id=strategy_instance_id
        )
        return earlier, await self.states.trading_states_of(state_account_id, strategy_instance_id)


async def test_with_a_preflight_the_replay_and_the_trading_states_are_read_once_together() -> None:
    execution, log = FakeExecution(), FakeLog()
    stored = FakeTradingStates({("account", "acct-alice"): "halted"})
    desk, _ = _desk(FakeQuotes(), execution, log, trading_states=FakeTradingStates())
    desk.preflight = preflight = FakePreflight(log, stored)

    halted = await desk.place(_order(), ALICE)
    # the halted state read with the replay lookup refuses the order; the separate read is not made
    assert halted.status_code == 422 and [r["code"] for r in halted.body["decision"]["reasons"]] == ["trading_halted"]
    assert preflight.asked == [("acct-alice", "c-1", None, "acct-alice")]
    assert desk.trading_states.asked == []  # type: ignore[attr-defined]
    assert execution.calls == []

    stored.states = {}
    approved = await desk.place(_order(client_order_id="c-2"), ALICE)
    assert approved.status_code == 201
    again = await desk.place(_order(client_order_id="c-2"), ALICE)  # a retry: the approved decision replayed
    assert again.status_code == 201 and len(log.decisions) == 2 and len(execution.calls) == 2

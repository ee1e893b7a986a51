"""The bridge's link to MiniQMT's trading API (xtquant.xttrader), with the quirks of the real library handled
(docs/qmt-bridge.md; the facts in ../shared/qmt.md):

- XtQuantTrader(path, session) -> register_callback BEFORE start -> start -> connect (0 ok) -> subscribe(account).
  connect() never reconnects by itself: on on_disconnected (or a failed connect) the link waits (backoff) and builds
  a NEW trader, then reconciles with MiniQMT (query orders and trades) and pushes what changed.
- Callbacks come on xtquant's thread; they are handed to the asyncio loop (call_soon_threadsafe) and handled there,
  one at a time, never inside xtquant's thread (a sync query there would deadlock).
- Every order is journalled before order_stock_async is called, with order_remark = protocol.remark_for(order_id);
  every broker event maps back to the platform's order by that remark, else by its order_sysid (the counter's
  contract number), else by MiniQMT's order id -- an id only when MiniQMT confirmed it for that order on the current
  connection and nothing in the event contradicts it (another remark or sysid): a MiniQMT restart that loses its
  session drops the remarks and renumbers the orders, so an old id may name another order (docs/qmt-bridge.md,
  "MiniQMT restarts").
- A trade pushed before the async response is mapped by its remark and pushed (never dropped); one without a remark
  is held until the response names its order. Duplicate callbacks: trades are pushed once per traded_id, an order
  state identical to the last one pushed is not pushed again, and a final state is never followed by an older one.
- A cancel goes by MiniQMT's id only when that id names the order for sure now (confirmed on this connection, or the
  order just found by remark or sysid); else by the order's contract number (cancel_order_stock_sysid); else it is
  refused with nothing sent. An id from before a restart is never acted on.
- A cancel "success" is never reported as a cancel: only an order push/query with status 53/54 says an order is
  cancelled (MiniQMT can answer success for an order it never had).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import re
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal, InvalidOperation
from types import SimpleNamespace
from typing import Any

from bridge.qmt import normalize, protocol
from bridge.qmt.backoff import Backoff
from bridge.qmt.journal import ACKNOWLEDGED, CST, LOST, SENDING, SENT, UNCONFIRMED, Entry, Journal

log = logging.getLogger("bridge.qmt.trader")

Push = Callable[[str, dict[str, Any]], None]
_TS_CODE = re.compile(r"^\d{6}\.(SH|SZ|BJ)$")
PLACE_FIELDS = frozenset({"order_id", "remark", "ts_code", "side", "qty", "price_type", "price", "strategy_name"})
MAX_PRICE = Decimal("100000")
# cancel_order_stock_sysid's market argument: xttrader documents SH 0 and SZ 1 only (no BJ)
SYSID_MARKETS = {"SH": 0, "SZ": 1}


class BadRequest(ValueError):
    """A request the bridge refuses before anything is sent (reply code bad_request)."""


def load_xtquant() -> Any:
    """xtquant's trading modules (the real ones on Windows; the tests put a fake `xtquant` on the path)."""
    return SimpleNamespace(
        xttrader=importlib.import_module("xtquant.xttrader"), xttype=importlib.import_module("xtquant.xttype")
    )


def check_place(body: dict[str, Any]) -> dict[str, Any]:
    """A place request's fields, checked; raises BadRequest naming the field. Nothing is sent for a bad one."""
    unknown = sorted(set(body) - PLACE_FIELDS)
    if unknown:
        raise BadRequest(f"{unknown[0]}: unknown field")
    missing = sorted(PLACE_FIELDS - set(body) - {"strategy_name"})
    if missing:
        raise BadRequest(f"{missing[0]}: missing")
    order_id = body["order_id"]
    if not isinstance(order_id, str) or not order_id or not order_id.isascii() or not order_id.isprintable():
        raise BadRequest("order_id: must be a non-empty printable ASCII string")
    if body["remark"] != protocol.remark_for(order_id):
        raise BadRequest(f"remark: must be protocol.remark_for(order_id) = {protocol.remark_for(order_id)!r}")
    ts_code = body["ts_code"]
    if not isinstance(ts_code, str) or not _TS_CODE.match(ts_code):
        raise BadRequest("ts_code: must be a ts_code like 600000.SH (SH, SZ or BJ)")
    if body["side"] not in normalize.ORDER_TYPES:
        raise BadRequest("side: must be 'buy' or 'sell'")
    qty = body["qty"]
    if not isinstance(qty, int) or isinstance(qty, bool) or qty <= 0:
        raise BadRequest("qty: must be a positive integer (shares)")
    price_type = body["price_type"]
    exchange = ts_code.rsplit(".", 1)[1]
    if isinstance(price_type, bool) or not isinstance(price_type, int):
        raise BadRequest("price_type: must be an integer (11 limit, 42-48 market)")
    if price_type != protocol.FIX_PRICE:
        valid = protocol.MARKET_PRICE_TYPES.get(price_type)
        if valid is None:
            raise BadRequest(f"price_type: {price_type} is neither 11 (limit) nor a market type 42-48")
        if exchange not in valid:
            raise BadRequest(
                f"price_type: market type {price_type} is not valid on {exchange} (valid there: "
                f"{sorted(t for t, ex in protocol.MARKET_PRICE_TYPES.items() if exchange in ex)})"
            )
    try:
        price = Decimal(body["price"]) if isinstance(body["price"], str) else None
    except InvalidOperation:
        price = None
    if (
        price is None
        or not price.is_finite()
        or price < 0
        or price > MAX_PRICE
        or price != price.quantize(Decimal("0.001"))
    ):
        raise BadRequest("price: must be a decimal string with at most 3 places, 0 to 100000")
    if price_type == protocol.FIX_PRICE and price == 0:
        raise BadRequest("price: a limit order needs a price above 0")
    strategy_name = body.get("strategy_name", "")
    if not isinstance(strategy_name, str) or len(strategy_name) > 64:
        raise BadRequest("strategy_name: must be a string of at most 64 characters")
    return {**body, "price": price, "strategy_name": strategy_name}


def _field(obj: Any, name: str, default: Any = None) -> Any:
    return getattr(obj, name, default)


class QmtLink:
    """One account's trading link to MiniQMT. `push(type, body)` sends a push to the platform (or drops it when the
    platform is not connected: the platform's queries after a reconnect bring it back)."""

    def __init__(
        self,
        *,
        userdata_path: str,
        session_id: int,
        account_id: str,
        journal: Journal,
        push: Push,
        xt: Any = None,
        reconnect_initial_s: float = 1.0,
        reconnect_max_s: float = 60.0,
        reconcile_interval_s: float = 30.0,
    ) -> None:
        self.userdata_path = userdata_path
        self.session_id = session_id
        self.account_id = account_id
        self.journal = journal
        self.push = push
        self._xt = xt
        self._backoff = Backoff(reconnect_initial_s, reconnect_max_s)
        self.reconcile_interval_s = reconcile_interval_s
        self.connected = False
        self.generation = 0  # callbacks from an older trader are ignored
        self.on_connected: list[Callable[[], None]] = []  # run after every (re)connect (quotes resubscribe)
        self._trader: Any = None
        self._account: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lost = asyncio.Event()
        self._reported: str | None = None
        self._last_order: dict[Any, tuple[Any, ...]] = {}  # by the platform's order id (MiniQMT's ids change)
        self._confirmed: set[str] = set()  # orders whose MiniQMT id was confirmed on the current connection
        self._missing: set[str] = set()  # orders with a contract number MiniQMT's list lacks (logged once)
        self._seen_trades: set[str] = set()
        self._held_trades: dict[int, list[Any]] = {}
        self._held_errors: dict[int, list[Any]] = {}
        self._inflight: set[str] = set()  # placed on the current trader, not yet answered
        self._seq_orders: dict[int, str] = {}
        self._cancel_seqs: dict[int, str] = {}
        self._last_positions: dict[str, dict[str, Any]] = {}
        self._last_asset: dict[str, Any] | None = None
        self._last_account_status: int | None = None

    # --- lifecycle --------------------------------------------------------------------------------------------
    async def run(self) -> None:
        """Connect, reconcile, poll; after a disconnect, reconnect with backoff and a new trader. Runs until
        cancelled."""
        self._loop = asyncio.get_running_loop()
        if self._xt is None:
            self._xt = load_xtquant()
        try:
            while True:
                # connect() blocks until MiniQMT answers: off the loop, so the platform link stays alive meanwhile
                if not await asyncio.to_thread(self._connect_once):
                    self._report("disconnected")
                    await asyncio.sleep(self._backoff.next())
                    continue
                self._backoff.reset()
                self._new_session()
                self._report("connected")
                for hook in self.on_connected:
                    try:
                        hook()
                    except Exception:
                        log.exception("a hook after connecting to MiniQMT failed")
                self._reconcile_safely()
                while self.connected:
                    try:
                        await asyncio.wait_for(self._lost.wait(), self.reconcile_interval_s)
                    except TimeoutError:
                        self._reconcile_safely()
                        continue
                    self._lost.clear()
                    log.warning("MiniQMT disconnected: reconnecting with a new trader")
                    self._drop_trader()
                self._report("disconnected")
                await asyncio.sleep(self._backoff.next())
        finally:
            self._drop_trader()

    def _new_session(self) -> None:
        """A new trader: MiniQMT's ids are confirmed afresh (a restart may have renumbered them), and trades held for
        an answer the old trader will never give are let go (the reconciliation's query brings them back)."""
        self._confirmed.clear()
        self._missing.clear()
        for held in self._held_trades.values():
            for trade in held:
                self._seen_trades.discard(str(trade.traded_id))
        self._held_trades.clear()
        self._held_errors.clear()

    def _report(self, state: str) -> None:
        if self._reported != state:
            self._reported = state
            self.push(protocol.CONNECTION, {"qmt": state})

    def connection_state(self) -> str:
        return "connected" if self.connected else "disconnected"

    def _reconcile_safely(self) -> None:
        try:
            self.reconcile()
        except Exception:  # a failing query must not end the link: the next reconnect or poll tries again
            log.exception("reconciling with MiniQMT failed")

    def _connect_once(self) -> bool:
        try:
            return self._connect()
        except ValueError:
            raise
        except Exception:
            log.exception("connecting to MiniQMT raised")
            return False

    def _connect(self) -> bool:
        self.generation += 1
        xt = self._xt
        trader = xt.xttrader.XtQuantTrader(self.userdata_path, self.session_id)
        trader.register_callback(_callback(xt.xttrader.XtQuantTraderCallback, self, self.generation))
        trader.start()
        result = trader.connect()
        if result != 0:
            log.warning(
                "connect to MiniQMT at %s failed (%s): is MiniQMT running and logged in?", self.userdata_path, result
            )
            _stop(trader)
            return False
        account = xt.xttype.StockAccount(self.account_id)
        if isinstance(account, str):  # xtquant returns an error text instead of raising
            _stop(trader)
            raise ValueError(f"StockAccount refused the account id: {account}")
        if trader.subscribe(account) != 0:
            log.warning("subscribe to account %s failed: is it logged in in QMT?", self.account_id)
            _stop(trader)
            return False
        self._trader, self._account = trader, account
        self._inflight.clear()
        self.connected = True
        log.info("connected to MiniQMT (account %s, session %s)", self.account_id, self.session_id)
        return True

    def _drop_trader(self) -> None:
        self.connected = False
        trader, self._trader = self._trader, None
        if trader is not None:
            self.generation += 1
            _stop(trader)

    def from_xt(self, generation: int, handler: Callable[[Any], None], obj: Any) -> None:
        """Called on xtquant's thread: hand the callback to the loop."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return

        def run() -> None:
            if generation != self.generation:
                return  # from a trader that has been replaced
            try:
                handler(obj)
            except Exception:
                log.exception("handling %s failed", getattr(handler, "__name__", handler))

        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(run)

    # --- callbacks (on the loop) ------------------------------------------------------------------------------
    def on_disconnected(self, _: Any) -> None:
        self.connected = False
        self._lost.set()

    def _entry_for(
        self, remark: Any, qmt_order_id: Any, order_sysid: Any = None, stock_code: Any = None, market: Any = None
    ) -> Entry | None:
        """The journalled order a broker event names: by its remark; else by its order_sysid (for the same code, or
        the same exchange: the numbers are per exchange); else by MiniQMT's id, when that id was confirmed for the
        order on this connection and the event's remark, sysid and code (when it has them) do not say it is another
        order."""
        remark, sysid = str(remark or ""), str(order_sysid or "")
        if remark:
            entry = self.journal.by_remark(remark)
            if entry is not None:
                return entry
        if sysid:
            entry = self._by_sysid(sysid, stock_code, market)
            if entry is not None:
                return entry
        if qmt_order_id in (None, "", 0, -1):
            return None
        entry = self.journal.by_qmt_order_id(int(qmt_order_id))
        if entry is None or entry.order_id not in self._confirmed or _contradicts(entry, remark, sysid, stock_code):
            return None
        return entry

    def _by_sysid(self, sysid: str, stock_code: Any, market: Any = None) -> Entry | None:
        """Today's journalled order with this contract number and this code (the numbers are the counter's, per
        exchange, and may repeat on another day). An event with no code (a cancel's answer) names one only when a
        single order of today's has the number on the event's exchange (`market`, when it says): never a guess."""
        today = _today()
        if stock_code:
            entry = self.journal.by_sysid(sysid, normalize.ts_code(stock_code))
            return entry if entry is not None and entry.created_at.startswith(today) else None
        exchange = _exchange_of(market)
        candidates = [
            e
            for e in self.journal.all_by_sysid(sysid)
            if e.created_at.startswith(today) and (exchange is None or e.ts_code.endswith("." + exchange))
        ]
        return candidates[0] if len(candidates) == 1 else None

    def _awaiting(self) -> bool:
        """Orders sent on this trader with no MiniQMT id yet: an unmapped event may be theirs."""
        return any(e.order_id in self._inflight for e in self.journal.in_state(SENDING, SENT))

    def _acknowledge(self, entry: Entry, qmt_order_id: int, order_sysid: str | None) -> Entry:
        """MiniQMT has the entry's order under `qmt_order_id` now (an event matched to it by remark, sysid or a
        confirmed id): journalled (a new id replaces an old one after a renumbering) and confirmed."""
        if qmt_order_id <= 0:
            return entry
        if entry.qmt_order_id != qmt_order_id:
            if entry.qmt_order_id is not None:
                log.warning(
                    "order %s: MiniQMT now numbers it %s (was %s): renumbered by a restart",
                    entry.order_id,
                    qmt_order_id,
                    entry.qmt_order_id,
                )
            displaced = self.journal.acknowledged(entry.order_id, qmt_order_id, order_sysid or None)
            if displaced is not None:
                log.warning(
                    "order %s: its old MiniQMT id %s now names order %s", displaced, qmt_order_id, entry.order_id
                )
                self._confirmed.discard(displaced)
            self._confirmed.add(entry.order_id)
            self._inflight.discard(entry.order_id)
            self._release(qmt_order_id)
            return self.journal.get(entry.order_id) or entry
        self._confirmed.add(entry.order_id)
        return entry

    def _order_data(self, xt_order: Any, entry: Entry | None) -> dict[str, Any]:
        return normalize.order(xt_order, entry.order_id if entry else None, entry.remark if entry else "")

    def _event_entry(self, xt: Any) -> Entry | None:
        return self._entry_for(
            _field(xt, "order_remark"), _field(xt, "order_id"), _field(xt, "order_sysid"), _field(xt, "stock_code")
        )

    def on_order(self, xt_order: Any, matched: Entry | bool | None = True) -> None:
        """An order state from MiniQMT (a push, or a query); `matched`: the entry the caller matched it to (None: no
        entry), True: look it up."""
        entry = self._event_entry(xt_order) if matched is True else matched or None
        if entry is not None:
            entry = self._acknowledge(entry, int(xt_order.order_id), _field(xt_order, "order_sysid"))
        data = self._order_data(xt_order, entry)
        key = (data["status"], data["traded_qty"], data["traded_price"], data["status_msg"], data["order_sysid"])
        last_key: Any = entry.order_id if entry is not None else ("qmt", data["qmt_order_id"], data["order_sysid"])
        last = self._last_order.get(last_key)
        if last == key:
            return  # a duplicate
        if last is not None and (
            (last[0] in protocol.FINAL_ORDER_STATUS and data["status"] not in protocol.FINAL_ORDER_STATUS)
            or data["traded_qty"] < last[1]
        ):
            log.info("order %s: a stale report (%s after %s) is not pushed", data["qmt_order_id"], key, last)
            return
        self._last_order[last_key] = key
        if entry is not None:
            self.journal.observed(
                entry.order_id,
                status=data["status"],
                status_msg=data["status_msg"],
                traded_qty=data["traded_qty"],
                traded_price=data["traded_price"],
                order_sysid=data["order_sysid"],
                order_time=data["order_time"],
            )
        self.push(protocol.ORDER, data)

    def on_trade(self, xt_trade: Any) -> None:
        trade_id = str(xt_trade.traded_id)
        if trade_id in self._seen_trades:
            return
        self._seen_trades.add(trade_id)
        remark = _field(xt_trade, "order_remark")
        entry = self._event_entry(xt_trade)
        if entry is None and not remark and self._awaiting():
            self._held_trades.setdefault(int(xt_trade.order_id), []).append(xt_trade)
            return
        if entry is not None:
            entry = self._acknowledge(entry, int(xt_trade.order_id), _field(xt_trade, "order_sysid"))
        self.push(protocol.TRADE, _trade_data(xt_trade, entry))

    def on_order_error(self, error: Any) -> None:
        remark = _field(error, "order_remark")
        entry = self._entry_for(remark, error.order_id)
        if entry is None and not remark and self._awaiting():
            self._held_errors.setdefault(int(error.order_id), []).append(error)
            return
        if entry is not None:
            entry = self._acknowledge(entry, int(error.order_id or 0), None)
            if entry.qmt_order_id is None:  # refused before MiniQMT gave it an id: nothing was placed
                self._inflight.discard(entry.order_id)
                if entry.state != "refused":
                    self.journal.refused(entry.order_id, str(error.error_msg))
            elif entry.status not in protocol.FINAL_ORDER_STATUS:
                self.journal.observed(
                    entry.order_id,
                    status=57,
                    status_msg=str(error.error_msg),
                    traded_qty=entry.traded_qty,
                    traded_price=entry.traded_price,
                    order_sysid=None,
                    order_time=None,
                )
        self.push(
            protocol.ORDER_ERROR,
            {
                "order_id": entry.order_id if entry else None,
                "qmt_order_id": int(error.order_id) if error.order_id not in (None, 0, -1) else None,
                "error_id": int(error.error_id),
                "error_msg": str(error.error_msg),
            },
        )

    def on_cancel_error(self, error: Any) -> None:
        entry = self._entry_for(None, error.order_id, _field(error, "order_sysid"), market=_field(error, "market"))
        self.push(
            protocol.CANCEL_ERROR,
            {
                "order_id": entry.order_id if entry else None,
                "qmt_order_id": int(error.order_id),
                "order_sysid": str(_field(error, "order_sysid", "") or "") or None,
                "error_id": int(error.error_id),
                "error_msg": str(error.error_msg),
            },
        )

    def on_order_response(self, response: Any) -> None:
        entry = self._entry_for(_field(response, "order_remark"), None)
        if entry is None:
            order_id = self._seq_orders.get(int(response.seq))
            entry = self.journal.get(order_id) if order_id else None
        self._seq_orders.pop(int(response.seq), None)
        if entry is None:
            log.info("an async order response (seq %s) for no journalled order", response.seq)
            return
        qmt_order_id = int(response.order_id or -1)
        if qmt_order_id <= 0:
            self._inflight.discard(entry.order_id)
            message = str(_field(response, "error_msg", "") or "MiniQMT did not accept the order")
            self.journal.refused(entry.order_id, message)
            self.push(
                protocol.ORDER_ERROR,
                {"order_id": entry.order_id, "qmt_order_id": None, "error_id": -1, "error_msg": message},
            )
            return
        self._acknowledge(entry, qmt_order_id, None)
        xt_order = self._trader.query_stock_order(self._account, qmt_order_id) if self.connected else None
        if xt_order is not None:
            self.on_order(xt_order)

    def on_cancel_response(self, response: Any) -> None:
        order_id = self._cancel_seqs.pop(int(response.seq), None)
        entry = (
            self.journal.get(order_id)
            if order_id
            else self._entry_for(None, response.order_id, _field(response, "order_sysid"))
        )
        if int(response.cancel_result) != 0:
            self.push(
                protocol.CANCEL_ERROR,
                {
                    "order_id": entry.order_id if entry else None,
                    "qmt_order_id": int(response.order_id),
                    "order_sysid": str(_field(response, "order_sysid", "") or "") or None,
                    "error_id": int(response.cancel_result),
                    "error_msg": str(_field(response, "error_msg", "") or "MiniQMT refused the cancel"),
                },
            )
            return
        # A cancel "success" says only that MiniQMT took the request (it can say so for an order it never had):
        # the order's own state says whether it is cancelled.
        if self.connected:
            xt_order = self._trader.query_stock_order(self._account, int(response.order_id))
            if xt_order is not None and (entry is None or self._same(entry, xt_order)):
                self.on_order(xt_order)

    def on_account_status(self, status: Any) -> None:
        value = int(status.status)
        if value != self._last_account_status:
            self._last_account_status = value
            self.push(protocol.ACCOUNT_STATUS, {"status": value})

    def on_asset(self, xt_asset: Any) -> None:
        data = normalize.asset(xt_asset)
        if data != self._last_asset:
            self._last_asset = data
            self.push(protocol.ASSET, data)

    def on_position(self, xt_position: Any) -> None:
        data = normalize.position(xt_position)
        if self._last_positions.get(data["ts_code"]) != data:
            self._last_positions[data["ts_code"]] = data
            self.push(protocol.POSITION, data)

    def _release(self, qmt_order_id: int) -> None:
        for trade in self._held_trades.pop(qmt_order_id, []):
            entry = self._event_entry(trade)
            self.push(protocol.TRADE, _trade_data(trade, entry))
        for error in self._held_errors.pop(qmt_order_id, []):
            self.on_order_error(error)

    # --- reconciliation ---------------------------------------------------------------------------------------
    def reconcile(self) -> None:
        """Bring the platform up to date with MiniQMT after a (re)connect and periodically: every order's state,
        every trade (pushed once), positions, asset and account status; journalled orders that MiniQMT never
        answered and does not have (by remark) are reported with status 255 and never placed again; orders MiniQMT
        had acknowledged and no longer has after a reconnect (a restart that lost its session) are reported lost."""
        if not self.connected:
            return
        listed = self._trader.query_stock_orders(self._account, False)
        orders = listed or []
        matched, ambiguous = self._match(orders)
        for i, xt_order in enumerate(orders):
            self.on_order(xt_order, matched.get(i))
        if listed is not None:  # None is also MiniQMT's answer to a failed query: no evidence that an order is gone
            self._report_lost({e.order_id for e in matched.values()}, ambiguous)
        for entry in self.journal.in_state(SENDING, SENT):
            if entry.order_id not in self._inflight:
                log.warning(
                    "order %s was journalled but MiniQMT has no order with remark %s: unknown (255)",
                    entry.order_id,
                    entry.remark,
                )
                self.journal.unconfirmed(entry.order_id)
                updated = self.journal.get(entry.order_id)
                if updated is not None:
                    self.push(protocol.ORDER, normalize.entry_order(updated))
        for xt_trade in self._trader.query_stock_trades(self._account) or []:
            self.on_trade(xt_trade)
        if not self._awaiting():
            for qmt_order_id in list(self._held_trades) + list(self._held_errors):
                self._release(qmt_order_id)
        for xt_position in self._trader.query_stock_positions(self._account) or []:
            self.on_position(xt_position)
        xt_asset = self._trader.query_stock_asset(self._account)
        if xt_asset is not None:
            self.on_asset(xt_asset)
        for status in self._trader.query_account_status() or []:
            if str(_field(status, "account_id", "")) == self.account_id:
                self.on_account_status(status)

    def _match(self, xt_orders: list[Any]) -> tuple[dict[int, Entry], set[str]]:
        """MiniQMT's full list of orders matched to the journal: {index in the list: entry}, and the entries left
        unmatched that one of the list's unmatched orders could be (no remark, the same terms): never guessed, and
        never reported lost.

        By remark, then by order_sysid (with the code); then by MiniQMT's id only for an order whose id was confirmed
        on the current connection, and only when the listed order's remark, sysid and code do not say it is another
        (an id from before a reconnect may name another order now). Never by terms (code, side, quantity, price) alone:
        a manual order in the QMT client can have the same ones (docs/qmt-bridge.md, "MiniQMT restarts")."""
        matched: dict[int, Entry] = {}
        taken: set[str] = set()
        for i, xt_order in enumerate(xt_orders):
            remark, sysid = str(_field(xt_order, "order_remark") or ""), str(_field(xt_order, "order_sysid") or "")
            entry = self.journal.by_remark(remark) if remark else None
            if entry is None and sysid:
                entry = self._by_sysid(sysid, xt_order.stock_code)
            if entry is not None and entry.order_id not in taken:
                matched[i] = entry
                taken.add(entry.order_id)
        for i, xt_order in enumerate(xt_orders):
            if i in matched or int(xt_order.order_id or 0) <= 0:
                continue
            remark, sysid = str(_field(xt_order, "order_remark") or ""), str(_field(xt_order, "order_sysid") or "")
            entry = self.journal.by_qmt_order_id(int(xt_order.order_id))
            if (
                entry is None
                or entry.order_id in taken
                or entry.order_id not in self._confirmed
                or _contradicts(entry, remark, sysid, xt_order.stock_code)
            ):
                continue
            matched[i] = entry
            taken.add(entry.order_id)
        today = _today()
        unmatched_terms = {
            _order_terms(xt_order)
            for i, xt_order in enumerate(xt_orders)
            if i not in matched and not _field(xt_order, "order_remark")
        }
        ambiguous = {
            e.order_id
            for e in self.journal.in_state(SENT, ACKNOWLEDGED)
            if e.order_id not in taken
            and e.order_id not in self._inflight
            and not e.order_sysid
            and e.status not in protocol.FINAL_ORDER_STATUS
            and e.created_at.startswith(today)
            and _entry_terms(e) in unmatched_terms
        }
        return matched, ambiguous

    def _report_lost(self, found: set[str], ambiguous: set[str]) -> None:
        """Today's orders MiniQMT acknowledged before the current connection, not final, that its full list no
        longer has (by remark, sysid or a confirmed id): lost in a restart, or not told apart.

        - One with a contract number or a fill is left as it is (logged once a connection): MiniQMT's list missing it
          is no proof that the exchange does not have it. Its old MiniQMT id is let go (it may name another order
          now): a cancel of it goes by its contract number.
        - One that an unmatched order with its terms and no remark could be (`ambiguous`) is not guessed: reported
          unknown (255) with UNIDENTIFIED_MESSAGE, no MiniQMT id, never placed again; execution keeps it open as
          unknown (alerted) until someone checks it in QMT.
        - Any other never reached the exchange: made final as junk (57) with LOST_MESSAGE, never placed again."""
        today = _today()
        for entry in self.journal.in_state(ACKNOWLEDGED):
            if (
                entry.order_id in found
                or entry.order_id in self._confirmed
                or entry.status in protocol.FINAL_ORDER_STATUS
                or not entry.created_at.startswith(today)
            ):
                continue
            if entry.order_sysid or entry.traded_qty:
                if entry.qmt_order_id is not None:
                    self.journal.forget_id(entry.order_id)
                if entry.order_id not in self._missing:
                    self._missing.add(entry.order_id)
                    log.warning(
                        "order %s (sysid %s, %s filled) is not in MiniQMT's orders: left as it is, check it in QMT",
                        entry.order_id,
                        entry.order_sysid,
                        entry.traded_qty,
                    )
                continue
            if entry.order_id in ambiguous:
                log.warning(
                    "order %s (MiniQMT id %s before the reconnect, no contract number seen) is not found again, and "
                    "MiniQMT lists an order with its terms and no remark (maybe it, maybe a manual one): not guessed, "
                    "unknown (255); check it in QMT",
                    entry.order_id,
                    entry.qmt_order_id,
                )
                self.journal.unidentified(entry.order_id)
            else:
                log.warning(
                    "order %s (MiniQMT id %s) is gone from MiniQMT's orders after a reconnect: lost in a restart",
                    entry.order_id,
                    entry.qmt_order_id,
                )
                self.journal.lost(entry.order_id)
            updated = self.journal.get(entry.order_id)
            if updated is not None:
                self._last_order.pop(entry.order_id, None)
                self.push(protocol.ORDER, normalize.entry_order(updated))

    # --- requests ---------------------------------------------------------------------------------------------
    def _same(self, entry: Entry, xt_order: Any) -> bool:
        """Whether MiniQMT's order (found by the entry's id) is the entry's order: by its remark, else its sysid
        (and code), else the id must have been confirmed on this connection."""
        remark, sysid = str(_field(xt_order, "order_remark") or ""), str(_field(xt_order, "order_sysid") or "")
        if remark:
            return remark == entry.remark
        if sysid and entry.order_sysid:
            return sysid == entry.order_sysid and normalize.ts_code(xt_order.stock_code) == entry.ts_code
        return entry.order_id in self._confirmed

    def _search(self, entry: Entry) -> Any:
        """The entry's order in MiniQMT's list, by its remark or its sysid and code (None: not there, or the list
        could not be had)."""
        for xt_order in self._trader.query_stock_orders(self._account, False) or []:
            if _field(xt_order, "order_remark") == entry.remark or (
                entry.order_sysid
                and _field(xt_order, "order_sysid") == entry.order_sysid
                and normalize.ts_code(xt_order.stock_code) == entry.ts_code
            ):
                return xt_order
        return None

    def _locate(self, entry: Entry) -> Any:
        """MiniQMT's order for a journalled one, when it can be told to be it now: under the entry's MiniQMT id when
        that order's remark or sysid says so or the id was confirmed on this connection, else found in MiniQMT's list
        by remark or sysid. None: not identified (an id from before a restart is never taken on its own)."""
        if not self.connected or entry.state == "refused":
            return None
        if entry.qmt_order_id is not None:
            xt_order = self._trader.query_stock_order(self._account, entry.qmt_order_id)
            if xt_order is not None and self._same(entry, xt_order):
                return xt_order
        return self._search(entry)

    def current_order(self, entry: Entry) -> dict[str, Any]:
        """What the bridge knows of a journalled order now (MiniQMT's state when it can be had): looked up by its
        MiniQMT id when that still names it, else in MiniQMT's list by remark or sysid."""
        xt_order = self._locate(entry)
        if xt_order is not None:
            self.on_order(xt_order, entry)
            return self._order_data(xt_order, self.journal.get(entry.order_id) or entry)
        return normalize.entry_order(self.journal.get(entry.order_id) or entry)

    def place(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            req = check_place(body)
        except BadRequest as exc:
            return protocol.failed(protocol.BAD_REQUEST, str(exc))
        existing = self.journal.get(req["order_id"]) or self.journal.by_remark(req["remark"])
        if existing is not None:
            if existing.order_id != req["order_id"]:
                return protocol.failed(protocol.BAD_REQUEST, f"remark: {req['remark']!r} is another order's")
            return protocol.ok({"state": "known", "order": self.current_order(existing)})
        if not self.connected:
            return protocol.failed(protocol.QMT_DISCONNECTED, "the bridge has no link to MiniQMT now: nothing was sent")
        created, entry = self.journal.begin(
            order_id=req["order_id"],
            remark=req["remark"],
            ts_code=req["ts_code"],
            side=req["side"],
            qty=req["qty"],
            price_type=req["price_type"],
            price=format(req["price"], "f"),
            strategy_name=req["strategy_name"],
        )
        if not created:
            return protocol.ok({"state": "known", "order": self.current_order(entry)})
        self._inflight.add(entry.order_id)
        try:
            seq = self._trader.order_stock_async(
                self._account,
                req["ts_code"],
                normalize.ORDER_TYPES[req["side"]],
                req["qty"],
                req["price_type"],
                float(req["price"]),
                req["strategy_name"],
                req["remark"],
            )
        except Exception:
            # Whether MiniQMT took it is unknown: reported as such (255) and resolved by its remark at the next
            # reconciliation; never sent again.
            log.exception("order_stock_async raised for order %s: its outcome is unknown", entry.order_id)
            self._inflight.discard(entry.order_id)
            return protocol.ok({"state": "known", "order": normalize.entry_order(entry)})
        if seq is None or int(seq) < 0:
            self._inflight.discard(entry.order_id)
            message = "MiniQMT refused the order (order_stock_async returned -1): nothing was placed"
            self.journal.refused(entry.order_id, message)
            return protocol.failed(protocol.QMT_REFUSED, message)
        self._seq_orders[int(seq)] = entry.order_id
        current = self.journal.get(entry.order_id)
        if current is not None and current.state == SENDING:  # the response may already have acknowledged it
            self.journal.sent(entry.order_id, int(seq))
        log.info("placed order %s (%s %s %s) seq %s", entry.order_id, req["side"], req["qty"], req["ts_code"], seq)
        return protocol.ok({"state": "placed", "order": None})

    def cancel(self, body: dict[str, Any]) -> dict[str, Any]:
        """A cancel goes by MiniQMT's order id only when that id names the order for sure now (confirmed on this
        connection, or the order was just found by its remark or sysid); else by the order's contract number
        (cancel_order_stock_sysid) when one was seen; else it is refused with nothing sent -- never by an id from
        before a restart, which may name another order (a manual one in the QMT client) now."""
        if set(body) != {"order_id"} or not isinstance(body.get("order_id"), str):
            return protocol.failed(protocol.BAD_REQUEST, "order_id: a cancel takes exactly one string order_id")
        entry = self.journal.get(body["order_id"])
        if entry is None:
            return protocol.failed(protocol.UNKNOWN_ORDER, f"order_id: the bridge has no order {body['order_id']!r}")
        if not self.connected:
            return protocol.failed(protocol.QMT_DISCONNECTED, "the bridge has no link to MiniQMT now: nothing was sent")
        xt_order = self._locate(entry)
        if xt_order is not None:
            self.on_order(xt_order, entry)
            order = self._order_data(xt_order, self.journal.get(entry.order_id) or entry)
        else:
            entry = self.journal.get(entry.order_id) or entry
            order = normalize.entry_order(entry)
        if order["status"] in protocol.FINAL_ORDER_STATUS:
            return protocol.ok({"state": "final", "order": order})
        if xt_order is not None:
            seq = self._trader.cancel_order_stock_async(self._account, int(xt_order.order_id))
            if seq is None or int(seq) < 0:
                return protocol.failed(protocol.QMT_REFUSED, "MiniQMT refused the cancel (-1): nothing was sent")
            self._cancel_seqs[int(seq)] = entry.order_id
            return protocol.ok({"state": "requested", "order": order})
        if entry.order_sysid:
            return self._cancel_by_sysid(entry, order)
        if entry.qmt_order_id is None and entry.state != ACKNOWLEDGED:
            message = "MiniQMT has no order with this order's remark (yet): nothing was sent"
        else:
            message = (
                "MiniQMT's order for this order cannot be told apart now (a MiniQMT restart renumbered its orders and "
                "this one was not found again) and its contract number is unknown: nothing was sent; cancel it in QMT"
            )
        return protocol.failed(protocol.QMT_REFUSED, message)

    def _cancel_by_sysid(self, entry: Entry, order: dict[str, Any]) -> dict[str, Any]:
        """Cancel an order MiniQMT's list does not show by its id, by its contract number on its exchange."""
        exchange = entry.ts_code.rsplit(".", 1)[-1]
        market = SYSID_MARKETS.get(exchange)
        if market is None or entry.order_sysid is None:
            return protocol.failed(
                protocol.QMT_REFUSED,
                f"the order is not identified at MiniQMT now and a cancel by contract number is not available on "
                f"{exchange}: nothing was sent; cancel it in QMT",
            )
        log.warning(
            "order %s is not identified by a MiniQMT id now: cancelled by its contract number %s on %s",
            entry.order_id,
            entry.order_sysid,
            exchange,
        )
        result = self._trader.cancel_order_stock_sysid(self._account, market, entry.order_sysid)
        if result is None or int(result) != 0:
            return protocol.failed(
                protocol.QMT_REFUSED, "MiniQMT refused the cancel by contract number (-1): nothing was cancelled"
            )
        return protocol.ok({"state": "requested", "order": order})

    def _require(self) -> dict[str, Any] | None:
        if not self.connected:
            return protocol.failed(protocol.QMT_DISCONNECTED, "the bridge has no link to MiniQMT now")
        return None

    def query_order(self, body: dict[str, Any]) -> dict[str, Any]:
        if set(body) != {"order_id"} or not isinstance(body.get("order_id"), str):
            return protocol.failed(protocol.BAD_REQUEST, "order_id: query_order takes exactly one string order_id")
        entry = self.journal.get(body["order_id"])
        if entry is None:
            # not in the journal (lost with its file, or another bridge's): MiniQMT may have it all the same, by the
            # order's remark -- an order MiniQMT has is never reported as not known
            return protocol.ok(self._unjournalled(body["order_id"]))
        order = self.current_order(entry)
        trades: list[dict[str, Any]] = []
        if order["qmt_order_id"] is not None and self.connected:
            trades = [
                _trade_data(t, entry)
                for t in self._trader.query_stock_trades(self._account) or []
                if (of := self._event_entry(t)) is not None and of.order_id == entry.order_id
            ]
        return protocol.ok({"known": True, "order": order, "trades": trades})

    def _unjournalled(self, order_id: str) -> dict[str, Any]:
        """`query_order`'s answer for an order the journal does not have: MiniQMT's order with its remark, if any."""
        if not self.connected:
            return {"known": False, "order": None, "trades": []}
        remark = protocol.remark_for(order_id)
        for xt_order in self._trader.query_stock_orders(self._account, False) or []:
            if _field(xt_order, "order_remark") == remark:
                trades = [
                    normalize.trade(t, order_id)
                    for t in self._trader.query_stock_trades(self._account) or []
                    if int(t.order_id) == int(xt_order.order_id)
                ]
                return {"known": True, "order": normalize.order(xt_order, order_id), "trades": trades}
        return {"known": False, "order": None, "trades": []}

    def query_orders(self, body: dict[str, Any]) -> dict[str, Any]:
        if (failed := self._require()) is not None:
            return failed
        xt_orders = self._trader.query_stock_orders(self._account, False) or []
        orders = []
        for xt_order in xt_orders:
            entry = self._event_entry(xt_order)
            if entry is not None:
                entry = self._acknowledge(entry, int(xt_order.order_id), _field(xt_order, "order_sysid"))
            orders.append(self._order_data(xt_order, entry))
        known = {o["order_id"] for o in orders}
        today = datetime.now(CST).date().isoformat()
        for entry in self.journal.in_state(UNCONFIRMED, SENDING, SENT, LOST):
            if entry.order_id not in known and entry.created_at.startswith(today):
                orders.append(normalize.entry_order(entry))
        return protocol.ok({"orders": orders})

    def query_trades(self, body: dict[str, Any]) -> dict[str, Any]:
        if (failed := self._require()) is not None:
            return failed
        trades = [_trade_data(t, self._event_entry(t)) for t in self._trader.query_stock_trades(self._account) or []]
        return protocol.ok({"trades": trades})

    def query_positions(self, body: dict[str, Any]) -> dict[str, Any]:
        if (failed := self._require()) is not None:
            return failed
        positions = [normalize.position(p) for p in self._trader.query_stock_positions(self._account) or []]
        return protocol.ok({"positions": positions})

    def query_asset(self, body: dict[str, Any]) -> dict[str, Any]:
        if (failed := self._require()) is not None:
            return failed
        xt_asset = self._trader.query_stock_asset(self._account)
        if xt_asset is None:
            return protocol.failed(protocol.QMT_DISCONNECTED, "MiniQMT returned no asset for the account")
        return protocol.ok({"asset": normalize.asset(xt_asset)})


def _today() -> str:
    return datetime.now(CST).date().isoformat()


def _contradicts(entry: Entry, remark: str, sysid: str, stock_code: Any = None) -> bool:
    """An event's remark, sysid or code that says it is not the entry's order."""
    return (
        bool(remark and remark != entry.remark)
        or bool(sysid and entry.order_sysid and sysid != entry.order_sysid)
        or bool(stock_code and normalize.ts_code(stock_code) != entry.ts_code)
    )


def _exchange_of(market: Any) -> str | None:
    """The exchange an xtquant `market` names (0/'SH', 1/'SZ', 70/'BJ'); None when it names none of them."""
    if isinstance(market, str):
        return market.upper() if market.upper() in ("SH", "SZ", "BJ") else None
    if isinstance(market, int) and not isinstance(market, bool):
        return {0: "SH", 1: "SZ", 70: "BJ"}.get(market)
    return None


def _trade_data(xt_trade: Any, entry: Entry | None) -> dict[str, Any]:
    return normalize.trade(xt_trade, entry.order_id if entry else None, entry.remark if entry else "")


def _price_key(value: Any) -> str | None:
    try:
        return format(Decimal(str(value)).quantize(Decimal("0.001")), "f")
    except (InvalidOperation, ValueError):
        return None


def _entry_terms(entry: Entry) -> tuple[Any, ...]:
    return (entry.ts_code, entry.side, entry.qty, entry.price_type, _price_key(entry.price))


def _order_terms(xt_order: Any) -> tuple[Any, ...]:
    return (
        normalize.ts_code(xt_order.stock_code),
        normalize.side(xt_order.order_type),
        int(xt_order.order_volume),
        int(xt_order.price_type),
        normalize.decimal_text(xt_order.price),
    )


def _stop(trader: Any) -> None:
    try:
        trader.stop()
    except Exception:
        log.exception("stopping the old trader failed")


def _callback(base: type, link: QmtLink, generation: int) -> Any:
    """An XtQuantTraderCallback whose methods hand each event to the link's loop."""

    class Callback(base):
        def on_disconnected(self) -> None:
            link.from_xt(generation, link.on_disconnected, None)

        def on_account_status(self, status: Any) -> None:
            link.from_xt(generation, link.on_account_status, status)

        def on_stock_asset(self, asset: Any) -> None:
            link.from_xt(generation, link.on_asset, asset)

        def on_stock_order(self, order: Any) -> None:
            link.from_xt(generation, link.on_order, order)

        def on_stock_trade(self, trade: Any) -> None:
            link.from_xt(generation, link.on_trade, trade)

        def on_stock_position(self, position: Any) -> None:
            link.from_xt(generation, link.on_position, position)

        def on_order_error(self, order_error: Any) -> None:
            link.from_xt(generation, link.on_order_error, order_error)

        def on_cancel_error(self, cancel_error: Any) -> None:
            link.from_xt(generation, link.on_cancel_error, cancel_error)

        def on_order_stock_async_response(self, response: Any) -> None:
            link.from_xt(generation, link.on_order_response, response)

        def on_cancel_order_stock_async_response(self, response: Any) -> None:
            link.from_xt(generation, link.on_cancel_response, response)

    return Callback()

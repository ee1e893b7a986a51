"""The simulated broker behind the fake xttrader/xtdata: orders, trades, positions, cash, the connected trader
sessions, and the quirks a test can switch on. One per process (`broker()`; `reset()` starts a fresh one).

Environment (for a bridge run as a subprocess):
  FAKE_XTQUANT_STATE=<file>            the broker's orders/trades/positions/cash persist there (a restarted bridge
                                       sees the same "MiniQMT" orders)
  FAKE_XTQUANT_CONTROL=127.0.0.1:<port> a small HTTP control server (POST /<action> with a JSON body; see `control`);
                                       port 0 takes a free port, written as host:port to FAKE_XTQUANT_CONTROL_FILE

Behaviours (`set_behaviour`): refuse (order_stock_async returns -1), reject (a message: the next orders are junked
with it, their on_order_error after the async response as the library holds it), trade_before_response (the order
fills at once and the trade is pushed before the async response), duplicate (every order/trade push comes twice),
silent (an order is placed at the broker but no callback at all comes for it, nor for its fills or cancel: only
queries show them), auto_fill, cancel_unknown_ok
(default True: a cancel of an order the broker never had is answered as a success, as the real one can),
strip_remark (order/trade/error pushes come without order_remark, as some brokers' do; the async response keeps
it), fail_async (a message: the async call returns a seq, but the response has order_id -1 and the message, and an
on_order_error with order_id -1 follows; nothing is placed), place_delay_s (seconds order_stock(_async) takes
before the order reaches the broker: a bridge killed meanwhile never placed it), unreported (orders stay 49 待报 with
no order_sysid until they fill: the counter has not numbered them yet), orders_query_fails (query_stock_orders
answers None, MiniQMT's answer to a failed query; the single-order query still answers).

Cancels: by order id (`cancel_order_stock(_async)`) or by contract number (`cancel_order_stock_sysid(acc, market,
sysid)`, market 0/1 or 'SH'/'SZ' as xttrader documents it; anything else -1). Every cancel call that reaches the broker
is recorded in `cancel_calls` ({"order_id"} or {"market", "order_sysid"}; not persisted).

Restarts (`restart`): every connected trader gets on_disconnected and is gone, with the callbacks it had queued and
not yet delivered (async responses too); connect() works again at once. With `lose_session` MiniQMT comes back
without its session: orders 48/49 (never reported) are gone; every other order and its trades lose order_remark and
strategy_name and are renumbered from `id_base`, newest first (an old order_id may now name another order);
order_sysid (the counter's contract number) and traded_id (the counter's trade number) never change. Each order
keeps, for the tests only, the remark it was placed with (`_placed_remark`, in the control server's `orders`; never
in a push or a query)."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from . import xtconstant as c
from . import xttype

FINAL = {c.ORDER_PART_CANCEL, c.ORDER_CANCELED, c.ORDER_SUCCEEDED, c.ORDER_JUNK}
DEFAULT_BEHAVIOURS: dict[str, Any] = {
    "refuse": False,
    "reject": "",
    "trade_before_response": False,
    "duplicate": False,
    "silent": False,
    "auto_fill": False,
    "cancel_unknown_ok": True,
    "strip_remark": False,
    "fail_async": "",
    "place_delay_s": 0.0,
    "unreported": False,
    "orders_query_fails": False,
}
UNREPORTED = {c.ORDER_UNREPORTED, c.ORDER_WAIT_REPORTING}


def xt_order(order: dict[str, Any]) -> xttype.XtOrder:
    """An order as MiniQMT shows it (the fake's own bookkeeping, keys starting with `_`, left out)."""
    return xttype.XtOrder(**{k: v for k, v in order.items() if not k.startswith("_")})


class Broker:
    def __init__(self, state_file: str | None = None) -> None:
        self.lock = threading.RLock()
        self.state_file = Path(state_file) if state_file else None
        self.orders: dict[int, dict[str, Any]] = {}
        self.trades: list[dict[str, Any]] = []
        self.positions: dict[str, dict[str, Any]] = {}
        self.cash = 1_000_000.0
        self.frozen_cash = 0.0
        self.next_order_id = 1001
        self.next_trade_id = 1
        self.next_sysid = 1001  # the counter's contract numbers: never reused, not even by a restart
        self.restarts = 0
        self.order_calls: list[dict[str, Any]] = []  # every order_stock(_async) call that reached the broker
        self.silent_orders: set[int] = set()  # placed while `silent`: no callback ever comes for them
        self.cancel_calls: list[dict[str, Any]] = []  # every cancel call that reached the broker (by id or sysid)
        self.account_status = c.ACCOUNT_STATUS_OK
        self.down = False
        self.sessions: list[Any] = []  # connected XtQuantTrader objects
        self.traders_created = 0
        self.behaviours = dict(DEFAULT_BEHAVIOURS)
        self.quote_subs: dict[int, tuple[list[str], Callable[[dict[str, Any]], None]]] = {}
        # subscribe_quote: seq -> (code, period, callback)
        self.tick_subs: dict[int, tuple[str, str, Callable[[dict[str, Any]], None]]] = {}
        self._seq = 0
        self._load()

    # --- persistence ------------------------------------------------------------------------------------------
    def _load(self) -> None:
        if self.state_file is None or not self.state_file.exists():
            return
        state = json.loads(self.state_file.read_text())
        self.orders = {int(k): v for k, v in state["orders"].items()}
        self.trades = state["trades"]
        self.positions = state["positions"]
        self.cash = state["cash"]
        self.next_order_id = state["next_order_id"]
        self.next_trade_id = state["next_trade_id"]
        self.next_sysid = state.get("next_sysid", self.next_order_id)
        self.restarts = state.get("restarts", 0)
        self.order_calls = state["order_calls"]
        self.silent_orders = set(state.get("silent_orders", []))

    def _save(self) -> None:
        if self.state_file is None:
            return
        state = {
            "orders": self.orders,
            "trades": self.trades,
            "positions": self.positions,
            "cash": self.cash,
            "next_order_id": self.next_order_id,
            "next_trade_id": self.next_trade_id,
            "next_sysid": self.next_sysid,
            "restarts": self.restarts,
            "order_calls": self.order_calls,
            "silent_orders": sorted(self.silent_orders),
        }
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self.state_file)

    # --- sessions ---------------------------------------------------------------------------------------------
    def next_seq(self) -> int:
        with self.lock:
            self._seq += 1
            return self._seq

    def attach(self, trader: Any) -> int:
        with self.lock:
            if self.down:
                return -1
            self.sessions.append(trader)
            return 0

    def detach(self, trader: Any) -> None:
        with self.lock:
            if trader in self.sessions:
                self.sessions.remove(trader)

    def _push(self, account_id: str, method: str, obj: Any) -> None:
        if getattr(obj, "order_id", None) in self.silent_orders:
            return  # placed while silent: nothing is ever pushed of it
        if self.behaviours["strip_remark"] and hasattr(obj, "order_remark"):
            obj = type(obj)(**{**obj.as_dict(), "order_remark": ""})
        times = 2 if self.behaviours["duplicate"] and method in ("on_stock_order", "on_stock_trade") else 1
        for trader in list(self.sessions):
            if account_id in trader.subscribed:
                for _ in range(times):
                    trader.post(method, obj)

    # --- orders -----------------------------------------------------------------------------------------------
    def place(
        self,
        trader: Any,
        account_id: str,
        code: str,
        order_type: int,
        volume: int,
        price_type: int,
        price: float,
        strategy_name: str,
        remark: str,
        *,
        seq: int | None,
    ) -> int:
        delay = float(self.behaviours["place_delay_s"] or 0)
        if delay > 0:
            time.sleep(delay)
        with self.lock:
            if trader not in self.sessions:
                return -1
            self.order_calls.append(
                {"stock_code": code, "order_remark": remark, "order_volume": volume, "price_type": price_type}
            )
            if self.behaviours["refuse"]:
                self._save()
                return -1
            if self.behaviours["fail_async"] and seq is not None:
                message = self.behaviours["fail_async"]
                trader.post(
                    "on_order_stock_async_response",
                    xttype.XtOrderResponse(
                        account_type=2,
                        account_id=account_id,
                        order_id=-1,
                        strategy_name=strategy_name,
                        order_remark=remark,
                        error_msg=message,
                        seq=seq,
                    ),
                )
                self._push(
                    account_id,
                    "on_order_error",
                    xttype.XtOrderError(
                        account_type=2,
                        account_id=account_id,
                        order_id=-1,
                        error_id=-1,
                        error_msg=message,
                        strategy_name=strategy_name,
                        order_remark=remark,
                    ),
                )
                return seq
            order_id = self.next_order_id
            self.next_order_id += 1
            unreported = bool(self.behaviours["unreported"])
            order = {
                "account_type": 2,
                "account_id": account_id,
                "stock_code": code,
                "order_id": order_id,
                "order_sysid": "" if unreported else self._new_sysid(),
                "order_time": int(time.time()),
                "order_type": order_type,
                "order_volume": volume,
                "price_type": price_type,
                "price": price,
                "traded_volume": 0,
                "traded_price": 0.0,
                "order_status": c.ORDER_WAIT_REPORTING if unreported else c.ORDER_REPORTED,
                "status_msg": "",
                "strategy_name": strategy_name,
                "order_remark": remark,
                "direction": c.DIRECTION_FLAG_BUY if order_type == c.STOCK_BUY else c.DIRECTION_FLAG_SELL,
                "offset_flag": 0,
                "secu_account": "A000001",
                "instrument_name": code,
                "_placed_remark": remark,
            }
            if self.behaviours["silent"]:
                self.silent_orders.add(order_id)
            self.orders[order_id] = order
            self._save()
            if self.behaviours["silent"]:
                return order_id
            response = xttype.XtOrderResponse(
                account_type=2,
                account_id=account_id,
                order_id=order_id,
                strategy_name=strategy_name,
                order_remark=remark,
                error_msg="",
                seq=seq if seq is not None else 0,
            )
            if self.behaviours["trade_before_response"]:
                self._fill(order, volume, price or 10.0, push_order=False)
                if seq is not None:
                    trader.post("on_order_stock_async_response", response)
                self._push(account_id, "on_stock_order", xt_order(order))
                return order_id
            reject = self.behaviours["reject"]
            if reject:
                order["order_status"] = c.ORDER_JUNK
                order["status_msg"] = reject
                self._save()
            if seq is not None:
                trader.post("on_order_stock_async_response", response)
            self._push(account_id, "on_stock_order", xt_order(order))
            if reject:
                error = xttype.XtOrderError(
                    account_type=2,
                    account_id=account_id,
                    order_id=order_id,
                    error_id=-61,
                    error_msg=reject,
                    strategy_name=strategy_name,
                    order_remark=remark,
                )
                self._push(account_id, "on_order_error", error)
            elif self.behaviours["auto_fill"]:
                self._fill(order, volume, price or 10.0)
            return order_id

    def _new_sysid(self) -> str:
        sysid = f"S{self.next_sysid}"
        self.next_sysid += 1
        return sysid

    def _fill(self, order: dict[str, Any], qty: int, price: float, *, push_order: bool = True) -> None:
        if order["order_status"] in UNREPORTED:  # reported to the exchange on its way to a fill
            order["order_sysid"] = self._new_sysid()
        qty = min(qty, order["order_volume"] - order["traded_volume"])
        if qty <= 0:
            raise ValueError(f"order {order['order_id']} has nothing left to fill")
        before = order["traded_volume"] * order["traded_price"]
        order["traded_volume"] += qty
        order["traded_price"] = round((before + qty * price) / order["traded_volume"], 3)
        order["order_status"] = (
            c.ORDER_SUCCEEDED if order["traded_volume"] == order["order_volume"] else c.ORDER_PART_SUCC
        )
        amount = round(qty * price, 2)
        trade = {
            "account_type": 2,
            "account_id": order["account_id"],
            "stock_code": order["stock_code"],
            "order_type": order["order_type"],
            "traded_id": f"T{self.next_trade_id}",
            "traded_time": int(time.time()),
            "traded_price": price,
            "traded_volume": qty,
            "traded_amount": amount,
            "order_id": order["order_id"],
            "order_sysid": order["order_sysid"],
            "strategy_name": order["strategy_name"],
            "order_remark": order["order_remark"],
            "direction": order["direction"],
            "offset_flag": 0,
            "commission": round(max(5.0, amount * 0.00025), 2),
            "secu_account": "A000001",
            "instrument_name": order["stock_code"],
        }
        self.next_trade_id += 1
        self.trades.append(trade)
        pos = self.positions.setdefault(
            order["stock_code"],
            {"volume": 0, "can_use_volume": 0, "open_price": price, "avg_price": price, "yesterday_volume": 0},
        )
        sign = 1 if order["order_type"] == c.STOCK_BUY else -1
        pos["volume"] += sign * qty
        if sign < 0:
            pos["can_use_volume"] -= qty
        self.cash -= sign * amount
        self._save()
        self._push(order["account_id"], "on_stock_trade", xttype.XtTrade(**trade))
        if push_order:
            self._push(order["account_id"], "on_stock_order", xt_order(order))

    def find(
        self, *, order_id: int | None = None, remark: str | None = None, order_sysid: str | None = None
    ) -> dict[str, Any]:
        """An order by its (current) order_id, its order_remark (as MiniQMT has it now) or its order_sysid."""
        with self.lock:
            for order in self.orders.values():
                if (
                    order["order_id"] == order_id
                    or (remark and order["order_remark"] == remark)
                    or (order_sysid and order["order_sysid"] == order_sysid)
                ):
                    return order
        raise KeyError(f"no order {order_id or remark or order_sysid!r} at the fake broker")

    def fill(
        self,
        *,
        order_id: int | None = None,
        remark: str | None = None,
        order_sysid: str | None = None,
        qty: int | None = None,
        price: float = 10.0,
    ) -> None:
        with self.lock:
            order = self.find(order_id=order_id, remark=remark, order_sysid=order_sysid)
            self._fill(order, qty if qty is not None else order["order_volume"] - order["traded_volume"], price)

    def reject(
        self,
        *,
        order_id: int | None = None,
        remark: str | None = None,
        order_sysid: str | None = None,
        msg: str = "rejected",
    ) -> None:
        with self.lock:
            order = self.find(order_id=order_id, remark=remark, order_sysid=order_sysid)
            order["order_status"] = c.ORDER_JUNK
            order["status_msg"] = msg
            self._save()
            self._push(order["account_id"], "on_stock_order", xt_order(order))

    def cancel_sysid(self, trader: Any, account_id: str, market: Any, order_sysid: str) -> int:
        """cancel_order_stock_sysid: the order with this contract number on the market's exchange (synchronous)."""
        exchange = {0: "SH", 1: "SZ", "SH": "SH", "SZ": "SZ"}.get(market) if not isinstance(market, bool) else None
        with self.lock:
            if trader not in self.sessions:
                return -1
            self.cancel_calls.append({"market": market, "order_sysid": order_sysid})
            if exchange is None:
                return -1
            for order in self.orders.values():
                if order["order_sysid"] == order_sysid and order["stock_code"].endswith("." + exchange):
                    return self._cancel(trader, account_id, order["order_id"], seq=None)
            return 0 if self.behaviours["cancel_unknown_ok"] else -1

    def cancel(self, trader: Any, account_id: str, order_id: int, *, seq: int | None) -> int:
        with self.lock:
            if trader not in self.sessions:
                return -1
            self.cancel_calls.append({"order_id": order_id})
            return self._cancel(trader, account_id, order_id, seq=seq)

    def _cancel(self, trader: Any, account_id: str, order_id: int, *, seq: int | None) -> int:
        with self.lock:
            order = self.orders.get(order_id)
            if order is None:
                if seq is not None:
                    result = 0 if self.behaviours["cancel_unknown_ok"] else -1
                    trader.post(
                        "on_cancel_order_stock_async_response",
                        xttype.XtCancelOrderResponse(
                            account_type=2,
                            account_id=account_id,
                            cancel_result=result,
                            order_id=order_id,
                            order_sysid="",
                            seq=seq,
                            error_msg="",
                        ),
                    )
                return 0 if self.behaviours["cancel_unknown_ok"] else -1
            if order["order_status"] in FINAL:
                if seq is not None:
                    trader.post(
                        "on_cancel_order_stock_async_response",
                        xttype.XtCancelOrderResponse(
                            account_type=2,
                            account_id=account_id,
                            cancel_result=-1,
                            order_id=order_id,
                            order_sysid=order["order_sysid"],
                            seq=seq,
                            error_msg="order is final",
                        ),
                    )
                self._push(
                    account_id,
                    "on_cancel_error",
                    xttype.XtCancelError(
                        account_type=2,
                        account_id=account_id,
                        order_id=order_id,
                        market=0 if order["stock_code"].endswith(".SH") else 1,
                        order_sysid=order["order_sysid"],
                        error_id=-1,
                        error_msg="order is final",
                    ),
                )
                return -1
            if seq is not None:
                trader.post(
                    "on_cancel_order_stock_async_response",
                    xttype.XtCancelOrderResponse(
                        account_type=2,
                        account_id=account_id,
                        cancel_result=0,
                        order_id=order_id,
                        order_sysid=order["order_sysid"],
                        seq=seq,
                        error_msg="",
                    ),
                )
            order["order_status"] = c.ORDER_PART_CANCEL if order["traded_volume"] else c.ORDER_CANCELED
            self._save()
            self._push(account_id, "on_stock_order", xt_order(order))
            return 0

    # --- faults -----------------------------------------------------------------------------------------------
    def disconnect(self, *, down: bool = True) -> None:
        """MiniQMT goes away: every connected trader gets on_disconnected; while `down`, connect() fails."""
        with self.lock:
            self.down = down
            for trader in list(self.sessions):
                trader.lost()
            self.sessions.clear()

    def restart(self, *, lose_session: bool = False, id_base: int = 1001) -> None:
        """MiniQMT restarts: every connected trader gets on_disconnected and is gone, the callbacks it had queued
        and not yet delivered dropped (async responses too). `lose_session`: it comes back without its session --
        orders never reported (48/49) are gone; the others and their trades lose order_remark and strategy_name and
        are renumbered from `id_base`, newest first, so an old order_id may now name another order; order_sysid and
        traded_id stay (the counter's numbers)."""
        with self.lock:
            for trader in list(self.sessions):
                trader.lost(drop_queued=True)
            self.sessions.clear()
            self.down = False
            self.restarts += 1
            self.quote_subs.clear()  # MiniQMT's quote subscriptions are gone with it: the bridge makes them again
            self.tick_subs.clear()
            if lose_session:
                kept = [o for o in self.orders.values() if o["order_status"] not in UNREPORTED]
                kept.sort(key=lambda o: (o["order_time"], o["order_id"]), reverse=True)
                renumbered = {o["order_id"]: id_base + i for i, o in enumerate(kept)}
                for order in kept:
                    order.update(order_id=renumbered[order["order_id"]], order_remark="", strategy_name="")
                self.trades = [
                    {**t, "order_id": renumbered[t["order_id"]], "order_remark": "", "strategy_name": ""}
                    for t in self.trades
                    if t["order_id"] in renumbered
                ]
                self.silent_orders = {renumbered[i] for i in self.silent_orders if i in renumbered}
                self.orders = {o["order_id"]: o for o in kept}
                self.next_order_id = id_base + len(kept)
            self._save()

    def up(self) -> None:
        with self.lock:
            self.down = False

    def set_behaviour(self, **values: Any) -> None:
        with self.lock:
            unknown = set(values) - set(DEFAULT_BEHAVIOURS)
            if unknown:
                raise KeyError(f"unknown behaviours {sorted(unknown)}")
            self.behaviours.update(values)

    def set_account_status(self, status: int) -> None:
        with self.lock:
            self.account_status = status
            for trader in list(self.sessions):
                for account_id in trader.subscribed:
                    trader.post(
                        "on_account_status",
                        xttype.XtAccountStatus(account_type=2, account_id=account_id, status=status),
                    )

    # --- queries ----------------------------------------------------------------------------------------------
    def list_orders(self, account_id: str) -> list[xttype.XtOrder] | None:
        """query_stock_orders' list (None when `orders_query_fails`)."""
        if self.behaviours["orders_query_fails"]:
            return None
        return self.query_orders(account_id)

    def query_orders(self, account_id: str) -> list[xttype.XtOrder]:
        with self.lock:
            return [xt_order(o) for o in self.orders.values() if o["account_id"] == account_id]

    def query_trades(self, account_id: str) -> list[xttype.XtTrade]:
        with self.lock:
            return [xttype.XtTrade(**t) for t in self.trades if t["account_id"] == account_id]

    def query_positions(self, account_id: str) -> list[xttype.XtPosition]:
        with self.lock:
            return [
                xttype.XtPosition(
                    account_type=2,
                    account_id=account_id,
                    stock_code=code,
                    volume=p["volume"],
                    can_use_volume=p["can_use_volume"],
                    open_price=p["open_price"],
                    market_value=round(p["volume"] * p["avg_price"], 2),
                    frozen_volume=0,
                    on_road_volume=0,
                    yesterday_volume=p["yesterday_volume"],
                    avg_price=p["avg_price"],
                    direction=48,
                    last_price=p["avg_price"],
                    profit_rate=0.0,
                    secu_account="A000001",
                    instrument_name=code,
                    float_profit=0.0,
                )
                for code, p in self.positions.items()
            ]

    def query_asset(self, account_id: str) -> xttype.XtAsset:
        with self.lock:
            mv = round(sum(p["volume"] * p["avg_price"] for p in self.positions.values()), 2)
            return xttype.XtAsset(
                account_type=2,
                account_id=account_id,
                cash=round(self.cash, 2),
                frozen_cash=self.frozen_cash,
                market_value=mv,
                total_asset=round(self.cash + mv, 2),
                fetch_balance=round(self.cash, 2),
            )

    # --- quotes -----------------------------------------------------------------------------------------------
    def feed_quotes(self, data: dict[str, dict[str, Any]]) -> None:
        """A full-market snapshot: each whole-quote subscriber gets the codes it subscribed (codes or markets)."""
        from . import xtdata

        with self.lock:
            subs = list(self.quote_subs.values())
        for codes, callback in subs:
            wanted = {k: v for k, v in data.items() if k in codes or k.rsplit(".", 1)[-1] in codes}
            if wanted:
                xtdata.deliver(callback, wanted)

    def feed_ticks(self, data: dict[str, dict[str, Any]]) -> None:
        """Ticks (each a snapshot record, as subscribe_whole_quote's): each subscribe_quote(code, period='tick')
        subscriber of a code gets `{code: [record]}`, as xtdata calls it."""
        from . import xtdata

        with self.lock:
            subs = list(self.tick_subs.values())
        for code, period, callback in subs:
            if period == "tick" and code in data:
                xtdata.deliver(callback, {code: [data[code]]})

    def tick_codes(self) -> list[str]:
        with self.lock:
            return sorted(code for code, period, _ in self.tick_subs.values() if period == "tick")


_broker: Broker | None = None
_broker_lock = threading.Lock()
_server: ThreadingHTTPServer | None = None


def broker() -> Broker:
    global _broker
    with _broker_lock:
        if _broker is None:
            _broker = Broker(os.environ.get("FAKE_XTQUANT_STATE"))
            control = os.environ.get("FAKE_XTQUANT_CONTROL")
            if control:
                _start_control(control)
        return _broker


def reset(state_file: str | None = None) -> Broker:
    """A fresh broker (each test starts with its own MiniQMT)."""
    global _broker
    with _broker_lock:
        if _broker is not None:
            _broker.disconnect(down=False)
        _broker = Broker(state_file)
        return _broker


def control(action: str, body: dict[str, Any]) -> Any:
    """What the control server does for POST /<action>."""
    b = broker()
    if action == "fill":
        b.fill(
            order_id=body.get("order_id"),
            remark=body.get("remark"),
            order_sysid=body.get("order_sysid"),
            qty=body.get("qty"),
            price=body.get("price", 10.0),
        )
    elif action == "reject":
        b.reject(
            order_id=body.get("order_id"),
            remark=body.get("remark"),
            order_sysid=body.get("order_sysid"),
            msg=body.get("msg", "rejected"),
        )
    elif action == "restart":
        unknown = set(body) - {"lose_session", "id_base"}
        if unknown or not isinstance(body.get("lose_session", False), bool):
            raise ValueError(f"restart takes lose_session (bool) and id_base (int), not {sorted(unknown)}")
        b.restart(lose_session=body.get("lose_session", False), id_base=int(body.get("id_base", 1001)))
    elif action == "disconnect":
        b.disconnect(down=body.get("down", True))
    elif action == "up":
        b.up()
    elif action == "behave":
        b.set_behaviour(**body)
    elif action == "quotes":
        b.feed_quotes(body["data"])
    elif action == "ticks":
        b.feed_ticks(body["data"])
    elif action == "account_status":
        b.set_account_status(body["status"])
    elif action == "orders":
        with b.lock:
            return list(b.orders.values())
    elif action == "calls":
        with b.lock:
            return b.order_calls
    elif action == "state":
        with b.lock:
            return {
                "sessions": len(b.sessions),
                "traders_created": b.traders_created,
                "down": b.down,
                "quote_subs": len(b.quote_subs),
                "tick_codes": sorted(code for code, period, _ in b.tick_subs.values() if period == "tick"),
                "restarts": b.restarts,
            }
    else:
        raise KeyError(f"unknown action {action!r}")
    return {"ok": True}


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
            result = control(self.path.strip("/"), body)
            status, payload = 200, {"result": result}
        except (KeyError, ValueError, TypeError) as exc:
            status, payload = 400, {"error": str(exc)}
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _start_control(address: str) -> None:
    global _server
    host, port = address.rsplit(":", 1)
    _server = ThreadingHTTPServer((host, int(port)), _Handler)
    threading.Thread(target=_server.serve_forever, name="fake-xtquant-control", daemon=True).start()
    announce = os.environ.get("FAKE_XTQUANT_CONTROL_FILE")
    if announce:  # port 0 picks a free one: say which
        tmp = Path(announce).with_suffix(".tmp")
        tmp.write_text(f"{host}:{_server.server_address[1]}")
        os.replace(tmp, announce)

"""The fake xttrader: XtQuantTrader and XtQuantTraderCallback with the real names and signatures. Callbacks come on
the trader's own thread (as xtquant's do), never on the caller's."""

from __future__ import annotations

import queue
import threading
import traceback
from typing import Any

from . import fake, xttype


class XtQuantTraderCallback:
    def on_connected(self) -> None:  # never called, as with the real library
        pass

    def on_disconnected(self) -> None:
        pass

    def on_account_status(self, status: Any) -> None:
        pass

    def on_stock_asset(self, asset: Any) -> None:
        pass

    def on_stock_order(self, order: Any) -> None:
        pass

    def on_stock_trade(self, trade: Any) -> None:
        pass

    def on_stock_position(self, position: Any) -> None:
        pass

    def on_order_error(self, order_error: Any) -> None:
        pass

    def on_cancel_error(self, cancel_error: Any) -> None:
        pass

    def on_order_stock_async_response(self, response: Any) -> None:
        pass

    def on_cancel_order_stock_async_response(self, response: Any) -> None:
        pass


class XtQuantTrader:
    def __init__(self, path: str, session: int, callback: Any = None) -> None:
        if not isinstance(session, int):
            raise TypeError("session must be an int")
        self.path = path
        self.session = session
        self.callback = callback
        self.subscribed: set[str] = set()
        self.connected = False
        self.relaxed = False
        self._queue: queue.Queue[tuple[str, Any] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._broker = fake.broker()
        with self._broker.lock:
            self._broker.traders_created += 1

    # --- lifecycle --------------------------------------------------------------------------------------------
    def register_callback(self, callback: Any) -> None:
        self.callback = callback

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"xttrader-{self.session}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._broker.detach(self)
        self.connected = False
        self._queue.put(None)

    def connect(self) -> int:
        result = self._broker.attach(self)
        self.connected = result == 0
        return result

    def subscribe(self, account: Any) -> int:
        if not self.connected or not isinstance(account, xttype.StockAccount):
            return -1
        self.subscribed.add(account.account_id)
        return 0

    def unsubscribe(self, account: Any) -> int:
        self.subscribed.discard(getattr(account, "account_id", None))
        return 0

    def set_relaxed_response_order_enabled(self, enabled: bool) -> None:
        self.relaxed = enabled

    # --- the fake's plumbing ----------------------------------------------------------------------------------
    def post(self, method: str, obj: Any) -> None:
        self._queue.put((method, obj))

    def lost(self, *, drop_queued: bool = False) -> None:
        """MiniQMT went away. `drop_queued` (a restart): the callbacks queued and not yet delivered are dropped."""
        self.connected = False
        stopping = False
        if drop_queued:
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                stopping = stopping or item is None
        self._queue.put(("on_disconnected", None))
        if stopping:
            self._queue.put(None)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            method, obj = item
            if self.callback is None:
                continue
            try:
                fn = getattr(self.callback, method)
                fn() if obj is None else fn(obj)
            except Exception:  # the real library swallows a callback's exception too
                traceback.print_exc()

    def _ok(self, account: Any) -> bool:
        return self.connected and isinstance(account, xttype.StockAccount) and account.account_id in self.subscribed

    # --- orders -----------------------------------------------------------------------------------------------
    def order_stock(
        self,
        account: Any,
        stock_code: str,
        order_type: int,
        order_volume: int,
        price_type: int,
        price: float,
        strategy_name: str = "",
        order_remark: str = "",
    ) -> int:
        if not self._ok(account):
            return -1
        return self._broker.place(
            self,
            account.account_id,
            stock_code,
            order_type,
            order_volume,
            price_type,
            price,
            strategy_name,
            order_remark,
            seq=None,
        )

    def order_stock_async(
        self,
        account: Any,
        stock_code: str,
        order_type: int,
        order_volume: int,
        price_type: int,
        price: float,
        strategy_name: str = "",
        order_remark: str = "",
    ) -> int:
        if not self._ok(account):
            return -1
        seq = self._broker.next_seq()
        result = self._broker.place(
            self,
            account.account_id,
            stock_code,
            order_type,
            order_volume,
            price_type,
            price,
            strategy_name,
            order_remark,
            seq=seq,
        )
        return -1 if result == -1 else seq

    def cancel_order_stock(self, account: Any, order_id: int) -> int:
        if not self._ok(account):
            return -1
        return self._broker.cancel(self, account.account_id, order_id, seq=None)

    def cancel_order_stock_async(self, account: Any, order_id: int) -> int:
        if not self._ok(account):
            return -1
        seq = self._broker.next_seq()
        self._broker.cancel(self, account.account_id, order_id, seq=seq)
        return seq

    def cancel_order_stock_sysid(self, account: Any, market: Any, order_sysid: str) -> int:
        """By the order's contract number; market 0/1 or 'SH'/'SZ'. 0 / -1."""
        if not self._ok(account):
            return -1
        return self._broker.cancel_sysid(self, account.account_id, market, str(order_sysid))

    # --- queries (None both on failure and when empty, as the real ones) --------------------------------------
    def query_stock_orders(self, account: Any, cancelable_only: bool = False) -> list[Any] | None:
        if not self._ok(account):
            return None
        orders = self._broker.list_orders(account.account_id)
        if orders is None:
            return None
        if cancelable_only:
            orders = [o for o in orders if o.order_status not in fake.FINAL]
        return orders or None

    def query_stock_order(self, account: Any, order_id: int) -> Any:
        if not self._ok(account):
            return None
        return next((o for o in self._broker.query_orders(account.account_id) if o.order_id == order_id), None)

    def query_stock_trades(self, account: Any) -> list[Any] | None:
        return (self._broker.query_trades(account.account_id) or None) if self._ok(account) else None

    def query_stock_positions(self, account: Any) -> list[Any] | None:
        return (self._broker.query_positions(account.account_id) or None) if self._ok(account) else None

    def query_stock_position(self, account: Any, stock_code: str) -> Any:
        if not self._ok(account):
            return None
        return next((p for p in self._broker.query_positions(account.account_id) if p.stock_code == stock_code), None)

    def query_stock_asset(self, account: Any) -> Any:
        return self._broker.query_asset(account.account_id) if self._ok(account) else None

    def query_account_status(self) -> list[Any] | None:
        if not self.connected:
            return None
        return [
            xttype.XtAccountStatus(account_type=2, account_id=a, status=self._broker.account_status)
            for a in sorted(self.subscribed)
        ] or None

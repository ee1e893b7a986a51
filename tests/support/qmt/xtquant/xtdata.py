"""The fake xtdata: whole-market quote subscriptions fed by the fake broker (`fake.Broker.feed_quotes`) and per-code
subscriptions (`subscribe_quote`, fed by `fake.Broker.feed_ticks`); callbacks come on xtdata's own thread. Volumes
are in lots, as xtdata gives them for stocks. Signatures as xtquant's: `subscribe_quote(stock_code, period='1d',
start_time='', end_time='', count=0, callback=None) -> seq` (its callback gets `{stock_code: [record, ...]}`),
`unsubscribe_quote(seq)` for either kind."""

from __future__ import annotations

import itertools
import queue
import threading
import traceback
from collections.abc import Callable
from typing import Any

from . import fake

_ids = itertools.count(1)
_queue: queue.Queue[tuple[Callable[[dict[str, Any]], None], dict[str, Any]]] = queue.Queue()
_thread: threading.Thread | None = None
_thread_lock = threading.Lock()


def _run() -> None:
    while True:
        callback, data = _queue.get()
        try:
            callback(data)
        except Exception:
            traceback.print_exc()


def deliver(callback: Callable[[dict[str, Any]], None], data: dict[str, Any]) -> None:
    global _thread
    with _thread_lock:
        if _thread is None:
            _thread = threading.Thread(target=_run, name="xtdata", daemon=True)
            _thread.start()
    _queue.put((callback, data))


def subscribe_whole_quote(code_list: list[str], callback: Callable[[dict[str, Any]], None] | None = None) -> int:
    broker = fake.broker()
    if broker.down or callback is None:
        return -1
    seq = next(_ids)
    with broker.lock:
        broker.quote_subs[seq] = (list(code_list), callback)
    return seq


def subscribe_quote(
    stock_code: str,
    period: str = "1d",
    start_time: str = "",
    end_time: str = "",
    count: int = 0,
    callback: Callable[[dict[str, Any]], None] | None = None,
) -> int:
    broker = fake.broker()
    if broker.down or callback is None:
        return -1
    seq = next(_ids)
    with broker.lock:
        broker.tick_subs[seq] = (stock_code, period, callback)
    return seq


def unsubscribe_quote(seq: int) -> None:
    broker = fake.broker()
    with broker.lock:
        broker.quote_subs.pop(seq, None)
        broker.tick_subs.pop(seq, None)


def get_full_tick(code_list: list[str]) -> dict[str, Any]:
    return {}

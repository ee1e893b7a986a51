"""The bridge's order journal: an sqlite3 file on the Windows box with one row per order the platform asked to
place. The row is written (and committed, synchronous=FULL) BEFORE `order_stock_async` is called, so a crash never
loses which orders may have been sent, and a second `place` of the same order id finds it and is never sent again.

States:
  sending     journalled; order_stock_async not yet answered (or the bridge stopped before it was)
  sent        order_stock_async returned a seq; MiniQMT's order id not yet known
  acknowledged MiniQMT's order id is known (async response, a push or a query by remark)
  refused     order_stock_async returned -1, or MiniQMT refused the order before giving it an id: nothing was
              placed (should MiniQMT show it after all, it becomes acknowledged)
  unconfirmed journalled by an earlier run, never answered and not found in MiniQMT's orders by its remark:
              reported with status 255 (unknown); never placed again. Also an order MiniQMT had acknowledged with
              no contract number seen that, after a restart, only an order with the same terms (and no remark)
              could be: never guessed, 255 with UNIDENTIFIED_MESSAGE
  lost        acknowledged by MiniQMT, then gone from its orders after a reconnect (MiniQMT restarted without its
              session: an order it had not reported to the exchange yet is dropped): reported as junk (57, "MiniQMT
              lost the order in a restart"), nothing filled; never placed again
MiniQMT's order id (`qmt_order_id`, UNIQUE) is the one MiniQMT uses NOW: a restart that loses the session renumbers
its orders, and the order is then found by its `order_sysid` and code (the counter's contract number, per exchange)
and its id updated; an id another entry held is taken from it (that entry is found again by its own sysid, or it is
lost or unknown); an order not found again lets its old id go (`forget_id`): it may name another order now.
The last order state seen at MiniQMT (status, fills) is kept too, to answer a repeated place or a query."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

CST = timezone(timedelta(hours=8))

SENDING = "sending"
SENT = "sent"
ACKNOWLEDGED = "acknowledged"
REFUSED = "refused"
UNCONFIRMED = "unconfirmed"
LOST = "lost"
LOST_MESSAGE = "MiniQMT lost the order in a restart"
UNIDENTIFIED_MESSAGE = (
    "after a MiniQMT restart the bridge cannot tell which of MiniQMT's orders this is (if any): check it in QMT"
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    order_id TEXT PRIMARY KEY,
    remark TEXT NOT NULL UNIQUE,
    ts_code TEXT NOT NULL,
    side TEXT NOT NULL,
    qty INTEGER NOT NULL,
    price_type INTEGER NOT NULL,
    price TEXT NOT NULL,
    strategy_name TEXT NOT NULL,
    state TEXT NOT NULL,
    seq INTEGER,
    qmt_order_id INTEGER UNIQUE,
    order_sysid TEXT,
    status INTEGER,
    status_msg TEXT NOT NULL DEFAULT '',
    traded_qty INTEGER NOT NULL DEFAULT 0,
    traded_price TEXT,
    order_time TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_state ON orders (state);
CREATE INDEX IF NOT EXISTS orders_sysid ON orders (order_sysid);
"""

_COLUMNS = (
    "order_id",
    "remark",
    "ts_code",
    "side",
    "qty",
    "price_type",
    "price",
    "strategy_name",
    "state",
    "seq",
    "qmt_order_id",
    "order_sysid",
    "status",
    "status_msg",
    "traded_qty",
    "traded_price",
    "order_time",
    "created_at",
    "updated_at",
)


@dataclass(frozen=True)
class Entry:
    order_id: str
    remark: str
    ts_code: str
    side: str
    qty: int
    price_type: int
    price: str
    strategy_name: str
    state: str
    seq: int | None
    qmt_order_id: int | None
    order_sysid: str | None
    status: int | None
    status_msg: str
    traded_qty: int
    traded_price: str | None
    order_time: str | None
    created_at: str
    updated_at: str


def now() -> str:
    return datetime.now(CST).isoformat(timespec="milliseconds")


class Journal:
    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _one(self, where: str, arg: Any) -> Entry | None:
        row = self._db.execute(f"SELECT {', '.join(_COLUMNS)} FROM orders WHERE {where} = ?", (arg,)).fetchone()  # noqa: S608 (column names are constants)
        return Entry(*row) if row else None

    def get(self, order_id: str) -> Entry | None:
        return self._one("order_id", order_id)

    def by_remark(self, remark: str) -> Entry | None:
        return self._one("remark", remark)

    def by_qmt_order_id(self, qmt_order_id: int) -> Entry | None:
        return self._one("qmt_order_id", qmt_order_id)

    def by_sysid(self, order_sysid: str, ts_code: str) -> Entry | None:
        """The latest order journalled with this contract number for this code. The numbers are the counter's, per
        exchange (an SH and an SZ order can share one) and can repeat on another day: never looked up without the
        code."""
        row = self._db.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM orders WHERE order_sysid = ? AND ts_code = ?"  # noqa: S608
            " ORDER BY created_at DESC LIMIT 1",
            (order_sysid, ts_code),
        ).fetchone()
        return Entry(*row) if row else None

    def all_by_sysid(self, order_sysid: str) -> list[Entry]:
        """Every order journalled with this contract number, newest first (for an event that names no code)."""
        rows = self._db.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM orders WHERE order_sysid = ? ORDER BY created_at DESC",  # noqa: S608
            (order_sysid,),
        ).fetchall()
        return [Entry(*r) for r in rows]

    def in_state(self, *states: str) -> list[Entry]:
        marks = ", ".join("?" for _ in states)
        rows = self._db.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM orders WHERE state IN ({marks}) ORDER BY created_at",  # noqa: S608
            states,
        ).fetchall()
        return [Entry(*r) for r in rows]

    def begin(
        self,
        *,
        order_id: str,
        remark: str,
        ts_code: str,
        side: str,
        qty: int,
        price_type: int,
        price: str,
        strategy_name: str,
    ) -> tuple[bool, Entry]:
        """Journal an order about to be sent: (True, entry) when it is new, (False, the existing entry) when an
        order with this id (or remark) is already journalled: it must not be sent again."""
        stamp = now()
        with self._tx() as db:
            existing = self.get(order_id) or self.by_remark(remark)
            if existing is not None:
                return False, existing
            db.execute(
                "INSERT INTO orders (order_id, remark, ts_code, side, qty, price_type, price, strategy_name, state,"
                " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (order_id, remark, ts_code, side, qty, price_type, price, strategy_name, SENDING, stamp, stamp),
            )
        entry = self.get(order_id)
        assert entry is not None
        return True, entry

    def _update(self, order_id: str, **values: Any) -> None:
        values["updated_at"] = now()
        sets = ", ".join(f"{k} = ?" for k in values)  # keys are this module's own column names
        with self._tx() as db:
            db.execute(f"UPDATE orders SET {sets} WHERE order_id = ?", (*values.values(), order_id))  # noqa: S608

    def sent(self, order_id: str, seq: int) -> None:
        self._update(order_id, state=SENT, seq=seq)

    def refused(self, order_id: str, message: str) -> None:
        self._update(order_id, state=REFUSED, status_msg=message)

    def unconfirmed(self, order_id: str) -> None:
        self._update(order_id, state=UNCONFIRMED, status=255)

    def acknowledged(self, order_id: str, qmt_order_id: int, order_sysid: str | None = None) -> str | None:
        """MiniQMT has the order under `qmt_order_id` (now). Another entry holding that id (MiniQMT renumbered its
        orders in a restart) loses it, in the same transaction: its order_id is returned (None: none did)."""
        stamp = now()
        values: dict[str, Any] = {"state": ACKNOWLEDGED, "qmt_order_id": qmt_order_id, "updated_at": stamp}
        if order_sysid:
            values["order_sysid"] = order_sysid
        sets = ", ".join(f"{k} = ?" for k in values)  # keys are this module's own column names
        with self._tx() as db:
            holder = db.execute(
                "SELECT order_id FROM orders WHERE qmt_order_id = ? AND order_id != ?", (qmt_order_id, order_id)
            ).fetchone()
            if holder is not None:
                db.execute(
                    "UPDATE orders SET qmt_order_id = NULL, updated_at = ? WHERE order_id = ?", (stamp, holder[0])
                )
            db.execute(f"UPDATE orders SET {sets} WHERE order_id = ?", (*values.values(), order_id))  # noqa: S608
        return None if holder is None else str(holder[0])

    def forget_id(self, order_id: str) -> None:
        """The order's MiniQMT id no longer names it for sure (a restart may have renumbered MiniQMT's orders and the
        order was not found again): let go, so that nothing is ever looked up or cancelled by it."""
        self._update(order_id, qmt_order_id=None)

    def unidentified(self, order_id: str, message: str = UNIDENTIFIED_MESSAGE) -> None:
        """MiniQMT acknowledged the order, and after a restart its list has orders that may be this one but none
        that can be told to be it: unknown (255), no MiniQMT id; never placed again."""
        self._update(order_id, state=UNCONFIRMED, status=255, status_msg=message, qmt_order_id=None)

    def lost(self, order_id: str, message: str = LOST_MESSAGE) -> None:
        """MiniQMT no longer has the order after a restart: final, nothing filled; its old MiniQMT id is let go."""
        self._update(order_id, state=LOST, status=57, status_msg=message, qmt_order_id=None)

    def observed(
        self,
        order_id: str,
        *,
        status: int,
        status_msg: str,
        traded_qty: int,
        traded_price: str | None,
        order_sysid: str | None,
        order_time: str | None,
    ) -> None:
        """The order's latest state at MiniQMT."""
        values: dict[str, Any] = {
            "status": status,
            "status_msg": status_msg,
            "traded_qty": traded_qty,
            "traded_price": traded_price,
        }
        if order_sysid:
            values["order_sysid"] = order_sysid
        if order_time:
            values["order_time"] = order_time
        self._update(order_id, **values)

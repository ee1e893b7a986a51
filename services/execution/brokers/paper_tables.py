"""The paper broker's own book, in execution's schema (same database, same migrations). It stands for an outside
system: no foreign keys into execution's orders."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Date, ForeignKey, Index, String, Table

from services.execution.store.base import metadata
from shared.platform.clock import UtcDateTime
from shared.platform.columns import CnyFen

# A row without ts_code/side/order_type/qty is a tombstone: the order was cancelled before it reached the broker.
paper_orders = Table(
    "paper_orders",
    metadata,
    Column("order_id", String(32), primary_key=True),
    Column("ts_code", String(16), nullable=True),
    Column("side", String(8), nullable=True),
    Column("order_type", String(8), nullable=True),
    Column("qty", BigInteger, nullable=True),
    Column("price_fen", CnyFen, key="price", nullable=True),
    Column("status", String(20), nullable=False),
    Column("reason", String(255), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    # On the real clock: the trading day whose bar the order is matched on (it rests until that bar is in); NULL for
    # an order matched when it arrived (a replayed session's, or `LH_PAPER_FILLS=immediate`).
    Column("session", Date, nullable=True),
)

# How a paper account treats an order placed while the market is closed (no account row: `rest`).
paper_accounts = Table(
    "paper_accounts",
    metadata,
    Column("account_id", String(64), primary_key=True),
    Column("closed_market", String(8), nullable=False),  # rest | refuse
    Column("updated_by", String(64), nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

paper_fills = Table(
    "paper_fills",
    metadata,
    Column("fill_id", String(64), primary_key=True),
    Column("order_id", String(32), ForeignKey("paper_orders.order_id"), nullable=False),
    Column("qty", BigInteger, nullable=False),
    Column("price_fen", CnyFen, key="price", nullable=False),
    Column("traded_at", UtcDateTime, nullable=False),
    Index("ix_paper_fills_order", "order_id"),
)

"""Execution's own tables and the transactions that change them, by aggregate: orders and their transitions
(orders.py, transitions.py), trades (trades.py), accounts and their cash ledger (accounts.py), refused submissions
(refusals.py), corporate actions applied to positions (adjustments.py), the reads of risk's snapshot of an account
(snapshot.py), the accounts' brokers and the QMT bridges' order mapping, reconciliations and switches (brokers.py);
the schema's metadata and the outbox in base.py. The paper broker's book is the broker's own
(services/execution/brokers/paper_tables.py), in the same schema. Money is stored in integer fen: exact on MySQL and
SQLite alike."""

from __future__ import annotations

from services.execution.store.accounts import AdmissionRefused, EntryExists, LedgerEntry, accounts, cash_ledger
from services.execution.store.adjustments import AdjustmentRecord, AdjustmentStore, position_adjustments
from services.execution.store.base import MIGRATIONS, metadata, outbox
from services.execution.store.brokers import (
    AccountBroker,
    BrokerOrder,
    BrokerStore,
    Reconciliation,
    TradingSwitch,
    account_brokers,
    bridge_trading,
    bridge_trading_audit,
    broker_orders,
    broker_reconciliations,
)
from services.execution.store.orders import AlreadyPlaced, ConcurrentUpdate, StoredOrder, order_transitions, orders
from services.execution.store.refusals import RefusalStore, refused_submissions
from services.execution.store.snapshot import SnapshotReads, SnapshotRows
from services.execution.store.trades import TcaRow, TradeRecord, trades
from services.execution.store.transitions import AppliedReport, Booked, NewOrder, OrderTransitions

__all__ = [
    "MIGRATIONS",
    "AccountBroker",
    "AdjustmentRecord",
    "AdmissionRefused",
    "AlreadyPlaced",
    "AppliedReport",
    "Booked",
    "BrokerOrder",
    "BrokerStore",
    "ConcurrentUpdate",
    "EntryExists",
    "ExecutionStore",
    "LedgerEntry",
    "NewOrder",
    "Reconciliation",
    "SnapshotRows",
    "StoredOrder",
    "TcaRow",
    "TradeRecord",
    "TradingSwitch",
    "account_brokers",
    "accounts",
    "bridge_trading",
    "bridge_trading_audit",
    "broker_orders",
    "broker_reconciliations",
    "cash_ledger",
    "metadata",
    "order_transitions",
    "orders",
    "outbox",
    "position_adjustments",
    "refused_submissions",
    "trades",
]


class ExecutionStore(OrderTransitions, AdjustmentStore, RefusalStore, SnapshotReads, BrokerStore):
    """Execution's store: every aggregate's queries and transactions on one database."""

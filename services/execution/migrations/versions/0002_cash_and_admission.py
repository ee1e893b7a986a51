"""Admission under a per-account lock and the cash ledger: the accounts table (one row per account, locked by
every admission), the append-only cash_ledger, and orders.price_cap_fen (what an open buy reserves cash at).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.platform.db import PreciseDateTime

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_AutoId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # A plain ALTER TABLE ... ADD COLUMN on both databases (no copy of `orders`).
    op.add_column("orders", sa.Column("price_cap_fen", sa.BigInteger(), nullable=True))
    # Orders admitted before this revision: a limit buy reserves at its limit price; an open market buy (none
    # rests on the paper broker) reserves nothing.
    op.execute("UPDATE orders SET price_cap_fen = price_fen WHERE side = 'buy'")

    op.create_table(
        "accounts",
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("admissions", sa.BigInteger(), nullable=False),
        sa.Column("created_at", PreciseDateTime, nullable=False),
        sa.PrimaryKeyConstraint("account_id", name="pk_accounts"),
    )
    op.create_table(
        "cash_ledger",
        sa.Column("id", _AutoId, autoincrement=True, nullable=False),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("idempotency_key", sa.String(80), nullable=False),
        sa.Column("trade_id", sa.String(64), nullable=True),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("correlation_id", sa.String(64), nullable=True),
        sa.Column("created_at", PreciseDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_cash_ledger"),
        sa.UniqueConstraint("account_id", "idempotency_key", name="uq_cash_ledger_account_key"),
    )


def downgrade() -> None:
    op.drop_table("cash_ledger")
    op.drop_table("accounts")
    # Not batch mode: on SQLite it copies `orders` and drops the original, which order_transitions and trades
    # reference; with foreign_keys=ON (every connection, shared/platform/db.py) and rows in them the DROP fails, and the
    # pragma cannot be turned off inside the migration's transaction. A native DROP COLUMN (SQLite >= 3.35, and
    # MariaDB) changes the table in place: no row moves, the references stay valid.
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        version = tuple(int(part) for part in bind.exec_driver_sql("SELECT sqlite_version()").scalar_one().split("."))
        if version < (3, 35, 0):
            raise RuntimeError(
                f"downgrading execution below 0002 needs SQLite 3.35 or newer (DROP COLUMN), not {version}"
            )
    op.drop_column("orders", "price_cap_fen")

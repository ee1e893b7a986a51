"""Execution's first schema: orders and their transitions, trades, refused submissions, the paper broker's book,
the outbox. Money in integer fen.

Revision ID: 0001
Revises:
Create Date: 2024-06-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.platform.db import PreciseDateTime

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_AutoId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "orders",
        sa.Column("order_id", sa.String(32), nullable=False),
        sa.Column("client_order_id", sa.String(64), nullable=False),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("decision_id", sa.String(64), nullable=False),
        sa.Column("ts_code", sa.String(16), nullable=False),
        sa.Column("side", sa.String(8), nullable=False),
        sa.Column("order_type", sa.String(8), nullable=False),
        sa.Column("qty", sa.BigInteger(), nullable=False),
        sa.Column("price_fen", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("filled_qty", sa.BigInteger(), nullable=False),
        sa.Column("filled_amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(255), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("correlation_id", sa.String(64), nullable=True),
        sa.Column("created_at", PreciseDateTime, nullable=False),
        sa.Column("updated_at", PreciseDateTime, nullable=False),
        sa.PrimaryKeyConstraint("order_id", name="pk_orders"),
        sa.UniqueConstraint("account_id", "client_order_id", name="uq_orders_account_client_order"),
        sa.UniqueConstraint("decision_id", name="uq_orders_decision_id"),
    )
    op.create_index("ix_orders_status_updated", "orders", ["status", "updated_at"])
    op.create_index("ix_orders_account_created", "orders", ["account_id", "created_at"])

    op.create_table(
        "order_transitions",
        sa.Column("id", _AutoId, autoincrement=True, nullable=False),
        sa.Column("order_id", sa.String(32), nullable=False),
        sa.Column("from_status", sa.String(20), nullable=True),
        sa.Column("to_status", sa.String(20), nullable=False),
        sa.Column("reason", sa.String(255), nullable=True),
        sa.Column("at", PreciseDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_order_transitions"),
        sa.ForeignKeyConstraint(["order_id"], ["orders.order_id"], name="fk_order_transitions_order_id_orders"),
    )
    op.create_index("ix_order_transitions_order", "order_transitions", ["order_id", "id"])

    op.create_table(
        "trades",
        sa.Column("trade_id", sa.String(64), nullable=False),
        sa.Column("order_id", sa.String(32), nullable=False),
        sa.Column("client_order_id", sa.String(64), nullable=False),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("ts_code", sa.String(16), nullable=False),
        sa.Column("side", sa.String(8), nullable=False),
        sa.Column("qty", sa.BigInteger(), nullable=False),
        sa.Column("price_fen", sa.BigInteger(), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("commission_fen", sa.BigInteger(), nullable=False),
        sa.Column("stamp_duty_fen", sa.BigInteger(), nullable=False),
        sa.Column("transfer_fee_fen", sa.BigInteger(), nullable=False),
        sa.Column("traded_at", PreciseDateTime, nullable=False),
        sa.Column("created_at", PreciseDateTime, nullable=False),
        sa.PrimaryKeyConstraint("trade_id", name="pk_trades"),
        sa.ForeignKeyConstraint(["order_id"], ["orders.order_id"], name="fk_trades_order_id_orders"),
    )
    op.create_index("ix_trades_order", "trades", ["order_id"])
    op.create_index("ix_trades_account_traded", "trades", ["account_id", "traded_at"])

    op.create_table(
        "refused_submissions",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("reason", sa.String(255), nullable=False),
        sa.Column("decision_id", sa.String(64), nullable=True),
        sa.Column("client_order_id", sa.String(64), nullable=False),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("terms", sa.Text(), nullable=False),
        sa.Column("principal_subject", sa.String(128), nullable=False),
        sa.Column("principal_role", sa.String(32), nullable=False),
        sa.Column("principal_account_id", sa.String(64), nullable=True),
        sa.Column("correlation_id", sa.String(64), nullable=True),
        sa.Column("created_at", PreciseDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_refused_submissions"),
    )
    op.create_index("ix_refused_submissions_created", "refused_submissions", ["created_at"])

    op.create_table(
        "paper_orders",
        sa.Column("order_id", sa.String(32), nullable=False),
        sa.Column("ts_code", sa.String(16), nullable=True),
        sa.Column("side", sa.String(8), nullable=True),
        sa.Column("order_type", sa.String(8), nullable=True),
        sa.Column("qty", sa.BigInteger(), nullable=True),
        sa.Column("price_fen", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("reason", sa.String(255), nullable=True),
        sa.Column("created_at", PreciseDateTime, nullable=False),
        sa.Column("updated_at", PreciseDateTime, nullable=False),
        sa.PrimaryKeyConstraint("order_id", name="pk_paper_orders"),
    )

    op.create_table(
        "paper_fills",
        sa.Column("fill_id", sa.String(64), nullable=False),
        sa.Column("order_id", sa.String(32), nullable=False),
        sa.Column("qty", sa.BigInteger(), nullable=False),
        sa.Column("price_fen", sa.BigInteger(), nullable=False),
        sa.Column("traded_at", PreciseDateTime, nullable=False),
        sa.PrimaryKeyConstraint("fill_id", name="pk_paper_fills"),
        sa.ForeignKeyConstraint(["order_id"], ["paper_orders.order_id"], name="fk_paper_fills_order_id_paper_orders"),
    )
    op.create_index("ix_paper_fills_order", "paper_fills", ["order_id"])

    op.create_table(
        "outbox",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", PreciseDateTime, nullable=False),
        sa.Column("published_at", PreciseDateTime, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
    )
    op.create_index("ix_outbox_pending", "outbox", ["published_at", "created_at"])


def downgrade() -> None:
    op.drop_table("outbox")
    op.drop_table("paper_fills")
    op.drop_table("paper_orders")
    op.drop_table("refused_submissions")
    op.drop_table("trades")
    op.drop_table("order_transitions")
    op.drop_table("orders")

"""Risk's first schema: the decisions it made, and an outbox.

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


def upgrade() -> None:
    op.create_table(
        "risk_decisions",
        sa.Column("decision_id", sa.String(32), nullable=False),
        sa.Column("client_order_id", sa.String(64), nullable=False),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("ts_code", sa.String(32), nullable=False),
        sa.Column("side", sa.String(8), nullable=False),
        sa.Column("order_type", sa.String(8), nullable=False),
        sa.Column("qty", sa.BigInteger(), nullable=False),
        sa.Column("price", sa.String(40), nullable=True),  # exact decimal text
        sa.Column("approved", sa.Boolean(), nullable=False),
        sa.Column("reasons", sa.Text(), nullable=False),
        sa.Column("correlation_id", sa.String(64), nullable=True),
        sa.Column("created_at", PreciseDateTime, nullable=False),
        sa.PrimaryKeyConstraint("decision_id", name="pk_risk_decisions"),
    )
    op.create_index("ix_risk_decisions_created", "risk_decisions", ["created_at"])
    op.create_index("ix_risk_decisions_account_created", "risk_decisions", ["account_id", "created_at"])
    op.create_index("ix_risk_decisions_client_order", "risk_decisions", ["account_id", "client_order_id"])

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
    op.drop_table("risk_decisions")

"""The strategy instance a decision was made for (risk_decisions.strategy_instance_id; NULL: a person's order),
indexed with the client_order_id: an instance's retry is found by its instance before its sleeve is read.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Decisions made before this revision are people's: NULL.
    with op.batch_alter_table("risk_decisions") as batch:
        batch.add_column(sa.Column("strategy_instance_id", sa.String(32), nullable=True))
    op.create_index(
        "ix_risk_decisions_instance_client_order", "risk_decisions", ["strategy_instance_id", "client_order_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_risk_decisions_instance_client_order", table_name="risk_decisions")
    with op.batch_alter_table("risk_decisions") as batch:
        batch.drop_column("strategy_instance_id")

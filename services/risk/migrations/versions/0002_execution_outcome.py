"""What execution answered when risk forwarded an approved decision (risk_decisions.execution_outcome): a decision
execution refused is never replayed, and one whose answer was lost is replayed only within the approval TTL.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Decisions made before this revision keep NULL: an approved one counts as "outcome unknown".
    with op.batch_alter_table("risk_decisions") as batch:
        batch.add_column(sa.Column("execution_outcome", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("risk_decisions") as batch:
        batch.drop_column("execution_outcome")

"""The strategy instance's own fill rules a decision's order carried (risk_decisions.paper_fill:
shared.platform.approval.PaperFill as JSON text, signed into the approval; NULL: none, the platform's rules), so a
retry re-signs exactly what was decided.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Decisions made before this revision carried none: NULL.
    with op.batch_alter_table("risk_decisions") as batch:
        batch.add_column(sa.Column("paper_fill", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("risk_decisions") as batch:
        batch.drop_column("paper_fill")

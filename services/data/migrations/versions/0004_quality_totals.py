"""quality_totals: a stored quality report keeps its true totals per rule, not only the examples it kept

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


def _columns() -> list[sa.Column[object]]:
    # Reports stored before this revision have these columns NULL: only their kept findings are known.
    return [
        sa.Column("total", sa.BigInteger(), nullable=True),  # findings found, all rules
        sa.Column("counts", sa.Text(), nullable=True),  # JSON: rule -> findings found
        sa.Column("kept", sa.Text(), nullable=True),  # JSON: rule -> findings stored as examples
        sa.Column("max_findings_per_rule", sa.Integer(), nullable=True),
        sa.Column("rules_skipped", sa.Text(), nullable=True),  # JSON: rule -> why it did not run
    ]


def upgrade() -> None:
    with op.batch_alter_table("quality_reports") as batch:
        for column in _columns():
            batch.add_column(column)


def downgrade() -> None:
    with op.batch_alter_table("quality_reports") as batch:
        for column in reversed(_columns()):
            batch.drop_column(column.name)

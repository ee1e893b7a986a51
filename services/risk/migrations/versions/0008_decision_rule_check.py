"""What the rules read for a decision (risk_decisions.rule_check: JSON {"rule_versions": {level: version}, "findings":
[{rule, code, level, message, values}]}), so every decision says which rule-set versions decided it and the values
they saw; NULL for decisions made before this revision and for those the rules never ran on (refused before).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("risk_decisions") as batch:
        batch.add_column(sa.Column("rule_check", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("risk_decisions") as batch:
        batch.drop_column("rule_check")

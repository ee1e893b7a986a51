"""Risk rule sets (docs/risk-rules.md "Managing rule sets"): every version of every level's rule set
(`risk_rule_sets`: scope global with key '', an account, a strategy instance; version 1, 2, ... per scope and key;
the RuleSet as JSON, NULL when the level was cleared; who, when and why), written with the `risk.rules.changed`
event. A level's current rule set is its latest version; versions are never changed or removed.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.platform.db import PreciseDateTime

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "risk_rule_sets",
        # The primary key is the unique (scope, key, version): two changes of one level can never share a version.
        sa.Column("scope", sa.String(16), primary_key=True),
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("version", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("set_by", sa.String(128), nullable=False),
        sa.Column("set_at", PreciseDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("risk_rule_sets")

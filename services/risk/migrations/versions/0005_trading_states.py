"""Trading states (docs/risk-rules.md "Trading states and the kill switch"): the current state of each scope
(`trading_states`: global with key '', an account, a strategy instance; no row: active) and every change of one
(`trading_state_changes`: from, to, who, why, when), written with the `risk.trading_state.changed` event.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.platform.db import PreciseDateTime

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "trading_states",
        sa.Column("scope", sa.String(16), primary_key=True),
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("set_by", sa.String(128), nullable=False),
        sa.Column("set_at", PreciseDateTime, nullable=False),
    )
    op.create_table(
        "trading_state_changes",
        sa.Column("change_id", sa.String(32), primary_key=True),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("from_state", sa.String(16), nullable=False),
        sa.Column("to_state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("set_by", sa.String(128), nullable=False),
        sa.Column("set_at", PreciseDateTime, nullable=False),
    )
    op.create_index("ix_trading_state_changes_scope_key_at", "trading_state_changes", ["scope", "key", "set_at"])


def downgrade() -> None:
    op.drop_index("ix_trading_state_changes_scope_key_at", table_name="trading_state_changes")
    op.drop_table("trading_state_changes")
    op.drop_table("trading_states")

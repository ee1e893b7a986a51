"""position_adjustments: the corporate actions (bonus shares, splits, dividends as the adj_factor shows them)
applied to positions on their ex-dates, one row per (account, holder, code, ex-date) — the account's own part
(strategy_instance_id NULL) and each strategy instance's part apart — so that applying a session twice changes
nothing. Positions add qty_after - qty_before; the cash in lieu is a ledger entry under the same key.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.platform.db import PreciseDateTime

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_AutoId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "position_adjustments",
        sa.Column("id", _AutoId, autoincrement=True, nullable=False),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("strategy_instance_id", sa.String(32), nullable=True),
        sa.Column("ts_code", sa.String(16), nullable=False),
        sa.Column("ex_date", sa.Date(), nullable=False),
        sa.Column("adjustment_key", sa.String(80), nullable=False),
        sa.Column("qty_before", sa.BigInteger(), nullable=False),
        sa.Column("qty_after", sa.BigInteger(), nullable=False),
        sa.Column("adj_factor", sa.Numeric(20, 6), nullable=False),
        sa.Column("previous_adj_factor", sa.Numeric(20, 6), nullable=False),
        sa.Column("pre_close_fen", sa.BigInteger(), nullable=False),
        sa.Column("cash_in_lieu_fen", sa.BigInteger(), nullable=False),
        sa.Column("created_at", PreciseDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_position_adjustments"),
        sa.UniqueConstraint("account_id", "adjustment_key", name="uq_position_adjustments_account_key"),
    )
    op.create_index("ix_position_adjustments_ex_date", "position_adjustments", ["ex_date"])


def downgrade() -> None:
    op.drop_table("position_adjustments")

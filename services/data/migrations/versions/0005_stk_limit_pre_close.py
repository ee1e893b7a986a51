"""stk_limits.pre_close: the day's reference price as the exchange publishes it before the open, and an index on
trade_date (the pre-open limits load and the quote bands read one day of the whole market)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Rows stored before this revision keep pre_close NULL: their day's band is computed from the stored closes.
    with op.batch_alter_table("stk_limits") as batch:
        batch.add_column(sa.Column("pre_close", sa.BigInteger(), nullable=True))
    op.create_index("ix_stk_limits_trade_date", "stk_limits", ["trade_date"])


def downgrade() -> None:
    op.drop_index("ix_stk_limits_trade_date", table_name="stk_limits")
    with op.batch_alter_table("stk_limits") as batch:
        batch.drop_column("pre_close")

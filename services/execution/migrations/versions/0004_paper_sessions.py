"""The paper broker on the real market clock: paper_orders.session (the trading day whose bar an order waits for;
NULL for orders matched at once) and paper_accounts (how a paper account treats an order placed while the market is
closed: rest until the next session, or refuse).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.platform.db import PreciseDateTime

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("paper_orders", sa.Column("session", sa.Date(), nullable=True))
    op.create_table(
        "paper_accounts",
        sa.Column("account_id", sa.String(64), primary_key=True),
        sa.Column("closed_market", sa.String(8), nullable=False),
        sa.Column("updated_by", sa.String(64), nullable=False),
        sa.Column("updated_at", PreciseDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("paper_accounts")
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        version = tuple(int(part) for part in bind.exec_driver_sql("SELECT sqlite_version()").scalar_one().split("."))
        if version < (3, 35, 0):
            raise RuntimeError(
                f"downgrading execution below 0004 needs SQLite 3.35 or newer (DROP COLUMN), not {version}"
            )
    op.drop_column("paper_orders", "session")

"""A strategy instance's own fill rules on its orders (orders.paper_fill: shared.platform.approval.PaperFill as JSON
text, signed into the approval; NULL: the platform's rules, as for every person's order and every order made before
this revision).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ALTER TABLE ... ADD COLUMN on both databases (no copy of the table); existing rows: NULL.
    op.add_column("orders", sa.Column("paper_fill", sa.Text(), nullable=True))


def downgrade() -> None:
    # Native DROP COLUMN, not batch mode (which would copy a table that others reference): see 0002's downgrade.
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        version = tuple(int(part) for part in bind.exec_driver_sql("SELECT sqlite_version()").scalar_one().split("."))
        if version < (3, 35, 0):
            raise RuntimeError(
                f"downgrading execution below 0006 needs SQLite 3.35 or newer (DROP COLUMN), not {version}"
            )
    op.drop_column("orders", "paper_fill")

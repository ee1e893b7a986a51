"""accounts.balance_fen: the sum of the account's cash ledger, kept by every transaction that adds an entry (in that
transaction), so that a cash read — risk's for every buy, admission's under the account's lock — reads one row
instead of summing every fill the account ever had. Filled here from the ledger, which stays the record.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ALTER TABLE ... ADD COLUMN on both databases (no copy of the table), then the balance of every account
    # from its ledger, in the migration's transaction (the service is not taking orders while it migrates).
    op.add_column("accounts", sa.Column("balance_fen", sa.BigInteger(), nullable=False, server_default="0"))
    op.execute(
        "UPDATE accounts SET balance_fen = COALESCE((SELECT SUM(cash_ledger.amount_fen) FROM cash_ledger"
        " WHERE cash_ledger.account_id = accounts.account_id), 0)"
    )


def downgrade() -> None:
    # Native DROP COLUMN, not batch mode (see 0002's downgrade); the ledger still holds every entry.
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        version = tuple(int(part) for part in bind.exec_driver_sql("SELECT sqlite_version()").scalar_one().split("."))
        if version < (3, 35, 0):
            raise RuntimeError(
                f"downgrading execution below 0005 needs SQLite 3.35 or newer (DROP COLUMN), not {version}"
            )
    op.drop_column("accounts", "balance_fen")

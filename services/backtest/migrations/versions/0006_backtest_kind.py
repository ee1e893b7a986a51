"""backtests.kind: "single" (one strategy) or "portfolio" (several, as sleeves), instead of reading a strategy named
"portfolio" as the flag; back-filled from the stored runs with several strategies

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 500
# As the service stored a run with several strategies before this revision: strategy "portfolio" and params
# {"sleeves": [...]}. Written out here, not imported, so that this migration keeps reading what was stored.
PORTFOLIO_STRATEGY = "portfolio"


def has_sleeves(params: Any) -> bool:
    if isinstance(params, str | bytes):
        params = json.loads(params)  # MariaDB's JSON is LONGTEXT; the driver may hand back the text
    return isinstance(params, dict) and isinstance(params.get("sleeves"), list)


def upgrade() -> None:
    op.add_column("backtests", sa.Column("kind", sa.String(16), nullable=False, server_default=sa.text("'single'")))
    bind = op.get_bind()
    after = ""
    while True:  # keyset paging: memory stays flat however many runs are stored
        rows = bind.execute(
            sa.text(
                "SELECT backtest_id, params FROM backtests WHERE strategy = :portfolio AND backtest_id > :after "
                "ORDER BY backtest_id LIMIT :batch"
            ),
            {"portfolio": PORTFOLIO_STRATEGY, "after": after, "batch": BATCH},
        ).all()
        if not rows:
            return
        ids = [r[0] for r in rows if has_sleeves(r[1])]
        if ids:
            bind.execute(
                sa.text("UPDATE backtests SET kind = 'portfolio' WHERE backtest_id IN :ids").bindparams(
                    sa.bindparam("ids", expanding=True)
                ),
                {"ids": ids},
            )
        after = rows[-1][0]


def downgrade() -> None:
    # Not batch mode: on SQLite it copies `backtests` and drops the original, and with foreign_keys=ON (every
    # connection, shared/platform/db.py; the pragma cannot be turned off inside the migration's transaction) that DROP
    # deletes every row referencing it (ON DELETE CASCADE: the equity curves, the artifacts, the sleeves' strategies).
    # A native DROP COLUMN (SQLite >= 3.35, and MariaDB) changes the table in place.
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        version = tuple(int(part) for part in bind.exec_driver_sql("SELECT sqlite_version()").scalar_one().split("."))
        if version < (3, 35, 0):
            raise RuntimeError(
                f"downgrading backtest below 0006 needs SQLite 3.35 or newer (DROP COLUMN), not {version}"
            )
    op.drop_column("backtests", "kind")

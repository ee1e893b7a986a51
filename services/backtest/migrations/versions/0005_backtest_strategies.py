"""backtest_strategies: the strategies of a run's sleeves, for search; back-filled from the stored portfolio runs

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

import json
from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 500
# As the service has stored a run with several strategies since sleeves exist: strategy "portfolio" and params
# {"sleeves": [{"label", "strategy", "params", "weight"}, ...]}. Written out here, not imported, so that this migration
# keeps reading what was stored whatever later code does.
PORTFOLIO_STRATEGY = "portfolio"
STRATEGY_MAX_CHARS = 64


def sleeve_strategies(params: Any) -> list[str]:
    """The distinct strategies of a stored portfolio run's sleeves, in their order; nothing for params of another
    shape (such a row is left as it is rather than failing the migration)."""
    if isinstance(params, str | bytes):
        params = json.loads(params)  # MariaDB's JSON is LONGTEXT; the driver may hand back the text
    sleeves = params.get("sleeves") if isinstance(params, dict) else None
    if not isinstance(sleeves, list):
        return []
    names = [s.get("strategy") for s in sleeves if isinstance(s, dict)]
    return list(dict.fromkeys(n for n in names if isinstance(n, str) and 0 < len(n) <= STRATEGY_MAX_CHARS))


def _portfolio_runs(bind: sa.Connection) -> Iterator[list[tuple[str, Any]]]:
    """The stored portfolio runs, a batch at a time in id order (keyset paging: memory stays flat however many)."""
    after = ""
    while True:
        rows = bind.execute(
            sa.text(
                "SELECT backtest_id, params FROM backtests WHERE strategy = :portfolio AND backtest_id > :after "
                "ORDER BY backtest_id LIMIT :batch"
            ),
            {"portfolio": PORTFOLIO_STRATEGY, "after": after, "batch": BATCH},
        ).all()
        if not rows:
            return
        yield [(r[0], r[1]) for r in rows]
        after = rows[-1][0]


def upgrade() -> None:
    table = op.create_table(
        "backtest_strategies",
        sa.Column("backtest_id", sa.String(32), nullable=False),
        sa.Column("strategy", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("backtest_id", "strategy", name=op.f("pk_backtest_strategies")),
        sa.ForeignKeyConstraint(
            ["backtest_id"],
            ["backtests.backtest_id"],
            name=op.f("fk_backtest_strategies_backtest_id_backtests"),
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_backtest_strategies_strategy", "backtest_strategies", ["strategy"])
    assert table is not None
    bind = op.get_bind()
    for batch in _portfolio_runs(bind):
        rows = [{"backtest_id": i, "strategy": name} for i, params in batch for name in sleeve_strategies(params)]
        if rows:
            bind.execute(sa.insert(table), rows)


def downgrade() -> None:
    op.drop_index("ix_backtest_strategies_strategy", table_name="backtest_strategies")
    op.drop_table("backtest_strategies")

"""backtest jobs: name, universe, cost model, benchmark, cancel flag, the cancelled status, result artifacts

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_STATUSES = "status IN ('queued', 'running', 'succeeded', 'failed')"
NEW_STATUSES = "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')"


def _alter_backtests(add_columns: bool, statuses: str) -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        # SQLite changes a CHECK by rebuilding the table, and dropping the old one (foreign keys on) would cascade
        # to its equity rows: they are set aside and put back.
        op.execute("CREATE TEMPORARY TABLE _lh_equity_keep AS SELECT * FROM backtest_equity")
    with op.batch_alter_table("backtests") as batch:
        batch.drop_constraint(op.f("ck_backtests_status"), type_="check")
        if add_columns:
            batch.add_column(sa.Column("name", sa.String(128), nullable=True))
            batch.add_column(sa.Column("universe", sa.JSON(none_as_null=True), nullable=True))
            batch.add_column(sa.Column("config", sa.JSON(none_as_null=True), nullable=True))
            batch.add_column(sa.Column("benchmark", sa.String(16), nullable=True))
            batch.add_column(sa.Column("cancel_requested", sa.Boolean(), server_default=sa.text("0"), nullable=False))
        else:
            for column in ("cancel_requested", "benchmark", "config", "universe", "name"):
                batch.drop_column(column)
        batch.create_check_constraint(op.f("ck_backtests_status"), statuses)
    if sqlite:
        op.execute("DELETE FROM backtest_equity")
        op.execute("INSERT INTO backtest_equity SELECT * FROM _lh_equity_keep")
        op.execute("DROP TABLE _lh_equity_keep")


def upgrade() -> None:
    _alter_backtests(True, NEW_STATUSES)
    op.create_table(
        "backtest_artifacts",
        sa.Column("backtest_id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("chunk", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("data", sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb"), nullable=False),
        sa.PrimaryKeyConstraint("backtest_id", "name", "chunk", name=op.f("pk_backtest_artifacts")),
        sa.ForeignKeyConstraint(
            ["backtest_id"],
            ["backtests.backtest_id"],
            name=op.f("fk_backtest_artifacts_backtest_id_backtests"),
            ondelete="CASCADE",
        ),
    )


def downgrade() -> None:
    op.drop_table("backtest_artifacts")
    op.execute("DELETE FROM backtests WHERE status = 'cancelled'")
    _alter_backtests(False, OLD_STATUSES)

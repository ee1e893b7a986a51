"""optimisations and their points

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.platform.db import PreciseDateTime

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "optimisations",
        sa.Column("optimisation_id", sa.String(32), nullable=False),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("strategy", sa.String(64), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("space", sa.JSON(), nullable=False),
        sa.Column("fixed", sa.JSON(), nullable=False),
        sa.Column("objective", sa.JSON(), nullable=False),
        sa.Column("constraints", sa.JSON(), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("ts_codes", sa.JSON(), nullable=False),
        sa.Column("start_date", sa.Date(), nullable=False),
        sa.Column("end_date", sa.Date(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("generation", sa.Integer(), server_default="0", nullable=False),
        sa.Column("populations", sa.JSON(), nullable=False),
        sa.Column("total_points", sa.Integer(), server_default="0", nullable=False),
        sa.Column("done_points", sa.Integer(), server_default="0", nullable=False),
        sa.Column("skipped_points", sa.Integer(), server_default="0", nullable=False),
        sa.Column("best", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("result", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", PreciseDateTime, nullable=False),
        sa.Column("started_at", PreciseDateTime, nullable=True),
        sa.Column("finished_at", PreciseDateTime, nullable=True),
        sa.PrimaryKeyConstraint("optimisation_id", name=op.f("pk_optimisations")),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')",
            name=op.f("ck_optimisations_status"),
        ),
        sa.CheckConstraint("method IN ('grid', 'ga', 'walkforward')", name=op.f("ck_optimisations_method")),
    )
    op.create_index("ix_optimisations_owner_created", "optimisations", ["owner", "created_at"])
    op.create_table(
        "optimisation_points",
        sa.Column("optimisation_id", sa.String(32), nullable=False),
        sa.Column("point_hash", sa.String(40), nullable=False),
        sa.Column("point_key", sa.Text(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("metrics", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("objective", sa.Double(), nullable=True),
        sa.Column("feasible", sa.Boolean(), nullable=True),
        sa.Column("violations", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("updated_at", PreciseDateTime, nullable=False),
        sa.PrimaryKeyConstraint("optimisation_id", "point_hash", name=op.f("pk_optimisation_points")),
        sa.ForeignKeyConstraint(
            ["optimisation_id"],
            ["optimisations.optimisation_id"],
            name=op.f("fk_optimisation_points_optimisation_id_optimisations"),
            ondelete="CASCADE",
        ),
        sa.CheckConstraint("status IN ('pending', 'done', 'failed')", name=op.f("ck_optimisation_points_status")),
    )
    op.create_index("ix_optimisation_points_status", "optimisation_points", ["optimisation_id", "status"])


def downgrade() -> None:
    op.drop_index("ix_optimisation_points_status", table_name="optimisation_points")
    op.drop_table("optimisation_points")
    op.drop_index("ix_optimisations_owner_created", table_name="optimisations")
    op.drop_table("optimisations")

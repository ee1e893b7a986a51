"""alert_events: the alert history the web UI shows (gateway/alerts.py), one row per firing or resolved transition
Alertmanager's webhook reported; (fingerprint, starts_at, status) is unique so redeliveries and repeats add nothing.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
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
        "alert_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("alertname", sa.String(200), nullable=False),
        sa.Column("severity", sa.String(32), nullable=False),
        sa.Column("labels", sa.Text(), nullable=False),
        sa.Column("summary", sa.String(1000), nullable=False),
        sa.Column("starts_at", PreciseDateTime, nullable=False),
        sa.Column("ends_at", PreciseDateTime, nullable=True),
        sa.Column("received_at", PreciseDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_events")),
        sa.UniqueConstraint("fingerprint", "starts_at", "status", name=op.f("uq_alert_events_fingerprint")),
        sa.CheckConstraint("status IN ('firing', 'resolved')", name=op.f("ck_alert_events_status")),
    )


def downgrade() -> None:
    op.drop_table("alert_events")

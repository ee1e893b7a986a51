"""Stops (docs/risk-stops.md): `stops`, a stop-loss, take-profit or trailing stop on a position (armed, triggered,
cancelled, failed), and `stop_triggers`, every trigger and every attempt at its exit with what the desk answered.

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


def upgrade() -> None:
    op.create_table(
        "stops",
        sa.Column("stop_id", sa.String(32), primary_key=True),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("owner_role", sa.String(16), nullable=False),
        sa.Column("strategy_instance_id", sa.String(32), nullable=True),
        sa.Column("ts_code", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("trigger_price", sa.String(40), nullable=True),
        sa.Column("trail_pct", sa.String(40), nullable=True),
        sa.Column("high_water", sa.String(40), nullable=True),
        sa.Column("qty", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", PreciseDateTime, nullable=False),
        sa.Column("triggered_at", PreciseDateTime, nullable=True),
        sa.Column("trigger_seen", sa.String(40), nullable=True),
        sa.Column("exit_qty", sa.BigInteger(), nullable=True),
        sa.Column("claimed_at", PreciseDateTime, nullable=True),
        sa.Column("client_order_id", sa.String(64), nullable=True),
        sa.Column("order_id", sa.String(64), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.Column("cancelled_at", PreciseDateTime, nullable=True),
    )
    op.create_index("ix_stops_status", "stops", ["status"])
    op.create_index("ix_stops_account_created", "stops", ["account_id", "created_at"])
    op.create_table(
        "stop_triggers",
        sa.Column("trigger_id", sa.String(32), primary_key=True),
        sa.Column("stop_id", sa.String(32), nullable=False),
        sa.Column("price", sa.String(40), nullable=False),
        sa.Column("stop_level", sa.String(40), nullable=False),
        sa.Column("high_water", sa.String(40), nullable=True),
        sa.Column("at", PreciseDateTime, nullable=False),
        sa.Column("qty", sa.BigInteger(), nullable=False),
        sa.Column("client_order_id", sa.String(64), nullable=False),
        sa.Column("result", sa.String(16), nullable=False),
        sa.Column("http_status", sa.BigInteger(), nullable=True),
        sa.Column("code", sa.String(64), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("order_id", sa.String(64), nullable=True),
        sa.Column("decision_id", sa.String(32), nullable=True),
    )
    op.create_index("ix_stop_triggers_stop_at", "stop_triggers", ["stop_id", "at"])


def downgrade() -> None:
    op.drop_index("ix_stop_triggers_stop_at", table_name="stop_triggers")
    op.drop_table("stop_triggers")
    op.drop_index("ix_stops_account_created", table_name="stops")
    op.drop_index("ix_stops_status", table_name="stops")
    op.drop_table("stops")

"""Batches of orders (docs/order-management.md): `order_batches`, one per (account, batch_id) with the digest of its
items and its lease, and `order_batch_items`, each item's final answer (placed or refused) as it was decided.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.platform.db import PreciseDateTime

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "order_batches",
        sa.Column("account_id", sa.String(64), primary_key=True),
        sa.Column("batch_id", sa.String(64), primary_key=True),
        sa.Column("body_digest", sa.String(64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at", PreciseDateTime, nullable=False),
        sa.Column("updated_at", PreciseDateTime, nullable=False),
        sa.Column("claim_token", sa.String(32), nullable=True),
        sa.Column("claimed_until", PreciseDateTime, nullable=True),
    )
    op.create_table(
        "order_batch_items",
        sa.Column("account_id", sa.String(64), primary_key=True),
        sa.Column("batch_id", sa.String(64), primary_key=True),
        sa.Column("item_index", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("client_order_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.Column("decided_at", PreciseDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("order_batch_items")
    op.drop_table("order_batches")

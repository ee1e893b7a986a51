"""alert_events.account and .owner: the alert's `account` and `owner` labels in columns of their own, by which a
non-admin's alert history is scoped to their account (gateway/alerts.py); the rows kept before are filled in from
their labels.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 1000


def _label(labels: dict[str, str], name: str) -> str | None:
    value = labels.get(name)
    return str(value)[:200] if value else None  # as gateway/store.py's scope_label


def upgrade() -> None:
    op.add_column("alert_events", sa.Column("account", sa.String(200), nullable=True))
    op.add_column("alert_events", sa.Column("owner", sa.String(200), nullable=True))
    events = sa.table(
        "alert_events",
        sa.column("id", sa.BigInteger()),
        sa.column("labels", sa.Text()),
        sa.column("account", sa.String(200)),
        sa.column("owner", sa.String(200)),
    )
    bind = op.get_bind()
    last = 0
    while True:
        rows = bind.execute(
            sa.select(events.c.id, events.c.labels).where(events.c.id > last).order_by(events.c.id).limit(BATCH)
        ).all()
        if not rows:
            break
        for row_id, text in rows:
            labels = json.loads(text)
            account, owner = _label(labels, "account"), _label(labels, "owner")
            if account or owner:
                bind.execute(sa.update(events).where(events.c.id == row_id).values(account=account, owner=owner))
        last = rows[-1][0]


def downgrade() -> None:
    op.drop_column("alert_events", "owner")
    op.drop_column("alert_events", "account")

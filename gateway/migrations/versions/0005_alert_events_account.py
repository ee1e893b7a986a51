"""alert_events.account, .owner and .platform: whose an alert is (its account: the `account` label, or the `key` of a
scope=account alert; its `owner` label) and whether it is platform-wide (none of the scoping labels), in columns of
their own by which a non-admin's alert history is scoped (gateway/alerts.py, may_see); the rows kept before are
filled in from their labels.

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
SCOPING_LABELS = ("account", "owner", "instance_id", "bridge_id")


def _scope(labels: dict[str, str]) -> tuple[str | None, str | None, bool]:
    """(account, owner, platform) as gateway/store.py's alert_scope when this revision was written."""
    scope = labels.get("scope") or None
    account = labels.get("account") or None
    if scope == "account":
        key = labels.get("key") or None
        account = None if account and key and key != account else account or key
    owner = labels.get("owner") or None
    platform = scope in (None, "global") and not any(labels.get(name) for name in SCOPING_LABELS)
    return (str(account)[:200] if account else None, str(owner)[:200] if owner else None, platform)


def upgrade() -> None:
    op.add_column("alert_events", sa.Column("account", sa.String(200), nullable=True))
    op.add_column("alert_events", sa.Column("owner", sa.String(200), nullable=True))
    # Not platform-wide until the backfill says so: a row it has not reached yet is an admin's alone.
    op.add_column("alert_events", sa.Column("platform", sa.Boolean(), nullable=False, server_default=sa.false()))
    events = sa.table(
        "alert_events",
        sa.column("id", sa.BigInteger()),
        sa.column("labels", sa.Text()),
        sa.column("account", sa.String(200)),
        sa.column("owner", sa.String(200)),
        sa.column("platform", sa.Boolean()),
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
            account, owner, platform = _scope(json.loads(text))
            if account or owner or platform:
                bind.execute(
                    sa.update(events)
                    .where(events.c.id == row_id)
                    .values(account=account, owner=owner, platform=platform)
                )
        last = rows[-1][0]


def downgrade() -> None:
    op.drop_column("alert_events", "platform")
    op.drop_column("alert_events", "owner")
    op.drop_column("alert_events", "account")

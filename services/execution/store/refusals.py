"""Refused submissions: what was presented, by whom, and why execution refused it."""

from __future__ import annotations

import json

from sqlalchemy import Column, Index, String, Table, Text

from services.execution.store.base import StoreBase, metadata
from shared.platform.approval import OrderTerms
from shared.platform.clock import UtcDateTime, utcnow
from shared.platform.internal_auth import Principal
from shared.platform.observability import current_correlation_id, new_id

refused_submissions = Table(
    "refused_submissions",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("reason", String(255), nullable=False),
    Column("decision_id", String(64), nullable=True),
    Column("client_order_id", String(64), nullable=False),
    Column("account_id", String(64), nullable=False),
    Column("terms", Text, nullable=False),  # the order terms as submitted, JSON
    Column("principal_subject", String(128), nullable=False),
    Column("principal_role", String(32), nullable=False),
    Column("principal_account_id", String(64), nullable=True),
    Column("correlation_id", String(64), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Index("ix_refused_submissions_created", "created_at"),
)


class RefusalStore(StoreBase):
    async def record_refusal(
        self, *, reason: str, terms: OrderTerms, decision_id: str | None, principal: Principal
    ) -> str:
        refusal_id = new_id()
        async for attempt in self.db.transaction():
            async with attempt as s:
                await s.execute(
                    refused_submissions.insert().values(
                        id=refusal_id,
                        reason=reason[:255],
                        decision_id=decision_id[:64] if decision_id else None,
                        client_order_id=terms.client_order_id,
                        account_id=terms.account_id,
                        terms=json.dumps(terms.model_dump(mode="json"), sort_keys=True),
                        principal_subject=principal.subject[:128],
                        principal_role=principal.role[:32],
                        principal_account_id=principal.account_id,
                        correlation_id=current_correlation_id(),
                        created_at=utcnow(),
                    )
                )
        return refusal_id

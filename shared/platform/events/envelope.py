"""The envelope every event travels in: id (for idempotent consumers), type, version, time, source, correlation."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from shared.platform.observability import current_correlation_id, new_id


class Envelope(BaseModel):
    id: str = Field(default_factory=new_id)
    type: str  # e.g. "order.filled": the routing key on the topic exchange
    version: int = 1
    occurred_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    source: str
    correlation_id: str | None = None
    payload: dict[str, Any]


def make_event(event_type: str, payload: BaseModel, *, source: str, version: int = 1) -> Envelope:
    """Wrap a typed payload, validating it against the registered schema for `event_type`."""
    from shared.platform.events.schemas import EVENT_SCHEMAS

    schema = EVENT_SCHEMAS.get(event_type)
    if schema is None:
        raise ValueError(f"unknown event type {event_type!r}")
    if not isinstance(payload, schema):
        raise TypeError(f"{event_type} needs a {schema.__name__} payload, got {type(payload).__name__}")
    return Envelope(
        type=event_type,
        version=version,
        source=source,
        correlation_id=current_correlation_id(),
        payload=payload.model_dump(mode="json"),
    )

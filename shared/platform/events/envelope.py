"""The envelope every event travels in: id (for idempotent consumers), type, version, time, source, correlation.

A consumer reads the payload as its schema with `Envelope.parsed()` (EVENT_SCHEMAS by type), never as a dict probed
by key; the buses parse it on receipt and dead-letter an event whose payload does not parse, before any handler runs.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from shared.platform.events.schemas import EVENT_SCHEMAS
from shared.platform.observability import current_correlation_id, new_id


class InvalidEvent(ValueError):
    """An event whose type has no schema, or whose payload does not fit its type's schema."""


class Envelope(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str = Field(default_factory=new_id)
    type: str  # e.g. "order.filled": the routing key on the topic exchange
    version: int = 1
    occurred_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    source: str
    correlation_id: str | None = None
    payload: dict[str, Any]  # the JSON of the schema instance: relayed as is; read it through parsed()
    _parsed: BaseModel | None = PrivateAttr(default=None)
    # The payload as JSON text, when its producer wrote it so (make_raw_json_event): sent as it is, and read into
    # `payload` only when something in this process reads the payload.
    _payload_json: str | None = PrivateAttr(default=None)

    def __getattr__(self, name: str) -> Any:
        # Only for attributes not set on the instance: `payload` of an event made from JSON text, read on first use.
        if name == "payload":
            private = self.__pydantic_private__ or {}
            text = private.get("_payload_json")
            if text is not None:
                value = json.loads(text)
                self.__dict__["payload"] = value
                return value
        return super().__getattr__(name)  # type: ignore[misc]

    def _load_payload(self) -> None:
        if "payload" not in self.__dict__:
            self.payload  # noqa: B018 (read from its JSON text)

    def model_dump_json(self, **kwargs: Any) -> str:
        """As BaseModel's; an event made from JSON text is written with that text as its payload, not parsed and
        written again (a whole market's quotes are some 3 MB)."""
        text = self._payload_json
        if text is not None and not kwargs:
            # one join: concatenating a 3 MB text copies it into fresh memory at each `+`
            return "".join((super().model_dump_json(exclude={"payload"})[:-1], ',"payload":', text, "}"))
        self._load_payload()
        return super().model_dump_json(**kwargs)

    def model_dump(self, **kwargs: Any) -> dict[str, Any]:
        self._load_payload()
        return super().model_dump(**kwargs)

    def parsed(self) -> BaseModel:
        """The payload as an instance of its type's schema (parsed once, then kept). Raises InvalidEvent."""
        if self._parsed is None:
            schema = EVENT_SCHEMAS.get(self.type)
            if schema is None:
                raise InvalidEvent(f"unknown event type {self.type!r}")
            try:
                self._parsed = schema.model_validate(self.payload)
            except ValidationError as exc:
                raise InvalidEvent(f"{self.type} payload does not fit {schema.__name__}: {exc}") from exc
        return self._parsed


def make_event(event_type: str, payload: BaseModel, *, source: str, version: int = 1) -> Envelope:
    """Wrap a typed payload, validating it against the registered schema for `event_type`."""
    schema = EVENT_SCHEMAS.get(event_type)
    if schema is None:
        raise ValueError(f"unknown event type {event_type!r}")
    if not isinstance(payload, schema):
        raise TypeError(f"{event_type} needs a {schema.__name__} payload, got {type(payload).__name__}")
    event = Envelope(
        type=event_type,
        version=version,
        source=source,
        correlation_id=current_correlation_id(),
        payload=payload.model_dump(mode="json"),
    )
    event._parsed = payload
    return event


def make_json_event(event_type: str, payload: dict[str, Any], *, source: str, version: int = 1) -> Envelope:
    """`make_event` for a payload its producer built as JSON already (a whole market's quotes every few seconds,
    where building thousands of models first would cost more than the work itself). It is not validated here: the
    producer's tests parse what it makes with the type's schema, and every consumer's bus parses it on receipt
    (`Envelope.parsed()`), dead-lettering one that does not fit."""
    if event_type not in EVENT_SCHEMAS:
        raise ValueError(f"unknown event type {event_type!r}")
    return Envelope.model_construct(
        id=new_id(),
        type=event_type,
        version=version,
        occurred_at=datetime.now(UTC),
        source=source,
        correlation_id=current_correlation_id(),
        payload=payload,
    )


def make_raw_json_event(event_type: str, payload_json: str, *, source: str, version: int = 1) -> Envelope:
    """`make_json_event` for a payload its producer wrote as JSON text (a whole market's quotes, each already
    written for the quotes store): the bus sends the text as it is (`Envelope.model_dump_json`), and `payload` is
    read from it only if something in this process reads it (the in-process bus's subscribers). Not validated
    here, as `make_json_event`: the producer's tests parse it with the type's schema, and every consumer's bus does."""
    if event_type not in EVENT_SCHEMAS:
        raise ValueError(f"unknown event type {event_type!r}")
    event = Envelope.model_construct(
        id=new_id(),
        type=event_type,
        version=version,
        occurred_at=datetime.now(UTC),
        source=source,
        correlation_id=current_correlation_id(),
    )
    event._payload_json = payload_json
    return event

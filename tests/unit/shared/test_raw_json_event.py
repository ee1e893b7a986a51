"""An event whose payload its producer wrote as JSON text (make_raw_json_event: a whole market's quotes): sent as
written, read into a dict only when something in the process reads it, and the same to a consumer as a typed one."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from decimal import Decimal

import pytest

from shared.platform.bus import MemoryBus
from shared.platform.events import Envelope, make_event
from shared.platform.events.envelope import make_raw_json_event
from shared.platform.events.schemas import QuotesSnapshot

PAYLOAD = (
    '{"as_of":"2025-01-02T09:30:03+08:00","source":"bridge","quotes":[{"ts_code":"600000.SH",'
    '"time":"2025-01-02T09:30:03+08:00","last":"10.05","open":null,"high":null,"low":null,"pre_close":"10.00",'
    '"volume":1500,"amount":"1507.50","bid":[{"price":"10.04","volume":1200}],"ask":[],"limit_up":"11.00",'
    '"limit_down":"9.00","source":"bridge"}]}'
)


def test_the_payload_text_is_sent_as_written_and_read_when_asked() -> None:
    event = make_raw_json_event("quotes.snapshot", PAYLOAD, source="data")
    sent = event.model_dump_json()
    assert sent.endswith(',"payload":' + PAYLOAD + "}")  # the producer's text, not written again
    message = json.loads(sent)
    assert (message["type"], message["source"], message["id"]) == ("quotes.snapshot", "data", event.id)
    assert message["payload"] == json.loads(PAYLOAD)
    assert event.payload == json.loads(PAYLOAD)  # read from the text on first use
    assert event.model_dump()["payload"] == json.loads(PAYLOAD)
    assert json.loads(event.model_dump_json(exclude={"id"}))["payload"] == json.loads(PAYLOAD)
    # What a consumer reads off the wire is the event itself.
    received = Envelope.model_validate_json(sent)
    snapshot = received.parsed()
    assert isinstance(snapshot, QuotesSnapshot)
    [quote] = snapshot.quotes
    assert (quote.last, quote.open, quote.volume, quote.amount) == (Decimal("10.05"), None, 1500, Decimal("1507.50"))
    assert [(lv.price, lv.volume) for lv in quote.bid] == [(Decimal("10.04"), 1200)] and quote.ask == ()


def test_an_unknown_type_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown event type"):
        make_raw_json_event("quotes.everything", PAYLOAD, source="data")


async def test_the_in_process_bus_delivers_it_parsed() -> None:
    bus = MemoryBus()
    heard: list[Envelope] = []

    async def hear(event: Envelope) -> None:
        heard.append(event)

    await bus.subscribe("t", ["quotes.snapshot"], hear)
    await bus.publish(make_raw_json_event("quotes.snapshot", PAYLOAD, source="data"))
    await bus.publish(make_raw_json_event("quotes.snapshot", '{"as_of": "not a time"}', source="data"))
    for _ in range(50):
        if heard and bus.dead_letters:
            break
        await asyncio.sleep(0.01)
    [event] = heard
    assert isinstance(event.parsed(), QuotesSnapshot) and event.payload["quotes"][0]["ts_code"] == "600000.SH"
    assert len(bus.dead_letters) == 1  # a payload that does not fit its schema never reaches a handler
    await bus.close()


def test_a_typed_event_is_written_as_before() -> None:
    payload = QuotesSnapshot.model_validate_json(PAYLOAD)
    event = make_event("quotes.snapshot", payload, source="data")
    assert json.loads(event.model_dump_json())["payload"] == json.loads(payload.model_dump_json())
    assert isinstance(event.occurred_at, datetime)

"""Real-time quotes as execution reads them (docs/quotes.md, docs/tca.md):

- `HeldQuotes`: the latest price of each code the feed's `quotes.snapshot` rounds carried, held in memory (its own
  non-durable queue, like the reference data's): an order's arrival price is read from it when the order is created,
  with no request on the order path. Only the last price and its time are kept, read straight from the event's
  payload (no model is built for the whole market's round).
- `DataServiceQuotes`: the data service's bulk live read (`GET /v1/quotes/live?codes=`, one request for a whole
  positions listing) and a day's 1-minute bars (`GET /v1/quotes/{code}/bars`, for the market's interval VWAP)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from services.execution.tca import MinuteBarIn
from shared.platform.errors import ServiceError
from shared.platform.events.envelope import Envelope
from shared.platform.http import ServiceDirectory
from shared.platform.internal_auth import service_headers

log = logging.getLogger(__name__)

QUOTES_CONSUMER = "execution-live-quotes"
BULK_MAX = 500  # the data service's limit of codes a bulk read


class LiveQuotesUnavailable(Exception):
    """The data service could not give live quotes or bars now."""


@dataclass(frozen=True)
class HeldQuote:
    last: Decimal
    time: datetime  # aware, the snapshot's exchange time
    pre_close: Decimal | None = None


class HeldQuotes:
    """The latest price per code from the `quotes.snapshot` events (a newer time replaces an older one only)."""

    def __init__(self) -> None:
        self._quotes: dict[str, HeldQuote] = {}

    def get(self, ts_code: str) -> HeldQuote | None:
        return self._quotes.get(ts_code)

    async def on_snapshot(self, event: Envelope) -> None:
        items = event.payload.get("quotes")
        if not isinstance(items, list):
            return
        for item in items:
            try:
                code = str(item["ts_code"])
                quote = HeldQuote(Decimal(str(item["last"])), datetime.fromisoformat(str(item["time"])),
                                  Decimal(str(item["pre_close"])))  # fmt: skip
            except (KeyError, TypeError, ValueError, InvalidOperation):
                continue  # the data service validated the round: a malformed item is not expected; skip it
            if quote.time.tzinfo is None or not quote.last.is_finite() or quote.last <= 0:
                continue
            held = self._quotes.get(code)
            if held is None or held.time <= quote.time:
                self._quotes[code] = quote


@dataclass(frozen=True)
class LiveQuote:
    """A live quote as positions use it: the last price, the day's reference (pre_close) and the quote's time."""

    ts_code: str
    last: Decimal
    pre_close: Decimal
    time: datetime


class DataServiceQuotes:
    def __init__(self, services: ServiceDirectory, internal_secret: str) -> None:
        self.services = services
        self.internal_secret = internal_secret

    async def _get(self, path: str, params: dict[str, str]) -> Any:
        try:
            return await self.services.client("data").get_json(
                path, params=params, headers=service_headers(self.internal_secret, "execution")
            )
        except ServiceError as exc:
            raise LiveQuotesUnavailable(f"the data service answered {exc.code}: {exc.message}") from exc
        except ValueError as exc:
            raise LiveQuotesUnavailable("the data service answered without JSON") from exc

    async def live(self, codes: Sequence[str]) -> dict[str, LiveQuote]:
        """The latest live quote of each code that has one (a code without one is left out), in one request per 500
        codes. Raises LiveQuotesUnavailable (the feed off, the store down, the service unreachable)."""
        out: dict[str, LiveQuote] = {}
        wanted = sorted(set(codes))
        for start in range(0, len(wanted), BULK_MAX):
            body = await self._get("/v1/quotes/live", {"codes": ",".join(wanted[start : start + BULK_MAX])})
            try:
                for q in body["quotes"]:
                    quote = LiveQuote(str(q["ts_code"]), Decimal(str(q["last"])), Decimal(str(q["pre_close"])),
                                      datetime.fromisoformat(str(q["time"])))  # fmt: skip
                    out[quote.ts_code] = quote
            except (KeyError, TypeError, ValueError, InvalidOperation) as exc:
                raise LiveQuotesUnavailable(f"malformed live quotes from the data service: {exc!r}") from exc
        return out

    async def minute_bars(self, ts_code: str, day: date) -> list[MinuteBarIn]:
        """The day's closed 1-minute bars of a code. Raises LiveQuotesUnavailable."""
        body = await self._get(f"/v1/quotes/{ts_code}/bars", {"freq": "1m", "day": day.isoformat()})
        try:
            return [
                MinuteBarIn(datetime.fromisoformat(str(b["minute"])), int(b["volume"]), Decimal(str(b["amount"])))
                for b in body["bars"]
            ]
        except (KeyError, TypeError, ValueError, InvalidOperation) as exc:
            raise LiveQuotesUnavailable(f"malformed minute bars from the data service: {exc!r}") from exc

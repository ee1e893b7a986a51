"""The runner's ports to the order path and the market: orders go to risk (the path every order takes), fills and
orders are read back from execution, bars from the data service. Over REST as the strategy service itself
(`svc:strategy`); each order of an instance carries the instance's sleeve, which risk checks it against."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Protocol

from services.strategy.book import Plan, TradeFill
from shared.core.domain import to_fen
from shared.platform.clock import EXCHANGE_TZ
from shared.platform.errors import ServiceError, Unavailable
from shared.platform.http import ServiceDirectory
from shared.platform.internal_auth import service_headers
from shared.research.engine.config import BacktestConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Placed:
    """Execution holds the order: its status and filled quantity as it answered."""

    order_id: str
    status: str
    filled_qty: int
    reason: str | None


@dataclass(frozen=True)
class Refused:
    """Risk (or execution) refused the order: it does not exist and never will under this client_order_id's
    decision. `reason` is risk's reasons, joined."""

    code: str
    reason: str
    codes: tuple[str, ...] = ()  # risk's reason codes (order_rejected)

    @property
    def rate_only(self) -> bool:
        """Refused only for the account's order rate in this second: the order may be sent again in the next."""
        return bool(self.codes) and set(self.codes) <= RATE_REASONS


# what one order of a batch may take risk (its decision, and execution's admission within it), at most: above
# risk's own allowance for execution (services/risk/desk.py SUBMISSION_S), so risk's answer comes before this times out
BATCH_ORDER_S = 0.2
RATE_REASONS = frozenset({"order_rate_second"})  # risk's reasons that say "not in this second", not "no"


class PathUnavailable(Exception):
    """Risk or execution could not take the order now: it is sent again with the same client_order_id."""


class TradingPath(Protocol):
    async def place(
        self,
        plan: Plan,
        instance_id: str,
        paper_fill: Mapping[str, Any] | None = None,
        sleeve: Mapping[str, Any] | None = None,
    ) -> Placed | Refused:
        """Send one order through risk, with the instance's own fill rules (`paper_fill_of`) for the paper broker and
        the instance's sleeve risk checks it against (`InstanceRun.carried_sleeve`). Raises PathUnavailable when the
        answer says to try again."""

    async def place_batch(
        self,
        batch_id: str,
        plans: Sequence[Plan],
        instance_id: str,
        paper_fill: Mapping[str, Any] | None,
        sleeves: Sequence[Mapping[str, Any]],
    ) -> list[Placed | Refused | PathUnavailable]:
        """Send orders in one request (risk's `POST /v1/order-batches`, idempotent by `batch_id`), each with the
        sleeve it carries: each order's answer as `place` gives it, PathUnavailable for one risk could not take
        now (send it again alone, with its client_order_id). Raises PathUnavailable when the batch as a whole
        was not taken (the path is down, or the batch refused whole): send its orders alone."""

    async def orders(self, instance_id: str) -> list[dict[str, Any]]:
        """Every order execution holds for the instance (oldest first). Raises PathUnavailable."""

    async def trades(self, instance_id: str) -> list[TradeFill]:
        """Every fill execution holds for the instance (oldest first). Raises PathUnavailable."""

    async def cancel(self, order_id: str) -> None:
        """Cancel one open order. Raises PathUnavailable."""


def paper_fill_of(config: BacktestConfig) -> dict[str, Any]:
    """An instance's fill rules as its orders carry them to the paper broker (`paper_fill`): the fill fields of its
    run's config, i.e. its cost model with the engine's defaults filled in, so the broker never guesses. Its fees are
    not among them: the account's broker charges its own."""
    return {
        "fill_price": config.fill_price,
        "slippage": config.slippage,
        "slippage_amount": format(config.slippage_amount, "f"),
        "volume_cap": None if config.volume_cap is None else format(config.volume_cap, "f"),
        "suspended_orders": config.suspended_orders,
    }


def fill_of(row: dict[str, Any]) -> TradeFill:
    """A trade as execution serves it (REST or the trade.executed event), in fen."""
    traded_at = row["traded_at"]
    when = traded_at if isinstance(traded_at, datetime) else datetime.fromisoformat(str(traded_at))

    def fen(key: str) -> int:
        value = row.get(key)
        return 0 if value is None else to_fen(Decimal(str(value)))

    return TradeFill(
        trade_id=str(row["trade_id"]),
        client_order_id=str(row["client_order_id"]),
        ts_code=str(row["ts_code"]),
        side=str(row["side"]),
        qty=int(row["qty"]),
        price_fen=to_fen(Decimal(str(row["price"]))),
        commission_fen=fen("commission"),
        stamp_duty_fen=fen("stamp_duty"),
        transfer_fee_fen=fen("transfer_fee"),
        trade_date=when.astimezone(EXCHANGE_TZ).date(),
    )


class RestTradingPath:
    """Risk's `POST /v1/orders` and execution's listings, as `svc:strategy`."""

    PAGE = 1000

    def __init__(self, services: ServiceDirectory, internal_secret: str) -> None:
        self.services = services
        self.secret = internal_secret

    def _headers(self) -> dict[str, str]:
        return service_headers(self.secret, "strategy")

    async def place(
        self,
        plan: Plan,
        instance_id: str,
        paper_fill: Mapping[str, Any] | None = None,
        sleeve: Mapping[str, Any] | None = None,
    ) -> Placed | Refused:
        body = _order_body(plan, instance_id, paper_fill, sleeve)
        try:
            response = await self.services.client("risk").request(
                "POST", "/v1/orders", json=body, headers=self._headers()
            )
        except Unavailable as exc:
            raise PathUnavailable(f"risk did not answer: {exc.message}") from exc
        try:
            payload = response.json()
        except ValueError:
            payload = {}
        if response.status_code in (200, 201):
            order = payload["order"]
            return Placed(str(order["order_id"]), str(order["status"]), int(order["filled_qty"]), order.get("reason"))
        code = str(payload.get("code", f"http_{response.status_code}"))
        if response.status_code >= 500:
            details = payload.get("details") or {}
            if isinstance(details, dict) and details.get("order_id"):
                # execution stored the order (it sends it itself): read its outcome from the listing later
                raise PathUnavailable(f"{code}: order {details['order_id']} accepted, outcome pending")
            raise PathUnavailable(f"{code}: {payload.get('message', '')}")
        decision = payload.get("decision") or {}
        return _refused(code, decision.get("reasons") or [], payload.get("message"))

    async def place_batch(
        self,
        batch_id: str,
        plans: Sequence[Plan],
        instance_id: str,
        paper_fill: Mapping[str, Any] | None,
        sleeves: Sequence[Mapping[str, Any]],
    ) -> list[Placed | Refused | PathUnavailable]:
        body = {
            "batch_id": batch_id,
            "orders": [
                _order_body(plan, instance_id, paper_fill, sleeve) for plan, sleeve in zip(plans, sleeves, strict=True)
            ],
        }
        client = self.services.client("risk")
        try:
            response = await client.request(
                "POST", "/v1/order-batches", json=body, headers=self._headers(),
                timeout=client.batch_timeout_s(len(plans), BATCH_ORDER_S),
            )  # fmt: skip
        except Unavailable as exc:
            raise PathUnavailable(f"risk did not answer: {exc.message}") from exc
        try:
            payload = response.json()
        except ValueError:
            payload = {}
        items = payload.get("items") if isinstance(payload, dict) else None
        if response.status_code != 200 or not isinstance(items, list) or len(items) != len(plans):
            code = payload.get("code", f"http_{response.status_code}") if isinstance(payload, dict) else ""
            raise PathUnavailable(f"the batch was not taken ({code})")
        answers: list[Placed | Refused | PathUnavailable] = []
        for item in items:
            if item["status"] == "placed":
                order = item["order"]
                answers.append(
                    Placed(str(order["order_id"]), str(order["status"]), int(order["filled_qty"]), order.get("reason"))
                )
            elif item["status"] == "refused":
                answers.append(_refused(str(item.get("code")), item.get("reasons") or [], item.get("message")))
            else:
                answers.append(PathUnavailable(f"{item.get('code')}: {item.get('message', '')}"))
        return answers

    async def _list(self, path: str, instance_id: str, id_field: str) -> list[dict[str, Any]]:
        """Every row of the instance, oldest first, page by page (`after` = the last id of the page before)."""
        rows: list[dict[str, Any]] = []
        params = {"strategy_instance_id": instance_id, "limit": str(self.PAGE), "oldest_first": "true"}
        while True:
            try:
                page = await self.services.client("execution").get_json(path, params=params, headers=self._headers())
            except Unavailable as exc:
                raise PathUnavailable(f"execution did not answer: {exc.message}") from exc
            except ServiceError as exc:
                raise PathUnavailable(f"execution answered {exc.code}: {exc.message}") from exc
            if not isinstance(page, list):
                raise PathUnavailable(f"execution's {path} is not a list")
            rows.extend(page)
            if len(page) < self.PAGE:
                return rows
            params = {"strategy_instance_id": instance_id, "limit": str(self.PAGE), "after": str(page[-1][id_field])}

    async def orders(self, instance_id: str) -> list[dict[str, Any]]:
        return await self._list("/v1/orders", instance_id, "order_id")

    async def trades(self, instance_id: str) -> list[TradeFill]:
        return [fill_of(row) for row in await self._list("/v1/trades", instance_id, "trade_id")]

    async def cancel(self, order_id: str) -> None:
        try:
            await self.services.client("execution").request(
                "POST", f"/v1/orders/{order_id}/cancel", headers=self._headers()
            )
        except Unavailable as exc:
            raise PathUnavailable(f"execution did not answer: {exc.message}") from exc


def _order_body(
    plan: Plan, instance_id: str, paper_fill: Mapping[str, Any] | None, sleeve: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Risk's order body of `plan` (`POST /v1/orders`, an item of `POST /v1/order-batches`)."""
    body: dict[str, Any] = {
        "client_order_id": plan.client_order_id,
        "ts_code": plan.ts_code,
        "side": plan.side,
        "order_type": "limit",
        "qty": plan.qty,
        "price": format(Decimal(plan.price_fen) / 100, ".2f"),
        "strategy_instance_id": instance_id,
    }
    if paper_fill is not None:
        body["paper_fill"] = dict(paper_fill)
    if sleeve is not None:
        body["sleeve"] = dict(sleeve)
    return body


def _refused(code: str, reasons: list[dict[str, Any]], message: Any) -> Refused:
    """A refusal as the runner keeps it: risk's reasons joined, or the message."""
    text = "; ".join(f"{r.get('code')}: {r.get('message')}" for r in reasons) if reasons else ""
    return Refused(code, text or str(message or code), tuple(str(r.get("code")) for r in reasons))


class ReplaySessions(Protocol):
    async def open_session(self, day: date, *, rewind: bool = False) -> None:
        """Move the replay clock to `day` (execution expires what rested on earlier sessions); `rewind`: the first
        day of a new replay, which may lie before the clock's session."""


class ExecutionReplaySessions:
    """Execution's `POST /v1/paper/session`: the shared replay clock moves to the day, resting day orders of earlier
    sessions expire."""

    def __init__(self, services: ServiceDirectory, internal_secret: str) -> None:
        self.services = services
        self.secret = internal_secret

    async def open_session(self, day: date, *, rewind: bool = False) -> None:
        try:
            response = await self.services.client("execution").request(
                "POST",
                "/v1/paper/session",
                json={"session": day.isoformat(), "rewind": rewind},
                headers=service_headers(self.secret, "strategy"),
            )
        except Unavailable as exc:
            raise PathUnavailable(f"execution did not answer: {exc.message}") from exc
        if response.status_code >= 500:
            raise PathUnavailable(f"execution answered HTTP {response.status_code} to the session move")
        if response.status_code >= 400:
            raise ServiceError(
                "replay_refused", f"execution refused the session {day}: {response.text[:200]}", status_code=409
            )

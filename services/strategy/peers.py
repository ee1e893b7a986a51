"""The strategy service's adapters to its peers, used when an instance is created: the data service resolves its
universe (through `shared.platform.market_data.MarketData`, as the backtest worker does), execution tells the account's
cash balance (asked as the instance's owner)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

from shared.core.domain import money
from shared.platform.clock import EXCHANGE_TZ, utcnow
from shared.platform.errors import ServiceError, Unavailable
from shared.platform.http import ServiceDirectory
from shared.platform.internal_auth import INTERNAL_HEADER, Principal, mint_internal_token, service_headers
from shared.platform.market_data import BarsUnavailable, MarketData
from shared.platform.universe import Universe

SERVICE = "strategy"


def empty_universe(universe: Universe, on: date, why: str = "") -> ServiceError:
    detail = f" ({why})" if why else ""
    return ServiceError(
        "empty_universe",
        f"universe: {universe.label()} has no stocks on {on}{detail}",
        status_code=422,
    )


class DataServiceUniverse:
    """Resolves a universe as of the exchange's today: an index's constituents from its newest weights, a filter's
    stocks, or the listed stocks among a list's codes."""

    def __init__(
        self,
        services: ServiceDirectory,
        internal_secret: str,
        *,
        clock: Callable[[], datetime] = utcnow,
        attempts: int = 2,
        backoff_s: float = 0.2,
    ) -> None:
        self.services = services
        self.internal_secret = internal_secret
        self.clock = clock
        self.attempts = attempts  # a person waits for the answer: a short retry, then 503
        self.backoff_s = backoff_s

    def _market(self) -> MarketData:
        # Only the JSON reads are used here (no bars), so the cache directory is never written.
        return MarketData(
            self.services.client("data"),
            lambda: service_headers(self.internal_secret, SERVICE),
            Path(tempfile.gettempdir()) / "lianghua-strategy-bars",
            attempts=self.attempts,
            backoff_s=self.backoff_s,
        )

    async def resolve(self, universe: Universe) -> list[str]:
        on = self.clock().astimezone(EXCHANGE_TZ).date()
        market = self._market()
        try:
            if universe.index is not None:
                return await market.index_constituents(universe.index, on)
            spec = universe.filter
            if spec is not None:
                return await market.filtered_securities(
                    on=on,
                    board=None if spec.board is None else spec.board.value,
                    industry=spec.industry,
                    exclude_st=spec.exclude_st,
                    listed_before=spec.listed_before,
                )
            listed = set(
                await market.filtered_securities(on=on, board=None, industry=None, exclude_st=False, listed_before=None)
            )
        except BarsUnavailable as exc:
            cause = exc.__cause__
            if isinstance(cause, Unavailable):
                raise Unavailable(
                    "data_unavailable", f"the data service could not resolve the universe: {cause.message}"
                ) from exc
            if isinstance(cause, ServiceError):  # refused: an unknown index, ...
                raise empty_universe(universe, on, f"{cause.code}: {cause.message}") from exc
            raise empty_universe(universe, on, str(exc)) from exc  # no constituents published by then
        codes = universe.ts_codes or []
        unknown = [c for c in codes if c not in listed]
        if unknown and len(unknown) < len(codes):
            raise ServiceError(
                "unknown_securities",
                f"universe.ts_codes: the data service lists no stock {', '.join(unknown[:10])}"
                + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else "")
                + f" on {on} (not listed, delisted or unknown)",
                status_code=422,
                ts_codes=unknown,
            )
        return [c for c in codes if c in listed]


class ExecutionAccountCash:
    """The balance from execution's `GET /v1/account`, asked as `principal` (an owner's own account is opened with
    the paper opening cash the first time it is seen, as when they place an order); another account, named by an
    admin, must exist already."""

    def __init__(self, services: ServiceDirectory, internal_secret: str) -> None:
        self.services = services
        self.internal_secret = internal_secret

    async def balance(self, account_id: str, principal: Principal) -> Decimal:
        headers = {INTERNAL_HEADER: mint_internal_token(self.internal_secret, principal)}
        own = (principal.account_id or principal.subject) == account_id
        params = {} if own else {"account_id": account_id}
        try:
            body = await self.services.client("execution").get_json("/v1/account", params=params, headers=headers)
        except Unavailable as exc:
            raise Unavailable(
                "execution_unavailable", f"cannot read the account's cash to check the capital: {exc.message}"
            ) from exc
        except ServiceError as exc:
            if exc.code == "account_not_found":
                raise ServiceError(
                    "unknown_account", f"account_id: execution has no account {account_id}", status_code=422
                ) from exc
            raise
        try:
            if body["account_id"] != account_id:
                raise ValueError(f"execution answered the account {body['account_id']}, not {account_id}")
            return money(body["balance"])
        except (KeyError, TypeError, ValueError) as exc:
            raise Unavailable("execution_unavailable", f"execution's account is malformed: {exc!r}") from exc

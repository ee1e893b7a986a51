"""Risk's port to the strategy service's sleeve (K2), against a fake answering over httpx.MockTransport: what counts as
"no such instance" (422 for the order) and what as "cannot tell" (503, fail closed)."""

from datetime import date
from typing import Any

import httpx
import pytest

from services.risk.desk import SleeveUnavailable, StrategySleeves
from shared.platform.http import ServiceDirectory
from shared.platform.internal_auth import INTERNAL_HEADER, verify_internal_token
from shared.platform.settings import Settings

SECRET = "unit-internal-secret-0123456789abcdef"
INSTANCE = "0123456789abcdef0123456789abcdef"
SLEEVE = {
    "instance_id": INSTANCE,
    "account_id": "acct-alice",
    "owner": "alice",
    "state": "running",
    "cash_available": "10000.00",
    "positions": [{"ts_code": "600000.SH", "qty": 300, "sellable_qty": 200}],
}


def _port(status: int, body: Any, seen: list[tuple[str, str]] | None = None) -> StrategySleeves:
    def answer(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            principal = verify_internal_token(SECRET, request.headers[INTERNAL_HEADER])
            seen.append((str(request.url.copy_with(scheme=None, netloc=None)), principal.subject))
        if isinstance(body, str):
            return httpx.Response(status, text=body)
        return httpx.Response(status, json=body)

    settings = Settings(internal_secret=SECRET, log_json=False)
    return StrategySleeves(ServiceDirectory(settings, transports={"strategy": httpx.MockTransport(answer)}), SECRET)


async def test_the_sleeve_is_read_as_risk() -> None:
    seen: list[tuple[str, str]] = []
    sleeve = await _port(200, SLEEVE, seen).sleeve(INSTANCE, client_order_id="c-1", ts_code="600000.SH")
    # as this order is checked: its own reservation not counted, only its symbol's position
    assert seen == [(f"/v1/strategy-instances/{INSTANCE}/sleeve?client_order_id=c-1&ts_code=600000.SH", "svc:risk")]
    assert sleeve is not None
    assert (sleeve.account_id, sleeve.state, str(sleeve.cash_available)) == ("acct-alice", "running", "10000.00")
    assert sleeve.holding("600000.SH") is not None and sleeve.holding("600000.SH").sellable_qty == 200  # type: ignore[union-attr]
    assert sleeve.holding("600036.SH") is None


async def test_the_session_the_order_is_for_is_named() -> None:
    """On the real clock risk names the order's session: the sleeve answers the shares sellable in it (T+1)."""
    seen: list[tuple[str, str]] = []
    await _port(200, SLEEVE, seen).sleeve(
        INSTANCE, client_order_id="c-1", ts_code="600000.SH", session=date(2024, 3, 5)
    )
    query = "client_order_id=c-1&ts_code=600000.SH&session=2024-03-05"
    assert seen == [(f"/v1/strategy-instances/{INSTANCE}/sleeve?{query}", "svc:risk")]


async def test_an_instance_the_strategy_service_does_not_know_is_none() -> None:
    answer = {"code": "instance_not_found", "message": "no such instance"}
    assert await _port(404, answer).sleeve(INSTANCE, client_order_id="c-1", ts_code="600000.SH") is None


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (404, {"detail": "Not Found"}),  # no such route (an older strategy service): not an answer about the instance
        (500, {"code": "internal_error", "message": "boom"}),
        (503, {"code": "database_unavailable", "message": "down"}),
        (200, "not json"),
        (200, {**SLEEVE, "cash_available": "NaN"}),
        (200, {**SLEEVE, "account_id": "acct\x1falice"}),
        (200, {key: value for key, value in SLEEVE.items() if key != "state"}),
        (200, {**SLEEVE, "instance_id": "f" * 32}),  # another instance's sleeve
    ],
)
async def test_anything_else_is_unavailable(status: int, body: Any) -> None:
    with pytest.raises(SleeveUnavailable):
        await _port(status, body).sleeve(INSTANCE, client_order_id="c-1", ts_code="600000.SH")

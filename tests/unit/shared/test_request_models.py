"""Request bodies are read strictly (shared/platform/request_model.py): unknown fields refused, integers and booleans only as
such, decimals only when exact, dates only as dates, client_order_id printable ASCII without space, quotes, < > or
backslash. The first test walks every body the gateway and the services read, so a new one cannot slip past."""

from __future__ import annotations

import types
from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Union, get_args, get_origin

import pytest
from fastapi.routing import APIRoute
from pydantic import BaseModel, Strict, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from lianghua.standalone import build_app
from shared.platform.request_model import ClientOrderId, JsonDecimal, RequestModel, TradeDate
from shared.platform.settings import Settings

# The gateway's proxy routes take any JSON object and pass the bytes on unchanged: the service behind validates them.
PASSED_THROUGH = {
    "/api/v1/orders",
    "/api/v1/order-batches",
    "/api/v1/orders/cancel-all",
    "/api/v1/account/cash",
    "/api/v1/account/paper-settings",
    "/api/v1/accounts/{account_id}/broker",
    "/api/v1/bridges/{bridge_id}/trading",
    "/api/v1/risk/halt",
    "/api/v1/risk/stops",
    "/api/v1/conditional-orders",
    "/api/v1/oco-orders",
    "/api/v1/orders/{order_id}/amend",
    "/api/v1/indicators/series",
    "/api/v1/risk/rules/{scope}",
    "/api/v1/ingest/backfill",
    "/api/v1/ingest/limits",
    "/api/v1/quality/run",
    "/api/v1/backtests",
    "/api/v1/optimisations",
    "/api/v1/strategy-instances",
    "/api/v1/strategy-instances/{instance_id}",
    "/api/v1/strategy-instances/{instance_id}/start",
    "/api/v1/strategy-instances/{instance_id}/stop",
}


def _required(annotation: Any) -> Any:
    """An optional body's type without its None (`StopRequest | None` -> StopRequest)."""
    if get_origin(annotation) in (Union, types.UnionType):
        [inner] = [arg for arg in get_args(annotation) if arg is not type(None)]
        return inner
    return annotation


def _leaves(annotation: Any, metadata: tuple[Any, ...] = ()) -> list[tuple[Any, tuple[Any, ...]]]:
    """The leaf types of an annotation with the metadata that applies to each (through Annotated and unions)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        inner, *extra = get_args(annotation)
        return _leaves(inner, metadata + tuple(extra))
    if origin in (Union, types.UnionType):
        return [leaf for arg in get_args(annotation) if arg is not type(None) for leaf in _leaves(arg, metadata)]
    if origin in (list, tuple, set, frozenset, dict):
        return [leaf for arg in get_args(annotation) if arg is not Ellipsis for leaf in _leaves(arg, metadata)]
    return [(annotation, metadata)]


def _problems(model: type[BaseModel], seen: set[type[BaseModel]]) -> list[str]:
    if model in seen:
        return []
    seen.add(model)
    problems = [] if issubclass(model, RequestModel) else [f"{model.__name__} is not a RequestModel"]
    for name, field in model.model_fields.items():
        for leaf, metadata in _leaves(field.annotation, tuple(field.metadata)):
            where = f"{model.__name__}.{name}"
            strict = any(isinstance(m, Strict) and m.strict for m in metadata)
            flat = [*metadata, *(inner for m in metadata if isinstance(m, FieldInfo) for inner in m.metadata)]
            finite = any(getattr(m, "allow_inf_nan", None) is False for m in flat)
            validators = {getattr(m, "func", None) for m in metadata}
            if leaf in (int, bool) and not strict:
                problems.append(f"{where}: a lax {leaf.__name__} (use StrictInt / StrictBool)")
            if leaf is float and not (strict and finite):
                problems.append(f"{where}: a lax float or one that takes NaN (use FiniteFloat)")
            if leaf is Decimal and _leaves(JsonDecimal)[0][1][0].func not in validators:
                problems.append(f"{where}: a Decimal that is not a JsonDecimal")
            if leaf is date and _leaves(TradeDate)[0][1][0].func not in validators:
                problems.append(f"{where}: a date that is not a TradeDate")
            if isinstance(leaf, type) and issubclass(leaf, BaseModel):
                problems.extend(_problems(leaf, seen))
    return problems


def _api_routes(routes: list[Any]) -> list[APIRoute]:
    """The app's routes, through included routers (FastAPI keeps those as one entry holding `original_router`)."""
    found: list[APIRoute] = []
    for route in routes:
        if isinstance(route, APIRoute):
            found.append(route)
        elif (router := getattr(route, "original_router", None)) is not None:
            found.extend(_api_routes(router.routes))
    return found


def test_every_request_body_of_every_app_is_a_strict_request_model() -> None:
    host = build_app(Settings())
    apps = {"gateway": host.state.gateway, **host.state.services}
    bodies: dict[str, type[BaseModel]] = {}
    for service, app in apps.items():
        for route in _api_routes(app.routes):
            if route.body_field is None:
                continue
            body = _required(route.body_field.field_info.annotation)
            if service == "gateway" and route.path in PASSED_THROUGH:
                assert get_origin(body) is dict, route.path
                continue
            if route.path == "/api/v1/auth/token":
                continue  # the OAuth2 password form: fixed fields, strings
            assert isinstance(body, type) and issubclass(body, BaseModel), (service, route.path, body)
            name = f"{service} {route.path}"
            if name in bodies:  # two methods of one path with bodies (PUT and DELETE of a rule set)
                name += " " + "/".join(sorted(route.methods))
            bodies[name] = body

    # The bodies this checks (so that the walk above cannot quietly find nothing).
    assert {k: v.__name__ for k, v in bodies.items()} == {
        "gateway /api/v1/users": "UserCreate",
        "gateway /api/v1/users/{username}": "UserUpdate",
        "gateway /api/v1/api-keys": "ApiKeyCreate",
        "gateway /api/v1/alerts/silences": "SilenceCreate",
        "gateway /api/v1/alerts/webhook": "WebhookNotification",
        "data /v1/ingest/backfill": "RangeIn",
        "data /v1/ingest/limits": "LimitsIn",
        "data /v1/quality/run": "RangeIn",
        "data /v1/quotes/watch": "WatchRequest",
        "backtest /v1/backtests": "BacktestRequest",
        "backtest /v1/optimisations": "OptimisationRequest",
        "risk /v1/orders": "OrderRequest",
        "risk /v1/order-batches": "OrderBatchRequest",
        "risk /v1/risk/halt": "HaltRequest",
        "risk /v1/risk/stops": "StopRequest",
        "risk /v1/conditional-children": "ConditionalChild",
        "risk /v1/replacement-orders": "ReplacementOrder",
        "risk /v1/risk/rules/{scope}": "RuleSetChange",
        "risk /v1/risk/rules/{scope} DELETE": "RuleSetClear",
        "execution /v1/orders": "OrderSubmission",
        "execution /v1/account/cash": "CashMovementIn",
        "execution /v1/orders/cancel-all": "CancelAllIn",
        "strategy /v1/strategy-instances": "InstanceCreate",
        "strategy /v1/indicators/series": "IndicatorSeriesRequest",
        "strategy /v1/strategy-instances/{instance_id}": "ParamsUpdate",
        "strategy /v1/strategy-instances/{instance_id}/start": "StartRequest",
        "strategy /v1/strategy-instances/{instance_id}/stop": "StopRequest",
        "execution /v1/paper/session": "PaperSessionIn",
        "execution /v1/account/paper-settings": "PaperSettingsIn",
        "execution /v1/accounts/{account_id}/broker": "AccountBrokerIn",
        "execution /v1/bridges/{bridge_id}/trading": "TradingSwitchIn",
        "execution /v1/conditional-orders": "ConditionalOrderIn",
        "execution /v1/oco-orders": "OcoIn",
        "execution /v1/orders/{order_id}/amend": "AmendIn",
        "execution /v1/order-submissions": "OrderSubmissionBatch",
    }
    seen: set[type[BaseModel]] = set()
    assert [p for body in bodies.values() for p in _problems(body, seen)] == []
    assert {m.__name__ for m in seen} >= {"Universe", "UniverseFilter", "CostModel", "SleeveRequest", "WalkForwardSpec",
                                         "GeneticSpec", "OptimisationConfig", "CarriedSleeve",
                                         "CarriedPosition", "ConditionIn", "ReplacedOriginal", "IndicatorAsk"}  # fmt: skip


# --- the types themselves --------------------------------------------------------------------------------------


class Order(RequestModel):
    qty: Annotated[int, Strict()]
    price: JsonDecimal | None = None


def _error(body: dict[str, Any]) -> dict[str, Any]:
    with pytest.raises(ValidationError) as caught:
        Order.model_validate(body)
    error: dict[str, Any] = caught.value.errors()[0]
    return error


def test_unknown_fields_are_refused_by_name() -> None:
    with pytest.raises(ValidationError) as caught:
        Order.model_validate({"qty": 100, "stop_price": "9.50", "time_in_force": "GTC"})
    assert sorted((e["loc"], e["type"]) for e in caught.value.errors()) == [
        (("stop_price",), "extra_forbidden"),
        (("time_in_force",), "extra_forbidden"),
    ]


@pytest.mark.parametrize("qty", [True, "100", 100.0, 1e3, None])
def test_integers_are_json_integers_only(qty: Any) -> None:
    error = _error({"qty": qty})
    assert error["loc"] == ("qty",) and error["type"] == "int_type"


@pytest.mark.parametrize(
    ("price", "expected"),
    [
        ("10.50", Decimal("10.50")),  # the documented form: exact, trailing zero kept
        (10.5, Decimal("10.5")),
        (10.1, Decimal("10.1")),  # the number as written, not the float's 10.0999999999999996447...
        (10, Decimal("10")),
        ("-3", Decimal("-3")),  # (a price's own gt=0 refuses it, with that reason)
        (0.00001, Decimal("0.00001")),  # a fee rate: repr writes it 1e-05, still exact
        (123456789.012345, Decimal("123456789.012345")),  # 15 significant digits
        ("1234567890.123456789", Decimal("1234567890.123456789")),  # any length as a string
    ],
)
def test_decimals_are_read_exactly(price: Any, expected: Decimal) -> None:
    read = Order.model_validate({"qty": 1, "price": price}).price
    assert read == expected and str(read) == str(expected)


@pytest.mark.parametrize(
    "price",
    [True, False, "1e3", "1_000", " 10.5", "10.50\n", "10.", ".5", "ten", "", "\u0661\u0660", 1234567890.1234567, [10]],
)
def test_decimals_that_are_not_exact_or_not_numbers_are_refused(price: Any) -> None:
    assert _error({"qty": 1, "price": price})["loc"] == ("price",)


def test_nan_and_infinity_are_refused() -> None:
    for price in (float("nan"), float("inf"), "NaN"):
        assert _error({"qty": 1, "price": price})["loc"] == ("price",)


def test_trade_dates_are_dates_not_timestamps() -> None:
    days = TypeAdapter(TradeDate)
    assert days.validate_python("2024-01-02") == date(2024, 1, 2)
    assert days.validate_python("20240102") == date(2024, 1, 2)
    for bad in (
        20240102,
        1704153600,
        "2024-1-2",
        "2024-02-30",
        "\u0662\u0660\u0662\u0664\u0660\u0661\u0660\u0662",
        True,
        " 2024-01-02",
        "2024-01-02 ",
        "20240102\n",
        "\t20240102",
    ):
        with pytest.raises(ValidationError):
            days.validate_python(bad)


OK_IDS = ["web-5f1c2a9e", "c-1", "A" * 64, "ord:2024/01/02#7", "!#$%&()*+,-./:;=?@[]^_{|}~"]
BAD_IDS = [
    "",
    " ",  # a lone space
    "web 1",
    "A" * 65,
    "evil\u202etxt.exe",  # right-to-left override: shows as another id
    "web\u200b1",  # zero-width space
    "web\u20601",  # word joiner
    "web\ufeff1",  # zero-width no-break space
    "web\u00851",  # NEL (U+0085)
    "web\u00a01",  # no-break space
    "web\t1",
    "web\x1f1",  # the approval's field separator
    "<script>alert(1)</script>",
    'web"1',
    "web'1",
    "web`1",
    "web\\1",
    "订单1",
]


def test_client_order_ids_are_printable_ascii_without_space_quotes_angle_brackets_or_backslash() -> None:
    ids = TypeAdapter(ClientOrderId)
    for good in OK_IDS:
        assert ids.validate_python(good) == good
    for bad in BAD_IDS:
        with pytest.raises(ValidationError):
            ids.validate_python(bad)


def test_aware_datetimes_are_iso_text_not_timestamps() -> None:
    from datetime import datetime, timedelta, timezone

    from shared.platform.request_model import IsoAwareDatetime

    times = TypeAdapter(IsoAwareDatetime)
    assert times.validate_python("2026-07-01T00:00:00+08:00") == datetime(
        2026, 7, 1, tzinfo=timezone(timedelta(hours=8))
    )
    for bad in (1782835200, 1782835200.5, "2026-07-01T00:00:00", True):
        with pytest.raises(ValidationError):
            times.validate_python(bad)


def test_the_websocket_quote_subscription_is_a_strict_request_model() -> None:
    """A browser's `{"op", "codes"}` on the gateway's /ws (docs/quotes.md) is read by the same rules as a body."""
    from gateway.schemas import QuoteSubscription

    assert _problems(QuoteSubscription, set()) == []
    with pytest.raises(ValidationError) as caught:
        QuoteSubscription.model_validate({"op": "subscribe", "codes": ["600000.SH"], "levels": 5})
    assert [(e["loc"], e["type"]) for e in caught.value.errors()] == [(("levels",), "extra_forbidden")]


def test_the_quote_watch_is_a_strict_request_model() -> None:
    from services.data.realtime.watch import WatchRequest

    ok = WatchRequest.model_validate({"owner": "execution:h:1", "codes": ["600000.SH"]})
    assert (ok.owner, ok.codes, ok.ttl_s) == ("execution:h:1", ["600000.SH"], 90)
    for bad in (
        {"owner": "execution:h:1", "codes": [], "extra": 1},  # unknown field
        {"owner": "a b", "codes": []},  # owner not [A-Za-z0-9_.:-]
        {"owner": "x", "codes": ["600000.SH"] * 301},  # over 300
        {"owner": "x", "codes": [], "ttl_s": "90"},  # a string for an integer
        {"owner": "x", "codes": [], "ttl_s": 5},  # below 10 s
    ):
        with pytest.raises(ValidationError):
            WatchRequest.model_validate(bad)

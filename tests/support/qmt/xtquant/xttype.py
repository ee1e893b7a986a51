"""xtquant's data types with the documented fields (keyword-built here; the real ones are filled by the library)."""

from __future__ import annotations

from typing import Any, ClassVar


class StockAccount:
    def __new__(cls, account_id: Any, account_type: str = "STOCK") -> Any:
        if not isinstance(account_id, str):
            # as the real one does: an error string is returned instead of an exception
            return "资金账号必须为字符串类型"
        return super().__new__(cls)

    def __init__(self, account_id: str, account_type: str = "STOCK") -> None:
        self.account_id = account_id
        self.account_type = account_type


class _Fields:
    FIELDS: ClassVar[tuple[str, ...]] = ()
    DEFAULTS: ClassVar[dict[str, Any]] = {}

    def __init__(self, **values: Any) -> None:
        unknown = set(values) - set(self.FIELDS)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no fields {sorted(unknown)}")
        for name in self.FIELDS:
            setattr(self, name, values.get(name, self.DEFAULTS.get(name, 0)))

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.FIELDS}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.as_dict()!r})"


_STR = {
    "account_id": "",
    "stock_code": "",
    "order_sysid": "",
    "status_msg": "",
    "strategy_name": "",
    "order_remark": "",
    "secu_account": "",
    "instrument_name": "",
    "traded_id": "",
    "error_msg": "",
}


class XtAsset(_Fields):
    FIELDS = ("account_type", "account_id", "cash", "frozen_cash", "market_value", "total_asset", "fetch_balance")
    DEFAULTS = _STR


class XtOrder(_Fields):
    FIELDS = (
        "account_type",
        "account_id",
        "stock_code",
        "order_id",
        "order_sysid",
        "order_time",
        "order_type",
        "order_volume",
        "price_type",
        "price",
        "traded_volume",
        "traded_price",
        "order_status",
        "status_msg",
        "strategy_name",
        "order_remark",
        "direction",
        "offset_flag",
        "secu_account",
        "instrument_name",
    )
    DEFAULTS = _STR


class XtTrade(_Fields):
    FIELDS = (
        "account_type",
        "account_id",
        "stock_code",
        "order_type",
        "traded_id",
        "traded_time",
        "traded_price",
        "traded_volume",
        "traded_amount",
        "order_id",
        "order_sysid",
        "strategy_name",
        "order_remark",
        "direction",
        "offset_flag",
        "commission",
        "secu_account",
        "instrument_name",
    )
    DEFAULTS = _STR


class XtPosition(_Fields):
    FIELDS = (
        "account_type",
        "account_id",
        "stock_code",
        "volume",
        "can_use_volume",
        "open_price",
        "market_value",
        "frozen_volume",
        "on_road_volume",
        "yesterday_volume",
        "avg_price",
        "direction",
        "last_price",
        "profit_rate",
        "secu_account",
        "instrument_name",
        "float_profit",
    )
    DEFAULTS = _STR


class XtOrderError(_Fields):
    FIELDS = ("account_type", "account_id", "order_id", "error_id", "error_msg", "strategy_name", "order_remark")
    DEFAULTS = _STR


class XtCancelError(_Fields):
    FIELDS = ("account_type", "account_id", "order_id", "market", "order_sysid", "error_id", "error_msg")
    DEFAULTS = _STR


class XtOrderResponse(_Fields):
    FIELDS = ("account_type", "account_id", "order_id", "strategy_name", "order_remark", "error_msg", "seq")
    DEFAULTS = _STR


class XtCancelOrderResponse(_Fields):
    FIELDS = ("account_type", "account_id", "cancel_result", "order_id", "order_sysid", "seq", "error_msg")
    DEFAULTS = _STR


class XtAccountStatus(_Fields):
    FIELDS = ("account_type", "account_id", "status")
    DEFAULTS = _STR

"""What every REST request body of the platform is built from: `RequestModel` (unknown fields are refused: 422
naming them) and the input types that read JSON strictly — integers and booleans only as JSON integers and booleans,
decimals only when exact, dates only as dates — plus the one definition of a `client_order_id`.

Integer and boolean fields of a request model are `StrictInt` / `StrictBool` (re-exported here): pydantic's lax mode
would read `true` as 1, `"100"`, `100.0` and `1e3` as 100/1000, and `"yes"` or 1 as true. FastAPI validates bodies
after `json.loads` (Python mode), so a model-wide `strict=True` would also refuse `"10.50"`, `"2024-01-02"` and
`"buy"`, which JSON can only carry as strings: strictness is therefore per type, with the types below.
tests/unit/shared/test_request_models.py checks every body the apps read against these rules."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictFloat, StrictInt

__all__ = [
    "ACCOUNT_ID_PATTERN",
    "CLIENT_ORDER_ID_PATTERN",
    "STRATEGY_INSTANCE_ID_PATTERN",
    "AccountId",
    "ClientOrderId",
    "FiniteFloat",
    "IdempotencyKey",
    "IsoAwareDatetime",
    "JsonDecimal",
    "RequestModel",
    "StrategyInstanceId",
    "StrictBool",
    "StrictInt",
    "TradeDate",
]


class RequestModel(BaseModel):
    """The base of every request body model (and of the models nested in one). A field the model does not have is
    an error (422 `invalid_request`, the field named), never silently dropped: an order with `stop_price` or
    `time_in_force` would otherwise be placed as a plain limit order."""

    model_config = ConfigDict(extra="forbid")


# --- decimals -----------------------------------------------------------------------------------------------------

_DECIMAL_TEXT = re.compile(r"[+-]?[0-9]+(\.[0-9]+)?")  # ASCII digits only (\d takes any script's)
# A float holds any decimal of up to 15 significant digits exactly enough that its shortest repr gives those digits
# back (DBL_DIG); a JSON number with more may already have been changed by json.loads before we see it.
_FLOAT_DIGITS = 15


def _exact_decimal(value: object) -> object:
    """Decimal input, exact or refused: a string in plain decimal notation ("10.50", "-3", not "1e3", "1_000" or
    " 10"), a JSON integer, or a JSON number with a fraction of at most 15 significant digits (read through its
    shortest repr, so 10.1 is 10.1, not 10.0999...). Booleans are refused. Constraints (gt, max_digits,
    decimal_places) are the field's own."""
    if isinstance(value, bool):
        raise ValueError('a decimal is a string like "10.50" or a number, not true or false')
    if isinstance(value, str):
        if not _DECIMAL_TEXT.fullmatch(value):
            raise ValueError(f'{value[:40]!r} is not a decimal written like "10.50"')
        return Decimal(value)
    if isinstance(value, float):
        exact = Decimal(repr(value))
        if exact.is_finite() and len(exact.as_tuple().digits) > _FLOAT_DIGITS:
            raise ValueError(
                f"{value!r} has more than {_FLOAT_DIGITS} significant digits, more than a JSON number carries "
                'exactly: send it as a string, e.g. "10.50"'
            )
        return exact  # NaN and infinities reach the field's allow_inf_nan=False (the Decimal default)
    return value


JsonDecimal = Annotated[Decimal, BeforeValidator(_exact_decimal)]
"""A Decimal read exactly from JSON: `"10.50"` (the documented form: exact whatever its length) or `10.5`."""


# --- dates --------------------------------------------------------------------------------------------------------

_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_COMPACT_DATE = re.compile(r"[0-9]{8}")


def _trade_date(value: object) -> date:
    """Dates as traders type them: 2024-01-02 or Tushare's 20240102; nothing else (no timestamps: pydantic would
    read the number 20240102 as seconds since 1970; no surrounding spaces, as no other field takes them)."""
    if isinstance(value, date):
        return value
    text = value if isinstance(value, str) else ""
    try:
        if _ISO_DATE.fullmatch(text):
            return date.fromisoformat(text)
        if _COMPACT_DATE.fullmatch(text):
            return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        pass
    raise ValueError(f"{value!r} is not a date like 2024-01-02 or 20240102")


TradeDate = Annotated[date, BeforeValidator(_trade_date)]


def _iso_datetime_text(value: object) -> object:
    """A date-time as ISO 8601 text ("2026-07-01T00:00:00+08:00"), not a number: pydantic would read 1767225600
    (or 20260701) as seconds since 1970."""
    if not isinstance(value, str):
        raise ValueError('a date-time is ISO 8601 text with a UTC offset, e.g. "2026-07-01T00:00:00+08:00"')
    return value


IsoAwareDatetime = Annotated[AwareDatetime, BeforeValidator(_iso_datetime_text)]
"""A date-time with a UTC offset, read only from ISO 8601 text."""


FiniteFloat = Annotated[StrictFloat, Field(allow_inf_nan=False)]
"""A float read strictly: a JSON number (an integer too), not "0.02" or true, and never NaN or an infinity."""


# --- client_order_id ----------------------------------------------------------------------------------------------

# Printable ASCII without the space, the quotes (" ' `), the angle brackets and the backslash: letters, digits and
# ! # $ % & ( ) * + , - . / : ; = ? @ [ ] ^ _ { | } ~. So no control character (approvals join fields with one,
# shared/platform/approval.py), no bidi override or zero-width character that shows an id as another, nothing that
# breaks
# out of HTML or a quoted string where an id is shown or logged.
CLIENT_ORDER_ID_PATTERN = r"^[A-Za-z0-9!#$%&()*+,\-./:;=?@\[\]^_{|}~]{1,64}$"

ClientOrderId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=CLIENT_ORDER_ID_PATTERN,
        description="your id of the order, 1-64 characters: letters, digits and ! # $ % & ( ) * + , - . / : ; = ? @ "
        "[ ] ^ _ { | } ~ (printable ASCII without space, quotes, < > and backslash). The same id never makes two "
        "orders.",
        examples=["web-5f1c2a9e"],
    ),
]

IdempotencyKey = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=CLIENT_ORDER_ID_PATTERN,
        description="your key for this request, 1-64 characters, the same characters as a client_order_id: sending it "
        "again never repeats the effect.",
    ),
]

# An account id is the id the gateway gives an account (by default its owner's user name): ASCII letters, digits
# and _ . @ -, starting with a letter or digit. No space, no invisible or look-alike characters: it is shown to people
# and written into approvals and logs.
ACCOUNT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$"

AccountId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=ACCOUNT_ID_PATTERN,
        description="1-64 characters: ASCII letters, digits and _ . @ -, starting with a letter or digit",
    ),
]

# A strategy instance's id, as the strategy service makes it: uuid4().hex. Lowercase hex only, so it is safe in an
# approval (no control character), in a client_order_id (the runner's ids start with it) and in a URL path.
STRATEGY_INSTANCE_ID_PATTERN = r"^[0-9a-f]{32}$"

StrategyInstanceId = Annotated[
    str,
    Field(
        min_length=32,
        max_length=32,
        pattern=STRATEGY_INSTANCE_ID_PATTERN,
        description="a strategy instance's id: 32 lowercase hex characters (a uuid4 without dashes)",
        examples=["3f2b8c1d9e4a4b7c8d6e5f4a3b2c1d0e"],
    ),
]

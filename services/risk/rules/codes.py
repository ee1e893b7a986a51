"""Which stocks may be bought: a blacklist, a whitelist (when set, only its codes), ST stocks and suspended stocks
(each refusable). Sells of what is held are never blocked by these: an account must be able to get out."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Field

from services.risk.rules.base import Finding, Level, RuleConfig, RuleOrder
from shared.core.domain import OrderSide
from shared.platform.request_model import StrictBool

RULE = "codes"

# A stock's code as orders name it once checked (canonical: six digits, the exchange's suffix in capitals).
Code = Annotated[str, Field(pattern=r"^[0-9]{6}\.(SH|SZ|BJ)$")]


def _once_each(value: Any) -> Any:
    """A list of codes names each once (the document says its items are unique): a repeat is refused, not merged."""
    if isinstance(value, list | tuple):
        seen: set[str] = set()
        for item in value:
            if not isinstance(item, str):
                continue  # (not a code: refused by the item's own type)
            if item in seen:
                raise ValueError(f"{item!r} is listed twice")
            seen.add(item)
    return value


Codes = Annotated[frozenset[Code], BeforeValidator(_once_each), Field(max_length=10_000)]


class CodesConfig(RuleConfig):
    intersect = frozenset({"whitelist"})
    blacklist: Codes = frozenset()
    whitelist: Codes | None = None  # None: every code
    refuse_st: StrictBool = False
    refuse_suspended: StrictBool = True


def check(order: RuleOrder, config: CodesConfig) -> list[Finding]:
    if order.side is not OrderSide.BUY:
        return []
    findings: list[Finding] = []
    if order.ts_code in config.blacklist:
        findings.append(Finding(RULE, "blacklisted", Level.DENY, f"{order.ts_code} is on the blacklist"))
    if config.whitelist is not None and order.ts_code not in config.whitelist:
        findings.append(Finding(RULE, "not_whitelisted", Level.DENY, f"{order.ts_code} is not on the whitelist"))
    if config.refuse_st and order.reference.is_st:
        findings.append(Finding(RULE, "st_stock", Level.DENY, f"{order.ts_code} is under ST"))
    if config.refuse_suspended and order.reference.suspended:
        findings.append(Finding(RULE, "suspended", Level.DENY, f"{order.ts_code} is suspended"))
    return findings

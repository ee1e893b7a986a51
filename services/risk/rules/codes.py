"""Which stocks may be bought: a blacklist, a whitelist (when set, only its codes), ST stocks and suspended stocks
(each refusable). Sells of what is held are never blocked by these: an account must be able to get out."""

from __future__ import annotations

from services.risk.rules.base import Finding, Level, RuleConfig, RuleOrder
from shared.core.domain import OrderSide
from shared.platform.request_model import StrictBool

RULE = "codes"


class CodesConfig(RuleConfig):
    intersect = frozenset({"whitelist"})
    blacklist: frozenset[str] = frozenset()
    whitelist: frozenset[str] | None = None  # None: every code
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

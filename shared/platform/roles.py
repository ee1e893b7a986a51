"""Who may do what: the one `Role` of a user (viewer < trader < admin, each including the ones below it) and the
role a service acting on its own carries in an internal token (`SERVICE`). The gateway stores and checks users'
roles; the services read the role from the internal token's `Principal` (shared/platform/internal_auth.py) and decide
with
its policies (`at_least`, `acts_for_everyone`), never by comparing strings."""

from __future__ import annotations

from enum import StrEnum

# The role of a service calling another on its own behalf (`service_headers`): not a user's role, never stored.
SERVICE = "service"


class Role(StrEnum):
    VIEWER = "viewer"  # reads: market data, strategies, backtests, their own account
    TRADER = "trader"  # and places and cancels orders for their own account
    ADMIN = "admin"  # and manages users, sees and acts for every owner and account

    @property
    def rank(self) -> int:
        return _RANK[self]

    def at_least(self, needed: Role) -> bool:
        """A role includes every role below it: admin can trade, a trader can read."""
        return self.rank >= needed.rank


_RANK = {Role.VIEWER: 0, Role.TRADER: 1, Role.ADMIN: 2}


def user_role(value: str) -> Role | None:
    """The user's Role named by `value`; None for a service's role or a name that is no role."""
    try:
        return Role(value)
    except ValueError:
        return None

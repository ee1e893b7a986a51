"""The one Role and the policies the services apply to an internal token's principal."""

import pytest

from shared.platform.internal_auth import Principal
from shared.platform.roles import SERVICE, Role, user_role


@pytest.mark.parametrize(
    ("role", "trades", "admin", "everyone"),
    [
        ("viewer", False, False, False),
        ("trader", True, False, False),
        ("admin", True, True, True),
        (SERVICE, False, False, True),  # a service on its own: sees every owner, acts for any account, never trades
        ("superuser", False, False, False),  # no such role: nothing (fail closed)
    ],
)
def test_policies_of_a_principal(role: str, trades: bool, admin: bool, everyone: bool) -> None:
    principal = Principal("someone", role, "acct-1")
    assert principal.at_least(Role.VIEWER) is (role in ("viewer", "trader", "admin"))
    assert principal.at_least(Role.TRADER) is trades
    assert principal.at_least(Role.ADMIN) is admin
    assert principal.acts_for_everyone is everyone


def test_user_role_names_only_users_roles() -> None:
    assert [user_role(v) for v in ("viewer", "trader", "admin")] == [Role.VIEWER, Role.TRADER, Role.ADMIN]
    assert user_role(SERVICE) is None and user_role("Admin") is None

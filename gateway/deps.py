"""The gateway's dependency aliases for its routes: who is calling, by the role they need (`Viewer`, `Trader`,
`Admin`) or a logged-in session of it (`ViewerSession`, `AdminSession`: not an API key), and its store."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from gateway.auth import CurrentUser, require_role, require_session
from gateway.store import GatewayStore
from shared.platform.roles import Role


def get_store(request: Request) -> GatewayStore:
    store: GatewayStore = request.app.state.store
    return store


Store = Annotated[GatewayStore, Depends(get_store)]
Viewer = Annotated[CurrentUser, Depends(require_role(Role.VIEWER))]
Trader = Annotated[CurrentUser, Depends(require_role(Role.TRADER))]
Admin = Annotated[CurrentUser, Depends(require_role(Role.ADMIN))]
ViewerSession = Annotated[CurrentUser, Depends(require_session(Role.VIEWER))]
AdminSession = Annotated[CurrentUser, Depends(require_session(Role.ADMIN))]

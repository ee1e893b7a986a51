"""Execution's route dependencies as `Annotated` aliases: who is calling (the internal token's principal) and the
order desk the routes wrap."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from services.execution.desk import OrderDesk
from shared.platform.internal_auth import Principal, internal_principal


def get_desk(request: Request) -> OrderDesk:
    desk: OrderDesk = request.app.state.desk
    return desk


CurrentPrincipal = Annotated[Principal, Depends(internal_principal)]
"""The caller, from the internal token the gateway (or a service) minted: every `/v1` route requires it."""

Desk = Annotated[OrderDesk, Depends(get_desk)]
"""The app's order desk."""

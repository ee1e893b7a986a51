"""The notify service's routes: Alertmanager's webhook, one URL per robot. Authenticated by the bearer token
Alertmanager presents (LH_NOTIFY_WEBHOOK_TOKEN); /healthz, /readyz and /metrics stay open."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel

from services.notify.channels import RobotChannel
from services.notify.schemas import Accepted, WebhookNotification
from shared.platform.errors import NotFound, ServiceError

router = APIRouter(prefix="/v1/alertmanager", tags=["notify"])


async def alertmanager_token(request: Request) -> None:
    expected: str = request.app.state.webhook_token
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ServiceError("unauthenticated", "send Alertmanager's bearer token (Authorization: Bearer ...)",
                           status_code=401)  # fmt: skip
    if not hmac.compare_digest(token.encode(), expected.encode()):
        raise ServiceError("unauthenticated", "the bearer token is not the notify service's", status_code=401)


@router.post("/robots/{robot}", dependencies=[Depends(alertmanager_token)], response_model=Accepted,
             responses={401: {"description": "no or a wrong bearer token"}, 404: {"description": "no such robot"},
                        422: {"description": "not an Alertmanager webhook (version 4) body"}})  # fmt: skip
async def alertmanager_webhook(
    request: Request,
    robot: Annotated[str, Path(min_length=1, max_length=32, pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")],
    notification: WebhookNotification,
) -> Accepted:
    """Alertmanager's webhook_config for a robot points here. The notification is queued for the robot's next
    message (merged with others within the merge window, held by the rate limit): 200 means queued."""
    channels: dict[str, RobotChannel] = request.app.state.channels
    channel = channels.get(robot)
    if channel is None:
        raise NotFound("unknown_robot", f"no robot named {robot!r} is configured (LH_NOTIFY_ROBOTS)")
    request.app.state.metrics.received.labels(robot=robot).inc()
    pending = channel.offer(notification)
    return Accepted(robot=robot, alerts=len(notification.alerts), pending=pending)


class RobotStatus(BaseModel):
    name: str
    kind: str
    pending: int  # notifications waiting for its next message


@router.get("/robots", dependencies=[Depends(alertmanager_token)], response_model=list[RobotStatus])
async def list_robots(request: Request) -> list[RobotStatus]:
    """The configured robots (never their URLs or secrets) and what waits for each."""
    channels: dict[str, RobotChannel] = request.app.state.channels
    robots = request.app.state.notify_settings.robots
    return [RobotStatus(name=n, kind=robots[n].kind.value, pending=len(c.pending)) for n, c in sorted(channels.items())]

"""The notify service's bodies: Alertmanager's webhook body (version 4, shared with the gateway's alert history:
shared/platform/alertmanager.py) and what the webhook answers."""

from __future__ import annotations

from shared.platform.alertmanager import WebhookAlert, WebhookNotification
from shared.platform.request_model import RequestModel

__all__ = ["Accepted", "WebhookAlert", "WebhookNotification"]


class Accepted(RequestModel):
    robot: str
    alerts: int
    pending: int  # notifications waiting for this robot's next message (this one included)

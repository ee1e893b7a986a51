"""Alertmanager's webhook body (version 4), as the platform reads it: the notify service (its robots) and the
gateway (the alert history of the web UI) receive it. Unknown fields are refused, as in every request body of the
platform (a newer Alertmanager that adds one shows up as a 422 in its log and in ours)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from shared.platform.request_model import RequestModel, StrictInt


class WebhookAlert(RequestModel):
    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: datetime
    endsAt: datetime
    generatorURL: str = ""
    fingerprint: str = ""


class WebhookNotification(RequestModel):
    """One notification: a group of alerts Alertmanager sends together (its group_by labels in `groupLabels`)."""

    version: Literal["4"]
    groupKey: str = Field(max_length=4096)
    truncatedAlerts: StrictInt = 0
    status: Literal["firing", "resolved"]
    receiver: str
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    commonAnnotations: dict[str, str] = Field(default_factory=dict)
    externalURL: str = ""
    alerts: list[WebhookAlert] = Field(max_length=1000)

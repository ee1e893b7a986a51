"""What the strategy service publishes: the lifecycle of its instances (`strategy.instance.<what>`), written to its
outbox in the same transaction as the change and published by its relay. (`strategy.instance.bar` is the runner's.)"""

from __future__ import annotations

from services.strategy.store import InstanceRecord
from shared.platform.clock import utcnow
from shared.platform.events import Envelope, StrategyInstanceChanged, make_event

SOURCE = "strategy"
EVENT_ERROR_MAX_CHARS = 500


def short_error(error: str) -> str:
    """The line of a traceback that says what went wrong, for the event; the instance keeps it all."""
    lines = [line.strip() for line in error.strip().splitlines() if line.strip()]
    return (lines[-1] if lines else "failed")[:EVENT_ERROR_MAX_CHARS]


def instance_event(what: str, instance: InstanceRecord) -> Envelope:
    """`strategy.instance.<what>` (created, started, paused, resumed, stopped, failed, reloaded, deleted) for the
    instance as it is after the change."""
    payload = StrategyInstanceChanged(
        instance_id=instance.instance_id,
        strategy=instance.strategy,
        owner=instance.owner,
        account_id=instance.account_id,
        mode=instance.mode,
        state=instance.state.value,
        error=None if instance.error is None else short_error(instance.error),
        at=utcnow(),
    )
    return make_event(f"strategy.instance.{what}", payload, source=SOURCE)

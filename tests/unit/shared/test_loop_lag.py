"""lh_event_loop_lag_seconds: how late the loop wakes a sleeping task, observed while the app runs."""

from __future__ import annotations

import asyncio
import time

import httpx
from prometheus_client import CollectorRegistry

from shared.platform.loop_lag import LoopLag


def _count(registry: CollectorRegistry) -> float:
    return registry.get_sample_value("lh_event_loop_lag_seconds_count") or 0.0


async def _probed(registry: CollectorRegistry, times: int) -> None:
    """Until the probe has observed `times` times (each probe is a 0.01 s sleep: 500 tries are plenty)."""
    for _ in range(500):
        if _count(registry) >= times:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the probe observed {_count(registry)} times, not {times}")


async def test_a_blocked_loop_is_observed_as_lag() -> None:
    registry = CollectorRegistry()
    lag = LoopLag(registry, interval_s=0.01)
    probe = asyncio.create_task(lag.probe())
    await asyncio.sleep(0)  # the probe is asleep now
    # Block the loop, as a synchronous call would: the probe cannot wake before this returns, so at least 0.29 s late.
    time.sleep(0.3)  # noqa: ASYNC251
    late = await probe
    assert late >= 0.29
    assert _count(registry) == 1
    # in the 0.5 s bucket, not in the 0.25 s one (0.25 < late)
    assert registry.get_sample_value("lh_event_loop_lag_seconds_bucket", {"le": "0.25"}) == 0
    assert registry.get_sample_value("lh_event_loop_lag_seconds_bucket", {"le": "+Inf"}) == 1


async def test_the_probe_runs_while_the_block_runs_and_stops_after() -> None:
    registry = CollectorRegistry()
    lag = LoopLag(registry, interval_s=0.01)
    async with lag.running():
        await _probed(registry, 3)
    stopped_at = _count(registry)
    await asyncio.sleep(0.05)
    assert _count(registry) == stopped_at  # the task was cancelled with the block


async def test_every_service_app_serves_the_lag_histogram() -> None:
    from services.notify.app import create_app
    from services.notify.settings import NotifySettings
    from shared.platform.app import Infra
    from shared.platform.settings import Settings

    settings = Settings(mode="standalone", database_url="sqlite+aiosqlite:///:memory:", redis_url="memory://",
                        amqp_url="memory://", load_demo_data=False, log_json=False)  # fmt: skip
    app = create_app(settings, Infra.from_settings(settings, "notify"), NotifySettings(webhook_token="t" * 26))
    app.state.loop_lag.interval_s = 0.01
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        await _probed(app.state.metrics_registry, 1)
        text = (await http.get("/metrics")).text
    assert "# TYPE lh_event_loop_lag_seconds histogram" in text
    assert 'lh_event_loop_lag_seconds_bucket{le="0.001"}' in text

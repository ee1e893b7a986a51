"""Order-path latency through the gateway in fleet mode: 1,000 sequential market orders
(gateway -> risk -> execution -> paper broker), p50/p99. Run: `make bench` or `python -m bench.order_path`."""

from __future__ import annotations

import asyncio
import os
import secrets
import statistics
import time
from pathlib import Path

import httpx

from bench.common import bench_fleet, percentile, trader_session

ORDERS = 1000
_TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc), 0 when it cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) * _TICK_S


def cpu_by_process(fleet) -> dict[str, float]:  # type: ignore[no-untyped-def]
    return {name: cpu_seconds(proc.pid) for name, proc in fleet.processes.items()}


async def run(fleet) -> None:  # type: ignore[no-untyped-def]
    base = fleet.url("gateway")
    async with httpx.AsyncClient(timeout=30) as client:
        headers = await trader_session(client, fleet)
        securities = (await client.get(f"{base}/api/v1/securities", headers=headers)).json()
        code = next(s["ts_code"] for s in securities if s["board"] == "main" and not s["is_st"])
        ping = []
        for _ in range(200):
            t0 = time.perf_counter()
            await client.get(f"{base}/healthz")
            ping.append((time.perf_counter() - t0) * 1000)
        latencies: list[float] = []
        cpu_before: dict[str, float] = {}
        for i in range(ORDERS + 20):
            if i == 20:
                cpu_before = cpu_by_process(fleet)
            body = {
                "client_order_id": f"bench-{secrets.token_hex(6)}",
                "ts_code": code,
                "side": "buy",
                "order_type": "market",
                "qty": 100,
            }
            t0 = time.perf_counter()
            resp = await client.post(f"{base}/api/v1/orders", json=body, headers=headers)
            elapsed = (time.perf_counter() - t0) * 1000
            if resp.status_code != 201:
                raise SystemExit(f"order {i} failed: {resp.status_code} {resp.text}")
            status = resp.json()["order"]["status"]
            if status != "filled":  # the path measured is the whole one, to the paper broker's fill
                raise SystemExit(f"order {i} was {status}, not filled: {resp.text}")
            if i >= 20:  # warm-up excluded
                latencies.append(elapsed)
    cpu_after = cpu_by_process(fleet)
    latencies.sort()
    ping.sort()
    print(f"order path, {ORDERS} sequential market orders through the gateway (fleet mode):")
    print(
        f"  p50 {percentile(latencies, 0.5):.2f} ms  p99 {percentile(latencies, 0.99):.2f} ms  "
        f"mean {statistics.mean(latencies):.2f} ms  max {latencies[-1]:.2f} ms"
    )
    print(
        f"  floor: gateway /healthz p50 {percentile(ping, 0.5):.2f} ms p99 {percentile(ping, 0.99):.2f} ms; "
        f"order p50 / floor p50 = {percentile(latencies, 0.5) / percentile(ping, 0.5):.1f}x"
    )
    per_order = {name: (cpu_after[name] - cpu_before.get(name, 0.0)) * 1000 / ORDERS for name in cpu_after}
    print(
        f"  CPU per order: {sum(per_order.values()):.1f} ms in the fleet's processes ("
        + ", ".join(f"{name} {ms:.1f}" for name, ms in sorted(per_order.items(), key=lambda kv: -kv[1]) if ms >= 0.05)
        + ")"
    )


def main() -> None:
    with bench_fleet() as fleet:
        asyncio.run(run(fleet))


if __name__ == "__main__":
    main()

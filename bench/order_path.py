"""Order-path latency through the gateway in fleet mode: 1,000 sequential market orders (gateway -> risk -> execution
-> paper broker, to the fill), p50/p99, against the bare chain of the same shape (bench/bare_chain.py) measured in the
same run, one request to each in turn; and the CPU time each process spent per order. Run: `make bench` or
`python -m bench.order_path [--orders 1000]`."""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import socket
import statistics
import time

import httpx

from bench.bare_chain import bare_chain
from bench.common import bench_fleet, percentile, trader_session

ORDERS = 1000
WARM_UP = 20
PLATFORM = ("gateway", "risk", "execution", "data")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# the chain's request: the shape of the floors' 10-field order
BARE_ORDER = {
    "client_order_id": "c-000000000001",
    "account_id": "acct-0001",
    "ts_code": "600000.SH",
    "side": "buy",
    "order_type": "limit",
    "quantity": 1000,
    "price": 10.25,
    "time_in_force": "day",
    "strategy_id": "sma-10-30",
    "submitted_at": "2026-01-05T09:30:00.123456+08:00",
}


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


async def run(fleet, chain_url: str, chain_pids: dict[str, int], orders: int) -> None:  # type: ignore[no-untyped-def]
    base = fleet.url("gateway")
    pids = {name: fleet.processes[name].pid for name in PLATFORM}
    async with httpx.AsyncClient(timeout=30) as client, httpx.AsyncClient(base_url=chain_url, timeout=30) as chain:
        headers = await trader_session(client, fleet)
        securities = (await client.get(f"{base}/api/v1/securities", headers=headers)).json()
        code = next(s["ts_code"] for s in securities if s["board"] == "main" and not s["is_st"])
        latencies: list[float] = []
        floor: list[float] = []
        cpu0: dict[str, float] = {}
        for i in range(orders + WARM_UP):
            if i == WARM_UP:
                cpu0 = {name: cpu_s(pid) for name, pid in {**pids, **prefixed(chain_pids)}.items()}
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
            t0 = time.perf_counter()
            answer = await chain.post("/order", json=BARE_ORDER)
            bare = (time.perf_counter() - t0) * 1000
            if answer.status_code != 200 or answer.json()["hops"] != 3:
                raise SystemExit(f"the bare chain answered {answer.status_code} {answer.text}")
            if i >= WARM_UP:
                latencies.append(elapsed)
                floor.append(bare)
        await asyncio.sleep(1.0)  # the outbox relays publish the last orders' events (their CPU counts too)
        cpu = {
            name: (cpu_s(pid) - cpu0[name]) * 1000 / orders for name, pid in {**pids, **prefixed(chain_pids)}.items()
        }
    latencies.sort()
    floor.sort()
    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    f50, f99 = percentile(floor, 0.5), percentile(floor, 0.99)
    print(f"order path, {orders} sequential market orders through the gateway (fleet mode), each followed by one")
    print("request through the bare 3-hop chain (bench/bare_chain.py):")
    print(
        f"  platform: p50 {p50:.2f} ms  p99 {p99:.2f} ms  mean {statistics.mean(latencies):.2f} ms  "
        f"max {latencies[-1]:.2f} ms"
    )
    print(f"  bare chain: p50 {f50:.2f} ms  p99 {f99:.2f} ms  mean {statistics.mean(floor):.2f} ms")
    print(f"  ratio: p50 {p50 / f50:.1f}x  p99 {p99 / f99:.1f}x")
    platform_cpu = sum(cpu[name] for name in PLATFORM)
    bare_cpu = sum(v for k, v in cpu.items() if k.startswith("bare "))
    print(
        f"  CPU per order: platform {platform_cpu:.1f} ms ("
        + ", ".join(f"{name} {cpu[name]:.1f}" for name in PLATFORM)
        + f"); bare chain {bare_cpu:.1f} ms ("
        + ", ".join(f"{k[5:]} {v:.1f}" for k, v in cpu.items() if k.startswith("bare "))
        + ")"
    )


def prefixed(chain_pids: dict[str, int]) -> dict[str, int]:
    return {f"bare {name}": pid for name, pid in chain_pids.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=ORDERS)
    args = parser.parse_args()
    with bench_fleet() as fleet, bare_chain(free_ports(3)) as (chain_url, chain_pids):
        asyncio.run(run(fleet, chain_url, chain_pids, args.orders))


if __name__ == "__main__":
    main()

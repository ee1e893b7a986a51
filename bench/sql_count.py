"""What one order costs each service's database, in fleet mode with MariaDB: statements, transactions, commits,
rollbacks, pings and pool resets per order, from each process's `lh_db_operations_total` counters
(shared/platform/db.py) read before and after N market orders through the gateway, less what the same processes
do while idle (the outbox relays' polls, execution's reconciler) over as long. Run: `python -m bench.sql_count
[--orders 50]`."""

from __future__ import annotations

import argparse
import asyncio
import re
import secrets
import time

import httpx

from bench.common import bench_fleet, trader_session

SERVICES = ("gateway", "risk", "execution", "data", "strategy")
OPS = ("statements", "transactions", "commits", "rollbacks", "pings", "resets", "connects")
_LINE = re.compile(r'^lh_db_operations_total\{op="(\w+)"\} ([0-9.e+]+)$', re.MULTILINE)
Counts = dict[str, dict[str, float]]


async def snapshot(client: httpx.AsyncClient, fleet) -> Counts:  # type: ignore[no-untyped-def]
    out: Counts = {}
    for name in SERVICES:
        body = (await client.get(f"{fleet.url(name)}/metrics")).text
        found = {op: float(value) for op, value in _LINE.findall(body)}
        out[name] = {op: found.get(op, 0.0) for op in OPS}
    return out


def minus(a: Counts, b: Counts) -> Counts:
    return {name: {op: a[name][op] - b[name][op] for op in OPS} for name in SERVICES}


async def place(client: httpx.AsyncClient, base: str, headers: dict[str, str], code: str) -> None:
    body = {
        "client_order_id": f"count-{secrets.token_hex(6)}",
        "ts_code": code,
        "side": "buy",
        "order_type": "market",
        "qty": 100,
    }
    resp = await client.post(f"{base}/api/v1/orders", json=body, headers=headers)
    if resp.status_code != 201 or resp.json()["order"]["status"] != "filled":
        raise SystemExit(f"order failed: {resp.status_code} {resp.text}")


async def run(fleet, orders: int, settle_s: float) -> Counts:  # type: ignore[no-untyped-def]
    base = fleet.url("gateway")
    async with httpx.AsyncClient(timeout=30) as client:
        headers = await trader_session(client, fleet)
        securities = (await client.get(f"{base}/api/v1/securities", headers=headers)).json()
        code = next(s["ts_code"] for s in securities if s["board"] == "main" and not s["is_st"])
        for _ in range(10):  # warm-up: the account opened, caches and pools filled
            await place(client, base, headers, code)
        await asyncio.sleep(settle_s)
        # what the fleet does on its own (relay polls, the reconciler), per second
        idle_from, t0 = await snapshot(client, fleet), time.monotonic()
        await asyncio.sleep(settle_s * 2)
        idle = minus(await snapshot(client, fleet), idle_from)
        idle_s = time.monotonic() - t0
        start, t0 = await snapshot(client, fleet), time.monotonic()
        for _ in range(orders):
            await place(client, base, headers, code)
        await asyncio.sleep(settle_s)  # the outbox relays publish the last orders' events
        busy = minus(await snapshot(client, fleet), start)
        busy_s = time.monotonic() - t0
    return {name: {op: (busy[name][op] - idle[name][op] * busy_s / idle_s) / orders for op in OPS} for name in SERVICES}


def report(per_order: Counts, orders: int) -> str:
    lines = [
        f"database operations per order ({orders} sequential market buys through the gateway, fleet mode, MariaDB; "
        "idle activity subtracted):",
        f"  {'service':<10}" + "".join(f"{op:>13}" for op in OPS),
    ]
    for name in SERVICES:
        lines.append(f"  {name:<10}" + "".join(f"{per_order[name][op]:>13.1f}" for op in OPS))
    total = {op: sum(per_order[name][op] for name in SERVICES) for op in OPS}
    lines.append(f"  {'total':<10}" + "".join(f"{total[op]:>13.1f}" for op in OPS))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=50)
    parser.add_argument("--settle", type=float, default=2.0, help="seconds to let the relays finish, and idle")
    args = parser.parse_args()
    with bench_fleet() as fleet:
        per_order = asyncio.run(run(fleet, args.orders, args.settle))
    print(report(per_order, args.orders))


if __name__ == "__main__":
    main()

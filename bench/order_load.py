"""Orders under load through the gateway in fleet mode (issue 13, section 4): N concurrent clients, each a trader on
its own paper account (so the platform's per-account lock is not what is measured), send market buys for a fixed
time, each to the paper broker's fill; the bare 3-hop chain (bench/bare_chain.py) is driven by the same load
generator with the same concurrency in the same run, before and after each platform phase, so the ratio of sustained
orders/s to the chain's requests/s is measured in one run. Then every client sends a few orders on ONE shared
account whose cash covers half of its buys (buys racing for its cash, sells for its shares, none of which is sellable
on the day they were bought: T+1) to look for oversells.

Counted per request: filled (2xx, the order filled), refused (a business refusal: 422 `order_rejected` with its
reasons, or an order execution rejected; reported by reason), errors (anything else: another status, an order not
filled, a transport error). After the run each account is read back through the execution API (as the admin):
no position or sellable quantity below zero, no cash (balance, available) below zero, per code the shares sold never
more than those bought (the accounts start empty) and the position equal to bought - sold, and the fills the API
lists equal to the fills the clients were answered. Any of these failing is an oversell.

Aims: orders/s at least 60% of the bare chain's requests/s, 0 errors, 0 oversells. The bench reports, it does not
assert. Run: `make bench` or
`python -m bench.order_load [--clients 50] [--duration 20] [--shared-orders 4] [--rounds 1]` (`--rounds`: platform
phases, each between two chain phases; orders/s over all of them against the mean of the chain's)."""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx

from bench.bare_chain import bare_chain
from bench.common import bench_fleet, percentile, trader_session
from bench.order_path import BARE_ORDER, PLATFORM, cpu_s, free_ports

CLIENTS = 50
DURATION_S = 20.0
SHARED_ORDERS = 4  # per client, on the shared account
QTY_STEPS = 21  # an account's orders cycle over 5 codes x 21 sizes: no two alike within the duplicate rule's window
AIM_RATIO = 0.6
CODES = 5  # main-board codes the clients spread their orders over


@dataclass
class Tally:
    filled: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0
    cpu_ms: dict[str, float] = field(default_factory=dict)  # per process, over the phase

    def add(self, outcome: str, ms: float) -> None:
        self.latencies_ms.append(ms)
        kind, _, what = outcome.partition(":")
        if kind == "ok":
            self.filled += 1
        elif kind == "refused":
            self.refused[what] += 1
        else:
            self.errors[what] += 1

    @property
    def rate(self) -> float:
        return self.filled / self.elapsed_s if self.elapsed_s else 0.0

    def line(self, noun: str) -> str:
        lat = sorted(self.latencies_ms)
        return (
            f"{self.rate:7.1f} {noun}/s ({self.filled} in {self.elapsed_s:.1f} s), latency p50 "
            f"{percentile(lat, 0.5):.1f} ms p99 {percentile(lat, 0.99):.1f} ms; refused {sum(self.refused.values())}"
            f", errors {sum(self.errors.values())}"
        )


Send = Callable[[int, int], Awaitable[str]]


async def drive(clients: int, send: Send, *, duration_s: float, per_client: int | None = None) -> Tally:
    """`clients` concurrent loops, each sending one request after the other (`send(client, n)` answers "ok",
    "refused:<why>" or "error:<what>") until `duration_s` has passed or it sent `per_client`."""
    tally = Tally()
    start = time.perf_counter()
    deadline = start + duration_s

    async def client(c: int) -> None:
        n = 0
        while time.perf_counter() < deadline and (per_client is None or n < per_client):
            t0 = time.perf_counter()
            try:
                outcome = await send(c, n)
            except httpx.HTTPError as e:
                outcome = f"error:{type(e).__name__}"
            tally.add(outcome, (time.perf_counter() - t0) * 1000)
            n += 1

    await asyncio.gather(*(client(c) for c in range(clients)))
    tally.elapsed_s = time.perf_counter() - start
    return tally


def classify(resp: httpx.Response) -> str:
    """An order's answer: "ok" (filled), "refused:<reasons>" (a business refusal) or "error:<what>"."""
    try:
        body: Any = resp.json()
    except ValueError:
        return f"error:http_{resp.status_code}"
    if resp.status_code in (200, 201):
        order = body.get("order") or {}
        status = order.get("status")
        if status == "filled":
            return "ok"
        if status == "rejected":
            return f"refused:execution_{order.get('reason') or 'rejected'}"
        return f"error:order_{status}"
    code = body.get("code") if isinstance(body, dict) else None
    if resp.status_code == 422 and code not in (None, "invalid_request"):
        reasons = ((body.get("decision") or {}).get("reasons")) or []
        return "refused:" + ("+".join(sorted({r["code"] for r in reasons})) or str(code))
    return f"error:http_{resp.status_code}_{code}"


@dataclass
class Trader:
    headers: dict[str, str]
    account_id: str


async def new_trader(client: httpx.AsyncClient, base: str, admin: dict[str, str]) -> Trader:
    username, password = f"load-{secrets.token_hex(4)}", secrets.token_urlsafe(12)
    made = await client.post(
        f"{base}/api/v1/users", json={"username": username, "password": password, "role": "trader"}, headers=admin
    )
    made.raise_for_status()
    for _ in range(50):  # a log-in beyond the gateway's concurrent password checks is refused (503 login_busy)
        token = await client.post(f"{base}/api/v1/auth/token", data={"username": username, "password": password})
        if token.status_code != 503:
            break
        await asyncio.sleep(0.1)
    token.raise_for_status()
    headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
    account = await client.get(f"{base}/api/v1/account", headers=headers)  # opens it, with the opening cash
    account.raise_for_status()
    return Trader(headers, account.json()["account_id"])


async def orders_of(client: httpx.AsyncClient, base: str, admin: dict[str, str], account_id: str) -> list[Any]:
    out: list[Any] = []
    params: dict[str, Any] = {"account_id": account_id, "oldest_first": "true", "limit": 1000}
    while True:
        page = await client.get(f"{base}/api/v1/orders", params=params, headers=admin)
        page.raise_for_status()
        rows = page.json()
        out += rows
        if len(rows) < 1000:
            return out
        params = {"account_id": account_id, "limit": 1000, "after": rows[-1]["order_id"]}


async def oversells(
    client: httpx.AsyncClient, base: str, admin: dict[str, str], account_id: str
) -> tuple[list[str], int]:
    """What is wrong with one account after the run (empty: nothing), and how many of its orders filled."""
    wrong: list[str] = []
    cash = (await client.get(f"{base}/api/v1/account", params={"account_id": account_id}, headers=admin)).json()
    for key in ("balance", "available"):
        if Decimal(cash[key]) < 0:
            wrong.append(f"{account_id}: cash {key} {cash[key]}")
    positions = (await client.get(f"{base}/api/v1/positions", params={"account_id": account_id}, headers=admin)).json()
    held = {p["ts_code"]: p for p in positions}
    for p in positions:
        if p["qty"] < 0 or p["sellable_qty"] < 0 or p["sellable_qty"] > p["qty"]:
            wrong.append(f"{account_id}: {p['ts_code']} qty {p['qty']} sellable {p['sellable_qty']}")
    bought: Counter[str] = Counter()
    sold: Counter[str] = Counter()
    filled = 0
    for o in await orders_of(client, base, admin, account_id):
        (bought if o["side"] == "buy" else sold)[o["ts_code"]] += o["filled_qty"]
        filled += o["status"] == "filled"
    for code in set(bought) | set(sold) | set(held):
        if sold[code] > bought[code]:
            wrong.append(f"{account_id}: {code} sold {sold[code]} of {bought[code]} bought")
        qty = held[code]["qty"] if code in held else 0
        if qty != bought[code] - sold[code]:
            wrong.append(f"{account_id}: {code} held {qty}, bought {bought[code]} - sold {sold[code]}")
    return wrong, filled


def cpu_now(pids: dict[str, int]) -> dict[str, float]:
    return {name: cpu_s(pid) for name, pid in pids.items()}


async def measured(pids: dict[str, int], phase: Callable[[], Awaitable[Tally]]) -> Tally:
    before = cpu_now(pids)
    tally = await phase()
    after = cpu_now(pids)
    tally.cpu_ms = {name: (after[name] - before[name]) * 1000 for name in pids}
    return tally


def merged(tallies: list[Tally]) -> Tally:
    """Phases as one: their counts, latencies, wall time and CPU added up."""
    out = Tally()
    for t in tallies:
        out.filled += t.filled
        out.refused += t.refused
        out.errors += t.errors
        out.latencies_ms += t.latencies_ms
        out.elapsed_s += t.elapsed_s
        for name, ms in t.cpu_ms.items():
            out.cpu_ms[name] = out.cpu_ms.get(name, 0.0) + ms
    return out


async def run(  # type: ignore[no-untyped-def]
    fleet,
    chain_url: str,
    chain_pids: dict[str, int],
    clients: int,
    duration_s: float,
    shared_orders: int,
    rounds: int = 1,
) -> None:
    base = fleet.url("gateway")
    run_id = secrets.token_hex(3)
    pids = {name: fleet.processes[name].pid for name in PLATFORM}
    limits = httpx.Limits(max_connections=clients + 8, max_keepalive_connections=clients + 8, keepalive_expiry=4)
    async with (
        httpx.AsyncClient(timeout=60, limits=limits) as client,
        httpx.AsyncClient(base_url=chain_url, timeout=60, limits=limits) as chain,
    ):
        admin = await trader_session(client, fleet)
        securities = (await client.get(f"{base}/api/v1/securities", headers=admin)).json()
        codes = [s["ts_code"] for s in securities if s["board"] == "main" and not s["is_st"]][:CODES]
        gate = asyncio.Semaphore(2)

        async def made() -> Trader:
            async with gate:
                return await new_trader(client, base, admin)

        traders = await asyncio.gather(*(made() for _ in range(clients)))
        shared = await new_trader(client, base, admin)

        async def platform_send(c: int, n: int) -> str:
            body = {
                "client_order_id": f"ld-{run_id}-{c}-{n}",
                "ts_code": codes[(c + n) % len(codes)],
                "side": "buy",
                "order_type": "market",
                "qty": 100 * (1 + n % QTY_STEPS),
            }
            resp = await client.post(f"{base}/api/v1/orders", json=body, headers=traders[c].headers)
            return classify(resp)

        async def bare_send(c: int, n: int) -> str:
            answer = await chain.post("/order", json={**BARE_ORDER, "client_order_id": f"c-{c:04d}-{n:07d}"})
            if answer.status_code != 200 or answer.json().get("hops") != 3:
                return f"error:bare_{answer.status_code}"
            return "ok"

        warm_platform = await drive(clients, platform_send, duration_s=600, per_client=1)
        warm_bare = await drive(clients, bare_send, duration_s=600, per_client=5)
        # the chain, then the platform and the chain again, `rounds` times: chain phases on either side of each
        # platform phase
        bare = [await measured(chain_pids, lambda: drive(clients, bare_send, duration_s=duration_s))]
        phases: list[Tally] = []
        for r in range(rounds):
            first = 1 + r * 1_000_000  # the client_order_ids of the round

            async def platform_phase(first: int = first) -> Tally:
                return await drive(clients, lambda c, n: platform_send(c, first + n), duration_s=duration_s)

            phases.append(await measured(pids, platform_phase))
            bare.append(await measured(chain_pids, lambda: drive(clients, bare_send, duration_s=duration_s)))
        platform = merged(phases)

        # one account for every client, every order of another size (none a duplicate of another): buys and sells
        # in turn, the account's cash left at what half of the buys would reserve (at the limit-up, fees included)
        code = codes[0]

        def shared_order(c: int, n: int) -> tuple[str, int]:
            return ("buy" if (c + n) % 2 == 0 else "sell"), 100 * (1 + c * shared_orders + n)

        wanted = [shared_order(c, n) for c in range(clients) for n in range(shared_orders)]
        buy_shares = sum(qty for side, qty in wanted if side == "buy")
        quote = (await client.get(f"{base}/api/v1/quotes/{code}", headers=admin)).json()
        cash = (
            await client.get(f"{base}/api/v1/account", params={"account_id": shared.account_id}, headers=admin)
        ).json()
        keep = (Decimal(str(quote["limit_up"])) * Decimal("1.01") * buy_shares / 2).quantize(Decimal("0.01"))
        move = Decimal(cash["available"]) - keep
        if move:
            moved = await client.post(
                f"{base}/api/v1/account/cash",
                json={
                    "account_id": shared.account_id,
                    "kind": "withdrawal" if move > 0 else "deposit",
                    "amount": str(abs(move)),
                    "idempotency_key": f"load-{run_id}",
                },
                headers=admin,
            )
            moved.raise_for_status()

        async def shared_send(c: int, n: int) -> str:
            body = {
                "client_order_id": f"sh-{run_id}-{c}-{n}",
                "ts_code": code,
                "side": shared_order(c, n)[0],
                "order_type": "market",
                "qty": shared_order(c, n)[1],
            }
            return classify(await client.post(f"{base}/api/v1/orders", json=body, headers=shared.headers))

        on_shared = await drive(clients, shared_send, duration_s=600, per_client=shared_orders)

        wrong: list[str] = []
        filled_listed = 0
        for t in [*traders, shared]:
            w, f = await oversells(client, base, admin, t.account_id)
            wrong += w
            filled_listed += f
    filled_answered = warm_platform.filled + platform.filled + on_shared.filled
    if filled_listed != filled_answered:
        wrong.append(f"the accounts list {filled_listed} filled orders, the clients were answered {filled_answered}")

    bare_rate = statistics.mean(t.rate for t in bare)
    ratio = platform.rate / bare_rate if bare_rate else float("nan")
    errors = sum(platform.errors.values()) + sum(on_shared.errors.values())
    print(
        f"order load, {clients} concurrent clients for {duration_s:.0f} s each phase: market buys through the gateway "
        f"(fleet mode) to the paper fill, each client its own trader account; the bare 3-hop chain driven the same "
        f"way before and after each platform phase (warm-up: {warm_platform.filled} orders, {warm_bare.filled} chain "
        "requests)"
    )
    print(f"  bare chain:         {bare[0].line('requests')}")
    for phase, after in zip(phases, bare[1:], strict=True):
        print(f"  platform:           {phase.line('orders')}")
        print(f"  bare chain:         {after.line('requests')}")
    if rounds > 1:
        print(f"  platform, all {rounds} phases: {platform.line('orders')}")
    print(
        f"  ratio: {ratio:.2f} of the bare chain's requests/s   aim: >= {AIM_RATIO:.0%} "
        f"({'met' if ratio >= AIM_RATIO else 'missed'})"
    )
    platform_cpu = sum(platform.cpu_ms.values()) / max(platform.filled, 1)
    bare_cpu = statistics.mean(sum(t.cpu_ms.values()) / max(t.filled, 1) for t in bare)
    print(
        f"  CPU per order: platform {platform_cpu:.1f} ms ("
        + ", ".join(f"{name} {ms / max(platform.filled, 1):.1f}" for name, ms in platform.cpu_ms.items())
        + f"); bare chain {bare_cpu:.1f} ms a request"
    )
    print(
        f"  one shared account, {clients} clients x {shared_orders} orders (buys and sells of {code}, cash for half "
        f"the buys' {buy_shares:,} shares, nothing sellable: T+1): {on_shared.line('orders')}"
    )
    for label, tally in (("platform", platform), ("shared account", on_shared)):
        if tally.refused:
            print(f"  refused ({label}): " + ", ".join(f"{k} {v}" for k, v in tally.refused.most_common()))
        if tally.errors:
            print(f"  errors ({label}): " + ", ".join(f"{k} {v}" for k, v in tally.errors.most_common()))
    print(f"  errors: {errors}   aim: 0 ({'met' if errors == 0 else 'missed'})")
    print(
        f"  oversells: {len(wrong)} ({clients + 1} accounts read back: cash, positions, orders)   aim: 0 "
        f"({'met' if not wrong else 'missed'})"
    )
    for line in wrong[:20]:
        print(f"    {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=CLIENTS)
    parser.add_argument("--duration", type=float, default=DURATION_S, help="seconds per phase")
    parser.add_argument("--shared-orders", type=int, default=SHARED_ORDERS, help="orders per client, shared account")
    parser.add_argument("--rounds", type=int, default=1, help="platform phases, each followed by a chain phase")
    args = parser.parse_args()
    with bench_fleet() as fleet, bare_chain(free_ports(3)) as (chain_url, chain_pids):
        asyncio.run(
            run(fleet, chain_url, chain_pids, args.clients, args.duration, args.shared_orders, rounds=args.rounds)
        )


if __name__ == "__main__":
    main()

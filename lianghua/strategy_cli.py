"""`lianghua strategy ...`: strategy instances on a running platform, through its gateway's REST API.

    lianghua strategy list
    lianghua strategy create --strategy dual_ma --param fast=5 --param slow=20 --codes 600000.SH,000001.SZ
                             --capital 100000
    lianghua strategy start|pause|resume|stop ID
    lianghua strategy replay ID --start 2024-01-02 --end 2024-03-29     (a platform on the replay market clock)

The platform is at --url, else $LH_URL, else http://127.0.0.1:8000. Credentials come from the environment only (so
they are in no shell history and no process list): $LH_API_KEY, else $LH_USERNAME and $LH_PASSWORD (a log-in at
/api/v1/auth/token). Nothing secret is printed.

Exit codes, as for the other commands: 0 success; 1 the platform refused or failed (not found, forbidden, a state
that does not allow the action, unreachable, a replay that ended `failed`); 2 bad input (the API's 4xx naming the
field, e.g. `params.fast`, or bad arguments).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any, TextIO
from urllib.parse import quote

import httpx

DEFAULT_URL = "http://127.0.0.1:8000"
TOKEN_PATH = "/api/v1/auth/token"  # noqa: S105 (a path, not a secret)
INSTANCES = "/api/v1/strategy-instances"
POLL_S = 0.5
BAR_WIDTH = 30
BAD_INPUT_STATUSES = {400, 422}  # the request itself is wrong: fix the arguments


class ApiError(Exception):
    """The platform answered with an error (or did not answer). `exit_code` follows the CLI's convention."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# Tests put an httpx.MockTransport here; None: the real network.
transport: httpx.BaseTransport | None = None
sleep: Callable[[float], None] = time.sleep


def _error_message(response: httpx.Response) -> str:
    """`HTTP 422 invalid_request: params.fast: ...` with each named field, from the platform's {code, message,
    details} error body; the first 200 characters of anything else."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or "code" not in body:
        return f"HTTP {response.status_code}: {response.text[:200]}"
    text = f"HTTP {response.status_code} {body['code']}: {body.get('message', '')}".rstrip()
    details = body.get("details")
    if isinstance(details, list):
        fields = [f"{d.get('field')}: {d.get('message')}" for d in details if isinstance(d, dict) and d.get("field")]
        if fields and not all(f in text for f in fields):
            text += " (" + "; ".join(fields) + ")"
    return text


class Platform:
    """A session with the gateway: credentials from the environment, errors as ApiError."""

    def __init__(self, url: str, env: dict[str, str]) -> None:
        self.url = url.rstrip("/")
        self.client = httpx.Client(base_url=self.url, timeout=30, transport=transport)
        self.headers: dict[str, str] = {"Accept": "application/json"}
        api_key = env.get("LH_API_KEY", "").strip()
        username, password = env.get("LH_USERNAME", "").strip(), env.get("LH_PASSWORD", "")
        if api_key:
            self.headers["X-API-Key"] = api_key
        elif username and password:
            answer = self._send("POST", TOKEN_PATH, data={"username": username, "password": password})
            self.headers["Authorization"] = f"Bearer {answer['access_token']}"
        else:
            raise ApiError("no credentials: set LH_API_KEY, or LH_USERNAME and LH_PASSWORD", 2)

    def close(self) -> None:
        self.client.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.client.request(method, path, headers=self.headers, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiError(f"cannot reach the platform at {self.url}: {exc}", 1) from exc
        if response.is_success:
            return response.json() if response.content else None
        code = 2 if response.status_code in BAD_INPUT_STATUSES else 1
        raise ApiError(f"{method} {path}: {_error_message(response)}", code)

    def get(self, path: str, **params: str) -> Any:
        return self._send("GET", path, params=params or None)

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self._send("POST", path, json=body)


def _instance_path(instance_id: str, action: str = "") -> str:
    # An id typed with a slash must not reach another route: the id goes in as one path segment.
    quoted = quote(instance_id.strip(), safe="")
    return f"{INSTANCES}/{quoted}" + (f"/{action}" if action else "")


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


def _codes(text: str) -> list[str]:
    codes = [c.strip().upper() for c in text.replace("，", ",").replace(" ", ",").split(",") if c.strip()]
    if not codes:
        raise ApiError("--codes: give at least one ts_code, e.g. 600000.SH,000001.SZ", 2)
    return codes


def _capital(text: str) -> str:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ApiError(f"--capital {text!r}: expected CNY like 100000 or 100000.00", 2) from None
    return str(value)  # as a string: money travels exact


# --- commands --------------------------------------------------------------------------------------------------------


def _list(platform: Platform, args: argparse.Namespace) -> int:
    params = {k: v for k, v in (("state", args.state), ("strategy", args.strategy)) if v}
    instances: list[dict[str, Any]] = platform.get(INSTANCES, **params)
    if args.json:
        _print_json(instances)
        return 0
    if not instances:
        print("no strategy instances")
        return 0
    rows = [("INSTANCE", "STRATEGY", "STATE", "MODE", "CAPITAL", "EQUITY", "OWNER")]
    for i in instances:
        try:
            equity = str(platform.get(_instance_path(i["instance_id"], "sleeve"))["equity"])
        except ApiError:
            equity = "-"  # the list still shows the others
        rows.append((i["instance_id"], i["strategy"], i["state"], i["mode"], i["capital"], equity, i["owner"]))
    widths = [max(len(str(r[c])) for r in rows) for c in range(len(rows[0]))]
    for row in rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    return 0


def _create(platform: Platform, args: argparse.Namespace) -> int:
    from lianghua.cli import CliError, parse_param  # here: lianghua.cli imports this module

    params: dict[str, Any] = json.loads(args.params) if args.params else {}
    if not isinstance(params, dict):
        raise ApiError("--params must be a JSON object", 2)
    for text in args.param:
        try:
            name, value = parse_param(text)
        except CliError as exc:
            raise ApiError(str(exc), 2) from exc
        params[name] = value
    body: dict[str, Any] = {
        "strategy": args.strategy,
        "params": params,
        "universe": {"ts_codes": _codes(args.codes)},
        "capital": _capital(args.capital),
        "mode": args.mode,
        "order_timing": args.order_timing,
    }
    if args.account:
        body["account_id"] = args.account
    _print_json(platform.post(INSTANCES, body))
    return 0


def _action(action: str) -> Callable[[Platform, argparse.Namespace], int]:
    def run(platform: Platform, args: argparse.Namespace) -> int:
        body = None
        if action == "stop" and args.keep_orders:
            body = {"cancel_open_orders": False}
        _print_json(platform.post(_instance_path(args.instance_id, action), body))
        return 0

    return run


def _bar(done: int, total: int, bar_date: str | None) -> str:
    filled = BAR_WIDTH * done // total if total else 0
    percent = 100 * done // total if total else 0
    return f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {percent:3d}% {done}/{total} days {bar_date or ''}".rstrip()


def _replay(platform: Platform, args: argparse.Namespace) -> int:
    replay: dict[str, Any] = {"start": args.start, "end": args.end}
    if args.days_per_second is not None:
        replay["days_per_second"] = args.days_per_second
    path = _instance_path(args.instance_id)
    started = platform.post(path + "/start", {"replay": replay})
    out: TextIO = sys.stderr
    tty = out.isatty()
    shown = ""
    state = started["state"]
    performance: dict[str, Any] = {}
    while True:
        performance = platform.get(path + "/performance")
        state = performance["state"]
        progress = performance.get("progress") or {}
        line = _bar(int(progress.get("days_done") or 0), int(progress.get("days") or 0), progress.get("bar_date"))
        if line != shown:
            # On a terminal the bar is redrawn in place; in a log, one line per change.
            print(("\r" + line) if tty else line, end="" if tty else "\n", file=out, flush=True)
            shown = line
        if state != "running":
            break
        sleep(POLL_S)
    if tty:
        print(file=out)
    curve = performance.get("equity_curve") or []
    final = curve[-1]["equity"] if curve else None
    print(f"instance {args.instance_id}: {state}, {len(curve)} days, final equity {final if final else '-'} CNY")
    if state == "failed":
        instance = platform.get(path)
        print(f"lianghua: the replay failed: {instance.get('error') or 'no reason given'}", file=sys.stderr)
        return 1
    return 0


COMMANDS: dict[str, Callable[[Platform, argparse.Namespace], int]] = {
    "list": _list,
    "create": _create,
    "start": _action("start"),
    "pause": _action("pause"),
    "resume": _action("resume"),
    "stop": _action("stop"),
    "replay": _replay,
}


def add_parser(sub: Any) -> None:
    """`lianghua strategy ...` on the `lianghua` command's subparsers."""
    parser = sub.add_parser("strategy", help="strategy instances on a running platform (list, create, start, ...)")
    url_help = f"the platform's gateway (default $LH_URL or {DEFAULT_URL})"
    parser.add_argument("--url", help=url_help)
    # --url before or after the action: SUPPRESS keeps an action's parser from overwriting the one given before.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=argparse.SUPPRESS, help=url_help)
    actions = parser.add_subparsers(dest="action", required=True)

    listing = actions.add_parser("list", parents=[common], help="the instances you can see, with state and equity")
    listing.add_argument("--state", choices=("created", "running", "paused", "stopped", "failed"))
    listing.add_argument("--strategy", help="only this strategy's instances")
    listing.add_argument("--json", action="store_true", help="the instances as JSON")

    create = actions.add_parser(
        "create", parents=[common], help="a new instance (state created: nothing trades until started)"
    )
    create.add_argument("--strategy", required=True, help="strategy name (see `lianghua strategies`)")
    create.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="a strategy parameter")
    create.add_argument("--params", help="strategy parameters as a JSON object")
    create.add_argument("--codes", required=True, help="the universe: ts_codes, comma-separated")
    create.add_argument("--capital", required=True, help="the instance's budget, CNY")
    create.add_argument("--mode", choices=("paper", "live"), default="paper")
    create.add_argument("--order-timing", dest="order_timing", choices=("open", "open_auction"), default="open")
    create.add_argument("--account", help="the account it trades (admins only; default: yours)")

    for action, text in (
        ("start", "start trading on the platform's clock"),
        ("pause", "no new orders (open ones stay)"),
        ("resume", "trade again, with the newest parameters"),
        ("stop", "stop for good (open orders are cancelled unless --keep-orders)"),
    ):
        command = actions.add_parser(action, parents=[common], help=text)
        command.add_argument("instance_id")
        if action == "stop":
            command.add_argument("--keep-orders", action="store_true", help="leave the instance's open orders")

    replay = actions.add_parser(
        "replay", parents=[common], help="start with a replay of stored history and follow it to the end"
    )
    replay.add_argument("instance_id")
    replay.add_argument("--start", required=True, help="first replayed day (YYYY-MM-DD)")
    replay.add_argument("--end", required=True, help="last replayed day (YYYY-MM-DD)")
    replay.add_argument("--days-per-second", dest="days_per_second", type=float, help="pace (default: full speed)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    env = dict(os.environ)
    url = args.url or env.get("LH_URL") or DEFAULT_URL
    try:
        platform = Platform(url, env)
        try:
            return COMMANDS[args.action](platform, args)
        finally:
            platform.close()
    except ApiError as exc:
        print(f"lianghua: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        if args.action == "replay":
            print(
                f"\nlianghua: stopped following; the replay goes on (`lianghua strategy stop {args.instance_id}`)",
                file=sys.stderr,
            )
        return 1

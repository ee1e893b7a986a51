"""A local fake Tushare Pro HTTP server speaking the real protocol, for tests and benchmarks.

The `tushare` client (1.4.29) POSTs JSON `{"api_name", "token", "params", "fields"}` to `{url}/{api_name}` and
expects `{"code": 0, "msg": "", "data": {"fields": [...], "items": [[...], ...]}}`; a refusal is a non-zero code
with a message. This server answers from in-memory DataFrames (one per api, Tushare layout), filters by the usual
params (trade_date, ts_code, start_date/end_date, list_status, index_code, exchange, limit/offset), honours
`fields`, and can inject faults per api: rate-limit replies, HTTP errors, timeouts, bad-token replies, empty or
garbage answers. `denied` apis answer every call with Tushare's permission refusal (code 40203, "抱歉，您没有访问该
接口的权限…"), as for a token without enough points for them. It records every call it receives.

    with FakeTushare({"daily": frame}, token="t") as server:
        provider = TushareProvider(TushareConfig(token="t", url=server.url))

Whole-market days are served from an index built at construction (api -> trade_date -> rows), so a 5,000-symbol
day costs a dictionary lookup plus JSON encoding. `start()` runs it in a thread of this process; `start(process=True)`
forks it into its own process (benchmarks: its JSON work then does not compete with the client for the GIL), in
which case `inject`, `calls` and `reset` go over the control endpoints under /_fake/.
"""

from __future__ import annotations

import json
import multiprocessing
import threading
import time
import urllib.request
from collections import deque
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pandas as pd

TOKEN = "fake-tushare-token"

# The column each api's start_date/end_date params restrict (namechange: the announcement date, as Tushare).
DATE_COLUMN = {"trade_cal": "cal_date", "namechange": "ann_date", "stock_basic": "list_date"}
# Params that filter a column of the same name (comma-separated lists allowed, as Tushare's ts_code).
EQUALITY_PARAMS = ("ts_code", "index_code", "con_code", "exchange", "list_status", "is_open", "suspend_type", "market")
IGNORED_PARAMS = {"ts_type_name", "limit", "offset", "trade_date", "start_date", "end_date"}

RATE_LIMIT_MSG = "抱歉，您每分钟最多访问该接口{n}次，权限的具体详情访问：https://tushare.pro/document/1?doc_id=108。"
DAILY_QUOTA_MSG = "抱歉，您每天最多访问该接口{n}次，权限的具体详情访问：https://tushare.pro/document/1?doc_id=108。"
NO_PERMISSION_MSG = "抱歉，您没有访问该接口的权限，权限的具体详情访问：https://tushare.pro/document/1?doc_id=108。"
BAD_TOKEN_MSG = "您的token不对，请确认。"

FAULTS = (
    "rate_limit",
    "daily_quota",
    "no_permission",
    "bad_token",
    "http_500",
    "http_502",
    "timeout",
    "empty",
    "garbage",
)


@dataclass
class FakeCall:
    """One request as the server saw it."""

    api: str
    path: str  # the URL path posted to (the 1.4.29 client: /dataapi/{api_name})
    params: dict[str, Any]
    fields: str
    token_ok: bool
    at: float  # time.monotonic() on arrival
    fault: str | None
    rows: int  # rows in the reply (0 for faults)


@dataclass
class _State:
    token: str
    data: dict[str, pd.DataFrame]
    by_day: dict[str, dict[str, np.ndarray]]  # api -> trade_date -> row positions
    max_rows: dict[str, int]
    timeout_sleep_s: float
    denied: frozenset[str] = frozenset()  # apis the token is not entitled to: every call is refused
    faults: dict[str, deque[str]] = field(default_factory=dict)
    calls: list[FakeCall] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_fault(self, api: str) -> str | None:
        with self.lock:
            for key in (api, "*"):
                queue = self.faults.get(key)
                if queue:
                    return queue.popleft()
        return None

    def inject(self, api: str, fault: str, times: int) -> None:
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; one of {FAULTS}")
        with self.lock:
            self.faults.setdefault(api, deque()).extend([fault] * times)


def _index_by_day(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    column = "trade_date" if "trade_date" in frame.columns else None
    if column is None:
        return {}
    return {str(k): v for k, v in frame.groupby(column, sort=False).indices.items()}


def _json_items(frame: pd.DataFrame) -> str:
    """The rows as a JSON array of arrays, NaN/None as null, encoded by pandas in C: the fake server shares the
    benchmark machine's two cores with the pipeline it feeds, and json.dumps of Python lists cost it 65 ms per
    whole-market day. 15 significant digits: every decimal Tushare sends (2-4 places) comes back exactly."""
    if frame.empty:
        return "[]"
    # As strict as json.dumps(allow_nan=False) was: pandas would write inf as null and datetimes as epoch numbers,
    # hiding a broken fixture from the client under test.
    numeric = frame.select_dtypes(include="number")
    if not numeric.empty and np.isinf(numeric.to_numpy(dtype=float, na_value=np.nan)).any():
        raise ValueError("the fake Tushare server cannot send infinity (Tushare's JSON has no such value)")
    if any(pd.api.types.is_datetime64_any_dtype(dtype) for dtype in frame.dtypes):
        raise TypeError("the fake Tushare server sends dates as YYYYMMDD text, as Tushare does: convert the column")
    return str(frame.to_json(orient="values", double_precision=15, force_ascii=False))


def _select(state: _State, api: str, params: Mapping[str, Any]) -> pd.DataFrame:
    frame = state.data.get(api)
    if frame is None:
        return pd.DataFrame()
    trade_date = params.get("trade_date")
    if trade_date and api in state.by_day and state.by_day[api]:
        positions = state.by_day[api].get(str(trade_date))
        frame = frame.iloc[positions] if positions is not None else frame.iloc[0:0]
    elif trade_date and "trade_date" in frame.columns:
        frame = frame[frame["trade_date"] == str(trade_date)]
    if api == "stock_basic" and "list_status" in frame.columns and not params.get("list_status"):
        frame = frame[frame["list_status"] == "L"]  # Tushare's default: listed only
    mask = np.ones(len(frame), dtype=bool)
    for name in EQUALITY_PARAMS:
        value = params.get(name)
        if value in (None, "") or name not in frame.columns:
            continue
        wanted = [v.strip() for v in str(value).split(",")]
        mask &= frame[name].astype(str).isin(wanted).to_numpy()
    date_column = DATE_COLUMN.get(api, "trade_date")
    if date_column in frame.columns:
        dates = frame[date_column].astype(str)
        if params.get("start_date"):
            mask &= (dates >= str(params["start_date"])).to_numpy()
        if params.get("end_date"):
            mask &= (dates <= str(params["end_date"])).to_numpy()
    if not mask.all():
        frame = frame[mask]
    offset = int(params.get("offset") or 0)
    limit = int(params.get("limit") or 0)
    cap = state.max_rows.get(api)
    if cap is not None:
        limit = min(limit, cap) if limit else cap
    if offset or limit:
        frame = frame.iloc[offset : offset + limit] if limit else frame.iloc[offset:]
    return frame


def _refusal(code: int, msg: str) -> dict[str, Any]:
    return {"request_id": "fake", "code": code, "msg": msg, "data": None}


class _Handler(BaseHTTPRequestHandler):
    server_version = "FakeTushare/1.0"
    state: _State  # set on the subclass made per server

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        return

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test): nothing to answer

    def _send_json(self, payload: Any, status: int = 200) -> None:
        self._send(status, json.dumps(payload, ensure_ascii=False, allow_nan=False).encode())

    def do_GET(self) -> None:
        if self.path == "/_fake/calls":
            with self.state.lock:
                calls = [asdict(c) for c in self.state.calls]
            self._send_json(calls)
        else:
            self._send(404, b"not found", "text/plain")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.path.startswith("/_fake/"):
            self._control(raw)
            return
        arrived = time.monotonic()
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            self._send(400, b"bad json", "text/plain")
            return
        path_api = self.path.rstrip("/").rsplit("/", 1)[-1]
        api = str(body.get("api_name") or ("" if path_api in ("", "dataapi") else path_api))
        params = {k: v for k, v in (body.get("params") or {}).items() if k != "ts_type_name"}
        fields = str(body.get("fields") or "")
        token_ok = body.get("token") == self.state.token
        fault = self.state.next_fault(api) if token_ok else "bad_token"
        if fault is None and api in self.state.denied:
            fault = "no_permission"
        rows = 0
        if fault is None:
            frame = _select(self.state, api, params)
            if api not in self.state.data:
                payload: dict[str, Any] = _refusal(40101, f"接口名称 {api} 不存在")
            else:
                wanted = [f.strip() for f in fields.split(",") if f.strip()] if fields else list(frame.columns)
                columns = [f for f in wanted if f in frame.columns]  # Tushare ignores unknown field names
                frame = frame.loc[:, columns]
                rows = len(frame)
                self._record(api, params, fields, token_ok, arrived, None, rows)
                fields_json = json.dumps(columns, ensure_ascii=False)
                reply = (
                    f'{{"request_id": "fake", "code": 0, "msg": "", "data": {{"fields": {fields_json}, '
                    f'"items": {_json_items(frame)}, "has_more": false}}}}'
                )
                self._send(200, reply.encode())
                return
            self._record(api, params, fields, token_ok, arrived, None, rows)
            self._send_json(payload)
            return
        self._record(api, params, fields, token_ok, arrived, fault, 0)
        self._fault(fault, api)

    def _fault(self, fault: str, api: str) -> None:
        if fault == "rate_limit":
            self._send_json(_refusal(40203, RATE_LIMIT_MSG.format(n=200)))
        elif fault == "daily_quota":
            self._send_json(_refusal(40203, DAILY_QUOTA_MSG.format(n=100000)))
        elif fault == "no_permission":
            self._send_json(_refusal(40203, NO_PERMISSION_MSG))
        elif fault == "bad_token":
            self._send_json(_refusal(-2001, BAD_TOKEN_MSG))
        elif fault == "http_500":
            self._send(500, b"Internal Server Error", "text/plain")
        elif fault == "http_502":
            self._send(502, b"Bad Gateway", "text/html")
        elif fault == "timeout":
            time.sleep(self.state.timeout_sleep_s)
            self._send_json(_refusal(-1, "late reply after the client's timeout"))
        elif fault == "empty":
            frame = self.state.data.get(api)
            columns = list(frame.columns) if frame is not None else []
            self._send_json({"request_id": "fake", "code": 0, "msg": "", "data": {"fields": columns, "items": []}})
        elif fault == "garbage":
            self._send(200, b"<html>gateway page</html>", "text/html")

    def _record(
        self, api: str, params: dict[str, Any], fields: str, token_ok: bool, at: float, fault: str | None, rows: int
    ) -> None:
        with self.state.lock:
            self.state.calls.append(FakeCall(api, self.path, params, fields, token_ok, at, fault, rows))

    def _control(self, raw: bytes) -> None:
        command = json.loads(raw or b"{}")
        if self.path == "/_fake/inject":
            self.state.inject(command["api"], command["fault"], int(command.get("times", 1)))
        elif self.path == "/_fake/reset":
            with self.state.lock:
                self.state.calls.clear()
                self.state.faults.clear()
        else:
            self._send(404, b"not found", "text/plain")
            return
        self._send_json({"ok": True})


def _serve_in_child(state: _State, port_pipe: Any) -> None:
    state.calls.clear()  # the fork copied the parent's record; faults injected before start() are kept
    server = _make_server(state, 0)
    port_pipe.send(server.server_address[1])
    server.serve_forever(poll_interval=0.05)


def _make_server(state: _State, port: int) -> ThreadingHTTPServer:
    handler = type("FakeTushareHandler", (_Handler,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    return server


class FakeTushare:
    """The fake server. `data` maps api names ('daily', 'trade_cal', ...) to frames in Tushare's layout, with
    'YYYYMMDD' text dates. `max_rows` caps rows per reply per api (Tushare's per-call limits), to exercise paging.
    `denied`: apis refused on every call with Tushare's no-permission reply (a token short of the points for them)."""

    def __init__(
        self,
        data: Mapping[str, pd.DataFrame],
        *,
        token: str = TOKEN,
        max_rows: Mapping[str, int] | None = None,
        timeout_sleep_s: float = 1.0,
        denied: Collection[str] = (),
    ) -> None:
        frames = {api: frame.reset_index(drop=True) for api, frame in data.items()}
        self._state = _State(
            token=token,
            data=frames,
            by_day={api: _index_by_day(frame) for api, frame in frames.items()},
            max_rows=dict(max_rows or {}),
            timeout_sleep_s=timeout_sleep_s,
            denied=frozenset(denied),
        )
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._process: Any = None
        self._port: int | None = None

    @property
    def url(self) -> str:
        """What to configure as the client's URL (it posts to f"{url}/{api_name}")."""
        if self._port is None:
            raise RuntimeError("the fake Tushare server is not started")
        return f"http://127.0.0.1:{self._port}/dataapi"

    @property
    def token(self) -> str:
        return self._state.token

    def start(self, *, process: bool = False) -> FakeTushare:
        if self._port is not None:
            raise RuntimeError("already started")
        if process:
            context = multiprocessing.get_context("fork")  # the child inherits the indexed data without pickling
            parent, child = context.Pipe()
            self._process = context.Process(target=_serve_in_child, args=(self._state, child), daemon=True)
            self._process.start()
            if not parent.poll(30):
                raise RuntimeError("the fake Tushare process did not start")
            self._port = int(parent.recv())
        else:
            self._server = _make_server(self._state, 0)
            self._port = self._server.server_address[1]
            self._thread = threading.Thread(
                target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._process is not None:
            self._process.terminate()
            self._process.join(10)
            self._process = None
        self._port = None

    def __enter__(self) -> FakeTushare:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- faults and records ---------------------------------------------------------------------------------------

    def inject(self, api: str, fault: str, times: int = 1) -> None:
        """The next `times` calls of `api` ('*' for any api) get `fault` (one of FAULTS) instead of data."""
        if self._process is not None:
            self._post_control("/_fake/inject", {"api": api, "fault": fault, "times": times})
        else:
            self._state.inject(api, fault, times)

    @property
    def calls(self) -> list[FakeCall]:
        if self._process is not None:
            with urllib.request.urlopen(f"http://127.0.0.1:{self._port}/_fake/calls", timeout=10) as reply:
                return [FakeCall(**c) for c in json.loads(reply.read())]
        with self._state.lock:
            return list(self._state.calls)

    def calls_to(self, api: str) -> list[FakeCall]:
        return [c for c in self.calls if c.api == api]

    def reset(self) -> None:
        """Forget recorded calls and pending faults."""
        if self._process is not None:
            self._post_control("/_fake/reset", {})
        else:
            with self._state.lock:
                self._state.calls.clear()
                self._state.faults.clear()

    def _post_control(self, path: str, payload: dict[str, Any]) -> None:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self._port}{path}", data=json.dumps(payload).encode(), method="POST"
        )
        with urllib.request.urlopen(request, timeout=10):  # noqa: S310
            pass


def with_other_securities(
    data: Mapping[str, pd.DataFrame], *, on_days: list[str] | None = None
) -> dict[str, pd.DataFrame]:
    """`data` plus what real Tushare also answers on the per-stock day endpoints for securities that are not A-share
    stocks: stk_limit rows of an ETF (510300.SH, 3-decimal limits as Tushare gives them) and of a B share (900901.SH,
    priced in USD to 0.001), and adj_factor and daily_basic rows of the B share. `on_days`: the trade dates to add
    them on (default every date of `data["daily"]`)."""
    days = on_days if on_days is not None else sorted(set(data["daily"]["trade_date"].astype(str)))
    out = dict(data)
    limits = [(d, "510300.SH", 3.826, 3.130) for d in days] + [(d, "900901.SH", 0.298, 0.244) for d in days]
    out["stk_limit"] = pd.concat(
        [data["stk_limit"], pd.DataFrame(limits, columns=["trade_date", "ts_code", "up_limit", "down_limit"])],
        ignore_index=True,
    )
    factors = pd.DataFrame([("900901.SH", d, 1.234) for d in days], columns=["ts_code", "trade_date", "adj_factor"])
    out["adj_factor"] = pd.concat([data["adj_factor"], factors], ignore_index=True)
    basic = data["daily_basic"]
    b_share = pd.DataFrame([{**dict.fromkeys(basic.columns, np.nan), "ts_code": "900901.SH", "trade_date": d,
                             "close": 0.271, "total_share": 1.5} for d in days])  # fmt: skip
    out["daily_basic"] = pd.concat([basic, b_share[basic.columns]], ignore_index=True)
    return out


@contextmanager
def fake_tushare(data: Mapping[str, pd.DataFrame], **kwargs: Any) -> Iterator[FakeTushare]:
    """`with fake_tushare({...}) as server:` — started in a thread, stopped on exit."""
    server = FakeTushare(data, **kwargs).start()
    try:
        yield server
    finally:
        server.stop()

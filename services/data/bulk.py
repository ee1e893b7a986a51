"""Whole-market reads for bulk consumers (the backtest service): bars, and daily_basic fields asked for, as Arrow
IPC or Parquet, served from snapshot files keyed by the data version (columns and files: docs/data.md)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
from sqlalchemy import make_url

from services.data.adjust import ADJUSTED_SCALE, Adjust, adjusted, factor_micro
from services.data.store import DAILY_BASIC_FIELDS, DataStore

log = logging.getLogger(__name__)

FORMATS = {"arrow": "application/vnd.apache.arrow.stream", "parquet": "application/vnd.apache.parquet"}
PRICE_COLUMNS = ("open", "high", "low", "close", "pre_close")
INTEGER_FIELDS = frozenset(("total_share", "float_share", "free_share", "total_mv", "circ_mv"))  # shares, fen
KEPT_ANSWERS = 32  # answer files per data version kept on disk (the newest by use)
_EPOCH = date(1970, 1, 1)


@dataclass(frozen=True)
class BulkQuery:
    format: str  # arrow | parquet
    start: date | None
    end: date | None
    ts_codes: tuple[str, ...] | None  # sorted; None = every symbol
    adjust: Adjust
    anchor: date | None  # qfq only; None = the range's end
    fields: tuple[str, ...] = ()  # daily_basic fields added after the bar columns, in DAILY_BASIC_FIELDS order

    def key(self, version: int) -> str:
        text = json.dumps(
            [version, self.format, str(self.start), str(self.end), self.ts_codes, self.adjust.value, str(self.anchor)]
            + ([list(self.fields)] if self.fields else [])
        )
        return hashlib.sha256(text.encode()).hexdigest()[:32]


def bulk_fields(names: Sequence[str]) -> tuple[str, ...]:
    """The daily_basic fields asked for, once each, in DAILY_BASIC_FIELDS order (so equal asks share an answer);
    ValueError naming any that is not one."""
    unknown = [name for name in names if name not in DAILY_BASIC_FIELDS]
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(unknown)}; known: {', '.join(DAILY_BASIC_FIELDS)}")
    return tuple(name for name in DAILY_BASIC_FIELDS if name in set(names))


class BulkBars:
    def __init__(self, store: DataStore, directory: Path) -> None:
        self.store = store
        self.directory = directory
        self._lock = asyncio.Lock()  # one build at a time: each is CPU- and memory-heavy

    def _snapshot_path(self, version: int) -> Path:
        return self.directory / f"market-v{version}.arrow"

    async def answer(self, query: BulkQuery) -> tuple[Path, int]:
        """The file holding the answer to `query` for the current data version (built if missing)."""
        version = await self.store.data_version()
        path = self.directory / f"answer-v{version}-{query.key(version)}.{query.format}"
        if path.exists():
            os.utime(path)
            return path, version
        async with self._lock:
            if path.exists():
                return path, version
            snapshot = await self._snapshot(version)
            field_files = await self._field_files(version, snapshot, query.fields)
            anchors = await self._anchor_overrides(query) if query.adjust is Adjust.QFQ else {}
            await asyncio.to_thread(_write_answer, snapshot, query, anchors, version, path, field_files)
            self._prune_answers(version)
        return path, version

    async def open_answer(self, query: BulkQuery) -> tuple[BinaryIO, int]:
        """The answer to `query`, opened: (binary file, data version). Served from the open file, the answer stays
        readable even if a build for a newer version prunes it meanwhile (an open file outlives its unlinking);
        one pruned between `answer` and the opening is built again."""
        for _ in range(3):
            path, version = await self.answer(query)
            try:
                return path.open("rb"), version
            except FileNotFoundError:
                log.info("bulk answer pruned before it was opened; building it again", extra={"version": version})
        raise RuntimeError("bulk answer files keep disappearing: is another process pruning this directory?")

    async def _snapshot(self, version: int) -> Path:
        path = self._snapshot_path(version)
        if path.exists():
            return path
        self.directory.mkdir(parents=True, exist_ok=True)
        columns = await self.store.market_columns()
        # A write may have landed while reading: the snapshot is then labelled with the older version it may
        # partly reflect, so the next read (seeing the newer version) builds again rather than trusting it.
        after = await self.store.data_version()
        await asyncio.to_thread(_write_snapshot, columns, path)
        for old in self.directory.glob("market-v*.arrow"):
            if old != path:
                old.unlink(missing_ok=True)
        for old in self.directory.glob("basic-v*.arrow"):
            if not old.name.startswith(f"basic-v{version}-"):
                old.unlink(missing_ok=True)
        if after != version:
            log.info("data changed while building the bulk snapshot", extra={"version": version, "now": after})
        return path

    async def _field_files(self, version: int, snapshot: Path, fields: tuple[str, ...]) -> list[Path]:
        """One column file per daily_basic field of `fields`, aligned row for row with the snapshot; the fields
        without one yet are read from the store together (one pass over daily_basic)."""
        paths = [self.directory / f"basic-v{version}-{name}.arrow" for name in fields]
        missing = [name for name, path in zip(fields, paths, strict=True) if not path.exists()]
        if missing:
            columns = await self.store.daily_basic_columns(missing)
            await asyncio.to_thread(_write_field_files, snapshot, columns, missing, self.directory, version)
        return paths

    async def _anchor_overrides(self, query: BulkQuery) -> dict[str, int]:
        """Anchor factors from Tushare's adj_factor feed (it has suspended days, which the bars do not); empty when
        that feed is not stored, and the snapshot's own factors serve."""
        anchor = query.anchor or query.end
        if anchor is None or not await self.store.has_adj_factor_feed():
            return {}
        found = await self.store.anchor_factors(query.ts_codes, anchor)
        return {code: factor_micro(value) for code, value in found.items()}

    def _prune_answers(self, version: int) -> None:
        answers = sorted(self.directory.glob("answer-v*"), key=lambda p: p.stat().st_mtime, reverse=True)
        current = [p for p in answers if p.name.startswith(f"answer-v{version}-")]
        for stale in [p for p in answers if not p.name.startswith(f"answer-v{version}-")] + current[KEPT_ANSWERS:]:
            stale.unlink(missing_ok=True)


def _write_snapshot(columns: dict[str, np.ndarray], path: Path) -> None:
    codes = columns["ts_code"]
    n = len(codes)
    if n:
        starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
        names = codes[starts].astype(str)
        indices = np.repeat(np.arange(len(starts), dtype=np.int32), np.diff(np.r_[starts, n]))
    else:
        names, indices = np.zeros(0, dtype=str), np.zeros(0, dtype=np.int32)
    arrays = {
        "ts_code": pa.DictionaryArray.from_arrays(pa.array(indices, pa.int32()), pa.array(names, pa.string())),
        "trade_date": pa.array(columns["trade_date"].astype(np.int32), pa.int32()).cast(pa.date32()),
        **{name: pa.array(columns[name], pa.int64()) for name in (*PRICE_COLUMNS, "vol", "amount", "adj_factor")},
    }
    table = pa.table(arrays)
    _atomic_write(path, lambda tmp: _write_ipc_file(table, tmp))


def _write_field_files(
    snapshot: Path, columns: dict[str, np.ndarray], fields: list[str], directory: Path, version: int
) -> None:
    """daily_basic's `columns` (sorted by ts_code, trade_date) matched to the snapshot's rows: each field written as
    one column (float64, or int64 for share counts and market values; null where there is no value)."""
    bars = _read_snapshot(snapshot)
    dictionary, indices = _codes(bars)
    position = {code: i for i, code in enumerate(dictionary)}
    codes = columns["ts_code"]  # sorted by code: one dictionary look-up per run of a code
    n = len(codes)
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]]) if n else np.zeros(0, dtype=np.int64)
    per_run = np.asarray([position.get(str(codes[i]), -1) for i in starts.tolist()], dtype=np.int64)
    code_index = np.repeat(per_run, np.diff(np.r_[starts, n]))
    known = code_index >= 0  # daily_basic rows of a symbol without bars match nothing
    basic_keys = (code_index[known] << 32) | columns["trade_date"][known].astype(np.int64)
    order = np.argsort(basic_keys, kind="stable")
    basic_keys = basic_keys[order]
    days = bars.column("trade_date").cast(pa.int32()).to_numpy().astype(np.int64)
    bar_keys = (indices.astype(np.int64) << 32) | days
    found = np.searchsorted(basic_keys, bar_keys)
    found = np.minimum(found, max(len(basic_keys) - 1, 0))
    matched = (basic_keys[found] == bar_keys) if len(basic_keys) else np.zeros(len(bar_keys), dtype=bool)
    for name in fields:
        values = columns[name][known][order]
        aligned = np.where(matched, values[found] if len(values) else np.nan, np.nan)
        missing = np.isnan(aligned)
        if name in INTEGER_FIELDS:
            array = pa.array(np.where(missing, 0, aligned).astype(np.int64), pa.int64(), mask=missing)
        else:
            array = pa.array(aligned, pa.float64(), mask=missing)
        table = pa.table({name: array})
        _atomic_write(directory / f"basic-v{version}-{name}.arrow", lambda tmp, t=table: _write_ipc_file(t, tmp))


def _write_ipc_file(table: pa.Table, path: Path) -> None:
    with pa.OSFile(str(path), "wb") as sink, ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=1_000_000)


def _atomic_write(path: Path, write: object) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    os.close(fd)
    try:
        write(Path(tmp))  # type: ignore[operator]
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_snapshot(path: Path) -> pa.Table:
    with pa.memory_map(str(path), "r") as source:
        return ipc.open_file(source).read_all()


def select_rows(table: pa.Table, query: BulkQuery) -> pa.Table:
    """The snapshot's rows for the query's symbols and date range, still sorted."""
    if query.ts_codes is not None:
        codes = table.column("ts_code").combine_chunks()
        dictionary = codes.dictionary.to_pylist()
        wanted = np.flatnonzero(np.isin(np.asarray(dictionary, dtype=object), list(query.ts_codes)))
        mask = np.isin(codes.indices.to_numpy(zero_copy_only=False), wanted)
        table = table.filter(pa.array(mask))
    if query.start is not None or query.end is not None:
        days = table.column("trade_date").cast(pa.int32()).to_numpy()
        mask = np.ones(len(days), dtype=bool)
        if query.start is not None:
            mask &= days >= (query.start - _EPOCH).days
        if query.end is not None:
            mask &= days <= (query.end - _EPOCH).days
        if not mask.all():
            table = table.filter(pa.array(mask))
    return table


def _codes(table: pa.Table) -> tuple[list[str], np.ndarray]:
    """The symbol dictionary and each row's index into it."""
    column = table.column("ts_code").combine_chunks()
    if len(column) == 0:
        return [], np.zeros(0, dtype=np.int32)
    return column.dictionary.to_pylist(), column.indices.to_numpy(zero_copy_only=False)


def answer_table(snapshot: pa.Table, query: BulkQuery, anchors: dict[str, int], version: int) -> pa.Table:
    """The served table: selected rows, adjusted as asked, with the documented column types."""
    by_symbol = select_rows(snapshot, replace(query, start=None, end=None))
    rows = select_rows(by_symbol, replace(query, ts_codes=None))
    factor = rows.column("adj_factor").to_numpy()
    out: dict[str, pa.Array | pa.ChunkedArray] = {
        "ts_code": rows.column("ts_code"),
        "trade_date": rows.column("trade_date"),
    }
    anchor_date = query.anchor or query.end
    if query.adjust is Adjust.NONE:
        for name in PRICE_COLUMNS:
            out[name] = rows.column(name)
    else:
        anchor_micro = None
        if query.adjust is Adjust.QFQ:
            dictionary, indices = _codes(rows)
            per_symbol = _anchor_by_symbol(by_symbol, anchor_date)
            for code, micro in anchors.items():
                if code in per_symbol:
                    per_symbol[code] = micro
            table = np.asarray([per_symbol.get(code, 0) for code in dictionary], dtype=np.int64)
            anchor_micro = table[indices] if len(indices) else np.zeros(0, dtype=np.int64)
        for name in PRICE_COLUMNS:
            units = adjusted(rows.column(name).to_numpy(), factor, anchor_micro)
            out[name] = pa.array(np.asarray(units, dtype=np.int64) / ADJUSTED_SCALE, pa.float64())
    out["vol"] = rows.column("vol")
    out["amount"] = rows.column("amount")
    out["adj_factor"] = pa.array(factor / 1_000_000, pa.float64())
    for name in query.fields:
        out[name] = rows.column(name)
    metadata = {
        "adjust": query.adjust.value,
        "anchor": str(anchor_date) if query.adjust is Adjust.QFQ and anchor_date else "",
        "data_version": str(version),
        "price_unit": "fen" if query.adjust is Adjust.NONE else "CNY (4 decimals)",
        "vol_unit": "shares",
        "amount_unit": "fen",
    }
    if query.fields:
        metadata["daily_basic_units"] = (
            "ratios as Tushare (turnover_rate, turnover_rate_f, dv_ratio, dv_ttm percent); "
            "total_share, float_share, free_share shares; total_mv, circ_mv fen"
        )
    return pa.table(out).replace_schema_metadata(metadata)


def _anchor_by_symbol(rows: pa.Table, anchor: date | None) -> dict[str, int]:
    """Each symbol's factor on its last bar on or before `anchor` (None: its last bar); a symbol without a bar by
    then anchors at its first bar. `rows` hold whole histories, sorted by symbol and date."""
    n = len(rows)
    if n == 0:
        return {}
    dictionary, indices = _codes(rows)
    factor = rows.column("adj_factor").to_numpy()
    days = rows.column("trade_date").cast(pa.int32()).to_numpy()
    starts = np.flatnonzero(np.r_[True, indices[1:] != indices[:-1]])
    limit = (anchor - _EPOCH).days if anchor is not None else int(days.max())
    eligible = np.where(days <= limit, np.arange(n), -1)
    last = np.maximum.reduceat(eligible, starts)
    chosen = np.where(last >= starts, last, starts)
    return {dictionary[int(i)]: int(f) for i, f in zip(indices[starts].tolist(), factor[chosen].tolist(), strict=True)}


def _write_answer(
    snapshot: Path,
    query: BulkQuery,
    anchors: dict[str, int],
    version: int,
    path: Path,
    field_files: Sequence[Path] = (),
) -> None:
    bars = _read_snapshot(snapshot)
    for name, field_file in zip(query.fields, field_files, strict=True):
        bars = bars.append_column(name, _read_snapshot(field_file).column(name))
    table = answer_table(bars, query, anchors, version)

    def write(tmp: Path) -> None:
        if query.format == "parquet":
            pq.write_table(table, str(tmp), compression="zstd", row_group_size=1_000_000)
        else:
            # zstd buffers: less than half the bytes to move, and pyarrow decompresses on all cores (measured on the
            # whole market: 901 -> 400 MB, 0.3-0.7 s to read back).
            options = ipc.IpcWriteOptions(compression="zstd")
            with pa.OSFile(str(tmp), "wb") as sink, ipc.new_stream(sink, table.schema, options=options) as writer:
                writer.write_table(table, max_chunksize=1_000_000)

    _atomic_write(path, write)


def read_answer(body: bytes, fmt: str) -> pa.Table:
    """For clients and tests: the table from a bulk answer's bytes."""
    if fmt == "parquet":
        return pq.read_table(pa.BufferReader(body))
    return ipc.open_stream(pa.BufferReader(body)).read_all()


def bulk_directory(settings: object) -> Path:
    """Where bulk snapshots go: `settings.data_snapshot_dir` when set, else a directory per database under the
    system's temporary directory (so test runs and deployments sharing a machine keep apart)."""
    configured = getattr(settings, "data_snapshot_dir", None)
    if configured:
        return Path(str(configured))
    url = make_url(settings.database_url_for("data"))  # type: ignore[attr-defined]
    name = Path(url.database or "memory").name.replace(".", "_") if url.database else "memory"
    # Two SQLite files of one name in two folders (two platforms, two test runs) are two databases: the folder of
    # the file, or the server's host and port, is in the directory's name too.
    where = str(Path(url.database).resolve().parent) if url.get_backend_name() == "sqlite" and url.database else ""
    place = f"{url.host or 'local'}:{url.port or ''}:{where}"
    digest = hashlib.sha256(place.encode()).hexdigest()[:12]
    folder = f"{url.get_backend_name()}-{url.host or 'local'}-{name}-{digest}"
    return Path(tempfile.gettempdir()) / "lianghua-data" / folder

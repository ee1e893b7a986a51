"""A backtest's outcome: its summary, equity curve and result frames (Parquet, in chunks), written once when it
finishes, and read back."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from datetime import date
from decimal import Decimal
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import delete, insert, select, update

from services.backtest.store.records import BacktestStatus, StoredEquity, truncate_error
from services.backtest.store.tables import backtest_artifacts, backtest_equity, backtests, outbox
from shared.platform.clock import utcnow
from shared.platform.db import Database
from shared.platform.events.envelope import Envelope
from shared.platform.outbox import add_to_outbox

# Result frames are stored as Parquet (zstd) split into chunks of this size: a row stays far below MariaDB's
# max_allowed_packet (16 MiB by default, 64 MiB on MariaDB 10.6+ / what `SELECT @@max_allowed_packet` says) whatever
# the size of the run, and SQLite takes the same rows.
ARTIFACT_CHUNK_BYTES = 1 << 20
ARTIFACT_NAMES = ("daily", "trades", "unfilled", "decisions")


class BacktestResults:
    db: Database

    async def artifact(self, backtest_id: str, name: str) -> pd.DataFrame | None:
        """A stored result frame (`daily`, `trades`, `unfilled`); None when the backtest has none (not finished,
        failed, or finished before artifacts were stored)."""
        async for attempt in self.db.transaction():
            async with attempt as session:
                rows = (
                    await session.execute(
                        select(backtest_artifacts.c.data)
                        .where(backtest_artifacts.c.backtest_id == backtest_id, backtest_artifacts.c.name == name)
                        .order_by(backtest_artifacts.c.chunk)
                    )
                ).all()
        if not rows:
            return None
        return frame_from_parquet(b"".join(bytes(r.data) for r in rows))

    async def daily_frame(self, backtest_id: str) -> pd.DataFrame | None:
        """trade_date, cash, market_value, equity (int64 fen), benchmark (index close or NaN), exposure
        (market_value / equity), holdings (symbols held at the close)."""
        return await self.artifact(backtest_id, "daily")

    async def trades_frame(self, backtest_id: str) -> pd.DataFrame | None:
        """The engine's trades frame (money as exact CNY strings), in execution order."""
        return await self.artifact(backtest_id, "trades")

    async def decisions_frame(self, backtest_id: str) -> pd.DataFrame | None:
        """The traded orders' decisions (services/backtest/runner.py `decisions_frame`): None for a backtest that
        finished before they were stored."""
        return await self.artifact(backtest_id, "decisions")

    async def unfilled_frame(self, backtest_id: str) -> pd.DataFrame | None:
        """The orders that did not fill completely (cancelled, rejected, partially filled), with the reason."""
        return await self.artifact(backtest_id, "unfilled")

    async def equity_curve(self, backtest_id: str) -> list[StoredEquity]:
        async for attempt in self.db.transaction():
            async with attempt as session:
                rows = (
                    await session.execute(
                        select(backtest_equity.c.trade_date, backtest_equity.c.equity)
                        .where(backtest_equity.c.backtest_id == backtest_id)
                        .order_by(backtest_equity.c.trade_date)
                    )
                ).all()
        return [StoredEquity(r.trade_date, r.equity) for r in rows]

    async def finish(
        self,
        backtest_id: str,
        *,
        status: BacktestStatus,
        event: Envelope,
        from_status: BacktestStatus = BacktestStatus.RUNNING,
        summary: dict[str, Any] | None = None,
        equity_curve: Sequence[tuple[date, Decimal]] = (),
        error: str | None = None,
        artifacts: Mapping[str, bytes] | None = None,
    ) -> bool:
        """Record the outcome, the equity curve, the result artifacts (Parquet bytes by name) and the
        `backtest.finished` event in one transaction. Only a backtest still in `from_status` is finished; returns
        False (writing nothing) when another delivery of the same job got there first."""
        assert status.is_final
        async for attempt in self.db.transaction():
            async with attempt as session:
                result = await session.execute(
                    update(backtests)
                    .where(backtests.c.backtest_id == backtest_id, backtests.c.status == from_status.value)
                    .values(
                        status=status.value,
                        summary=summary,
                        error=None if error is None else truncate_error(error),
                        finished_at=utcnow(),
                    )
                )
                if result.rowcount != 1:
                    return False
                await session.execute(delete(backtest_equity).where(backtest_equity.c.backtest_id == backtest_id))
                if equity_curve:
                    await session.execute(
                        insert(backtest_equity),
                        [{"backtest_id": backtest_id, "trade_date": d, "equity": e} for d, e in equity_curve],
                    )
                await session.execute(delete(backtest_artifacts).where(backtest_artifacts.c.backtest_id == backtest_id))
                for name, blob in (artifacts or {}).items():
                    chunks = [blob[i : i + ARTIFACT_CHUNK_BYTES] for i in range(0, len(blob), ARTIFACT_CHUNK_BYTES)]
                    for number, chunk in enumerate(chunks or [b""]):
                        # One statement per chunk: a multi-row insert would add the chunks up into one packet.
                        await session.execute(
                            insert(backtest_artifacts).values(
                                backtest_id=backtest_id, name=name, chunk=number, data=chunk
                            )
                        )
                await add_to_outbox(session, outbox, event)
        return True


def frame_to_parquet(frame: pd.DataFrame) -> bytes:
    """A frame as Parquet bytes (zstd), without the index."""
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), sink, compression="zstd")
    return sink.getvalue()


def frame_from_parquet(blob: bytes) -> pd.DataFrame:
    return pq.read_table(io.BytesIO(blob)).to_pandas()

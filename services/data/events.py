"""What the data service publishes: `bars.updated` after an ingest run that wrote bars (succeeded, or failed or
interrupted after writing some days: `complete` false), written to its transactional outbox (the `outbox` table of
lh_data, migration 0003) in the same transaction as the ingest run's finish, and relayed to the bus by
`shared.platform.outbox.OutboxRelay`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from services.data.store.tables import metadata
from shared.platform.events.envelope import Envelope, make_event
from shared.platform.events.schemas import BarsUpdated
from shared.platform.outbox import outbox_table

SOURCE = "data"
BARS_UPDATED = "bars.updated"

# On the store's metadata, so the schema test (metadata vs. migrations) sees it like every other data table.
outbox = outbox_table(metadata)


def bars_updated(
    *, start: date, end: date, symbols: int, rows: int, complete: bool = True, skipped_endpoints: Sequence[str] = ()
) -> Envelope:
    """The event of an ingest run that wrote bars: the range of trading days written, how many symbols and bar rows.
    `trade_date` is the newest day written (what a consumer refreshing "today" wants). `complete` is False when the
    run failed or was interrupted after writing some bars: bars in the range changed (its last batch may be partly
    stored, written stock by stock), the rest of what the run was asked for is not there yet; a consumer refreshes
    the range all the same. `skipped_endpoints`: the optional provider endpoints the run did without (the token may
    not use them), so the tables they fill (e.g. stk_limits) did not change."""
    payload = BarsUpdated(trade_date=end, start_date=start, end_date=end, symbols=symbols, rows=rows, complete=complete,
                          skipped_endpoints=list(skipped_endpoints))  # fmt: skip
    return make_event(BARS_UPDATED, payload, source=SOURCE)

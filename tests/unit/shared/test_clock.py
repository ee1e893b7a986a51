"""The one clock and the one UTC timestamp column type."""

from datetime import UTC, datetime, timedelta, timezone

from sqlalchemy import Column, Integer, MetaData, Table, create_engine, insert, select, text

from shared.platform.clock import UtcDateTime, utcnow

SHANGHAI = timezone(timedelta(hours=8))


def test_utcnow_is_aware_utc() -> None:
    now = utcnow()
    assert now.tzinfo is not None and now.utcoffset() == timedelta(0)


def test_a_timestamp_is_stored_as_naive_utc_and_read_back_aware() -> None:
    metadata = MetaData()
    t = Table("t", metadata, Column("id", Integer, primary_key=True), Column("at", UtcDateTime, nullable=True))
    engine = create_engine("sqlite://")
    metadata.create_all(engine)
    with engine.begin() as c:
        c.execute(insert(t), [
            {"id": 1, "at": datetime(2025, 1, 2, 9, 30, 0, 123456, tzinfo=SHANGHAI)},  # 01:30 UTC
            {"id": 2, "at": datetime(2025, 1, 2, 2, 0)},  # naive: taken as UTC
            {"id": 3, "at": None},
        ])  # fmt: skip
        raw = c.execute(text("SELECT at FROM t ORDER BY id")).scalars().all()
        rows = c.execute(select(t.c.id, t.c.at).order_by(t.c.id)).all()
        # an aware bound in another zone compares in UTC: 09:45 in Shanghai is 01:45 UTC, after row 1, before row 2
        after = c.execute(select(t.c.id).where(t.c.at > datetime(2025, 1, 2, 9, 45, tzinfo=SHANGHAI))).scalars().all()
    assert raw[:2] == ["2025-01-02 01:30:00.123456", "2025-01-02 02:00:00.000000"] and raw[2] is None
    assert [r.at for r in rows] == [
        datetime(2025, 1, 2, 1, 30, 0, 123456, tzinfo=UTC),
        datetime(2025, 1, 2, 2, 0, tzinfo=UTC),
        None,
    ]
    assert after == [2]

"""`JsonDocument` (shared/platform/columns.py): a JSON column written by orjson, read as any JSON column; what orjson
cannot write (an integer beyond 64 bits, a key that is not a string) written as the standard library writes it."""

import json
import math
from datetime import date

import numpy as np
import pytest
from sqlalchemy import JSON, Column, Integer, MetaData, Table, create_engine, select, text
from sqlalchemy.exc import StatementError

from shared.platform.columns import JsonDocument

metadata = MetaData()
documents = Table(
    "documents",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("doc", JsonDocument, nullable=True),
)


def test_the_column_is_a_json_column() -> None:
    assert isinstance(JsonDocument().impl, JSON)


def test_what_a_json_column_refuses_is_refused() -> None:
    """A value the standard library cannot write (a date, a numpy integer) fails the write, as with a JSON column,
    rather than being written in a form that would come back as another type."""
    engine = create_engine("sqlite://")
    metadata.create_all(engine)
    for value in ({"when": date(2024, 12, 31)}, {"n": np.int64(3)}):
        with pytest.raises(StatementError, match="not JSON serializable"), engine.begin() as conn:
            conn.execute(documents.insert(), {"id": 9, "doc": value})


def test_documents_are_read_back_as_written() -> None:
    engine = create_engine("sqlite://")
    metadata.create_all(engine)
    book = {
        "cash_fen": 999_988_894_536,
        "positions": {"600000.SH": [1000, 1_005_510]},
        "applied_trades": ["paper-1-1", "paper-2-1"],
        "seq": {"2024-12-31": 3},
        "note": "量化",
        "none": None,
        "flag": True,
    }
    odd = {"big": 2**70, 7: "an int key"}  # orjson writes neither: the standard library's text
    nan = {"state": {"ndarray": [float("nan"), 1.5], "dtype": "float64"}, "last": float("nan")}
    with engine.begin() as conn:
        conn.execute(documents.insert(), [{"id": 1, "doc": book}, {"id": 2, "doc": odd}, {"id": 3, "doc": nan},
                                          {"id": 4, "doc": None}])  # fmt: skip
        raw = dict(conn.execute(text("SELECT id, doc FROM documents")).all())
        read = dict(conn.execute(select(documents.c.id, documents.c.doc)).all())
    assert read[1] == book
    assert json.loads(raw[1]) == book
    assert read[2] == {"big": 2**70, "7": "an int key"}  # as json.dumps writes it: the key as text
    # JSON has no NaN: a float that is not one is written null; a numpy float array reads it back as NaN
    assert read[3]["last"] is None
    restored = np.array(read[3]["state"]["ndarray"], dtype=read[3]["state"]["dtype"])
    assert math.isnan(restored[0]) and restored[1] == 1.5
    assert raw[4] == "null" and read[4] is None  # as a JSON column writes None

"""The one money column type (shared/platform/columns.py): a Decimal CNY amount in, integer fen in the BIGINT
column, the same Decimal out; anything that is not a whole number of fen as a Decimal is refused, not rounded."""

from decimal import Decimal

import pytest
from sqlalchemy import BigInteger, Column, Integer, MetaData, Table, create_engine, func, select, text
from sqlalchemy.exc import StatementError

from shared.platform.columns import CnyFen

metadata = MetaData()
amounts = Table(
    "amounts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("amount_fen", CnyFen, key="amount", nullable=True),
)


def test_the_column_stays_a_bigint() -> None:
    assert isinstance(CnyFen().impl, BigInteger)


def test_amounts_are_stored_in_fen_and_read_back_exactly() -> None:
    engine = create_engine("sqlite://")
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            amounts.insert(),
            [
                {"id": 1, "amount": Decimal("9505.10")},
                {"id": 2, "amount": Decimal("-0.01")},
                {"id": 3, "amount": Decimal("7")},
                {"id": 4, "amount": None},
            ],
        )
        raw = conn.execute(text("SELECT id, amount_fen FROM amounts ORDER BY id")).all()
        assert [tuple(r) for r in raw] == [(1, 950_510), (2, -1), (3, 700), (4, None)]
        read = conn.execute(select(amounts.c.amount).order_by(amounts.c.id)).scalars().all()
        assert read == [Decimal("9505.10"), Decimal("-0.01"), Decimal("7.00"), None]
        assert conn.execute(select(func.sum(amounts.c.amount))).scalar_one() == Decimal("9512.09")


@pytest.mark.parametrize("bad", [Decimal("9.505"), 950, 9.5, True, "9.50"])
def test_anything_but_a_whole_number_of_fen_as_a_decimal_is_refused(bad: object) -> None:
    engine = create_engine("sqlite://")
    metadata.create_all(engine)
    with pytest.raises(StatementError), engine.begin() as conn:
        conn.execute(amounts.insert().values(id=1, amount=bad))
    with engine.begin() as conn:
        assert conn.execute(text("SELECT count(*) FROM amounts")).scalar_one() == 0

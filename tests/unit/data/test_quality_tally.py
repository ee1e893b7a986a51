"""A quality report's totals per rule, worked out before the store writes them."""

from __future__ import annotations

import pytest

from services.data.quality import tally_findings


def test_without_counts_the_findings_kept_are_all_there_were() -> None:
    found, kept = tally_findings(["bad_price", "missing_bar"], ["bad_price", "bad_price"], None)
    assert kept == {"bad_price": 2, "missing_bar": 0}
    assert found == {"bad_price": 2, "missing_bar": 0}


def test_capped_findings_keep_their_true_totals() -> None:
    found, kept = tally_findings(["bad_price"], ["bad_price"], {"bad_price": 40, "zero_volume": 3})
    assert kept == {"bad_price": 1}
    assert found == {"bad_price": 40, "zero_volume": 3}


def test_a_count_below_the_findings_kept_is_refused() -> None:
    with pytest.raises(ValueError, match="counts below the findings kept"):
        tally_findings(["bad_price"], ["bad_price", "bad_price"], {"bad_price": 1})

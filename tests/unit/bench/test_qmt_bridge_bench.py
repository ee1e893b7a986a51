"""The QMT bridge benchmark's arithmetic (bench/qmt_bridge.py): percentiles of each path, the QMT path as a ratio to
the paper path, and what the hop adds at the median (cases worked out by hand)."""

from __future__ import annotations

import pytest

from bench.qmt_bridge import report, summarize


def test_each_path_its_percentiles_and_the_ratio_of_qmt_to_paper() -> None:
    # five orders each, given out of order: sorted 10..50 and 15..55 ms. percentile k = round(q * (n - 1)):
    # p50 -> k 2 (30 / 35), p99 -> round(3.96) = 4 (50 / 55)
    summary = summarize([30.0, 10.0, 50.0, 20.0, 40.0], [55.0, 15.0, 35.0, 25.0, 45.0])
    assert (summary.paper.p50, summary.paper.p99, summary.paper.mean, summary.paper.max) == (30.0, 50.0, 30.0, 50.0)
    assert (summary.qmt.p50, summary.qmt.p99, summary.qmt.mean, summary.qmt.max) == (35.0, 55.0, 35.0, 55.0)
    assert summary.ratio_p50 == pytest.approx(35 / 30)  # 1.1667
    assert summary.ratio_p99 == pytest.approx(1.1)  # 55 / 50
    assert summary.added_p50 == 5.0
    lines = report("title", summary)
    assert lines[1] == "  paper: p50 30.00 ms  p99 50.00 ms  mean 30.00 ms  max 50.00 ms"
    assert lines[3] == "  ratio QMT/paper: p50 1.17x  p99 1.10x  (the bridge hop adds 5.00 ms at the p50)"


def test_the_paths_must_have_the_same_orders() -> None:
    with pytest.raises(ValueError, match="same number"):
        summarize([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="same number"):
        summarize([], [])

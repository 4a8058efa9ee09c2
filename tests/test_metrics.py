"""gr2.rerank.metrics: the one definition of the slate metrics, and its histogram form."""

import math

import pytest

from gr2.rerank.metrics import histogram_metrics, slate_metrics


@pytest.mark.parametrize("positions", [
    [0],
    [0, 1, 2, 3, 4, 5, 9],
    [-1, -1, 0],  # absent targets count as misses
    [4, 4, 4, 2, 0, 7, -1, 3, 3],
])
def test_histogram_metrics_equal_the_metrics_of_the_positions(positions):
    counts = {}
    for p in positions:
        counts[p] = counts.get(p, 0) + 1
    want, got = slate_metrics(positions), histogram_metrics(counts)
    assert got.keys() == want.keys()
    for m in want:
        assert got[m] == pytest.approx(want[m], abs=1e-12), m


def test_histogram_metrics_of_no_slates_are_nan():
    assert all(math.isnan(v) for v in histogram_metrics({}).values())

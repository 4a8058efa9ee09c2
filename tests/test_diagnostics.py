"""Behaviour diagnostics on hand-made slates."""

import numpy as np
import pytest

from gr2.eval.diagnostics import (
    bootstrap_ci,
    mean_displacement,
    order_copy_rate,
    output_ranks,
    paired_bootstrap_diff,
    summarize,
    target_landing,
    valid_rate,
)

COPY = [0, 1, 2, 3]
SWAP = [1, 0, 2, 3]
REVERSED = [3, 2, 1, 0]


@pytest.mark.parametrize(
    "outputs, valid, copy, displacement",
    [
        ([COPY, COPY], 1.0, 1.0, 0.0),  # pure copies: the naive-reward hack
        ([COPY, SWAP], 1.0, 0.5, 2 / 8),  # one swap moves two items by one
        ([REVERSED], 1.0, 0.0, 2.0),  # |0-3|+|1-2|+|2-1|+|3-0| = 8 over 4 items
        ([COPY, None, None, SWAP], 0.5, 0.5, 2 / 8),  # invalid answers excluded from copy/displacement
        ([[0, 0, 1, 2], COPY], 0.5, 1.0, 0.0),  # duplicate index: malformed, invalid
        ([None], 0.0, float("nan"), float("nan")),  # nothing valid: undefined
    ],
)
def test_order_copy_valid_and_displacement(outputs, valid, copy, displacement):
    assert valid_rate(outputs) == pytest.approx(valid)
    assert order_copy_rate(outputs) == pytest.approx(copy, nan_ok=True)
    assert mean_displacement(outputs) == pytest.approx(displacement, nan_ok=True)


def test_target_landing_counts():
    inputs = [0, 0, 2, 2, 2, 1]
    outputs = [0, 0, 0, 2, None, -1]  # last two: invalid answers, skipped
    got = target_landing(inputs, outputs, k=3)
    expected = np.array([[2, 0, 0], [0, 0, 0], [1, 0, 1]])
    assert np.array_equal(got, expected)
    assert got.sum() == 4


@pytest.mark.parametrize(
    "inputs, outputs",
    [
        ([3], [0]),  # input rank past K
        ([0, 1], [0]),  # length mismatch
    ],
)
def test_target_landing_rejects_bad_rows(inputs, outputs):
    with pytest.raises(ValueError):
        target_landing(inputs, outputs, k=3)


def test_bootstrap_ci_contains_mean_and_narrows_with_more_data():
    rng = np.random.default_rng(1)
    small = rng.binomial(1, 0.4, size=50).astype(float)
    large = rng.binomial(1, 0.4, size=2000).astype(float)
    m_s, lo_s, hi_s = bootstrap_ci(small, n_boot=500)
    m_l, lo_l, hi_l = bootstrap_ci(large, n_boot=500)
    assert lo_s <= m_s <= hi_s and lo_l <= m_l <= hi_l
    assert m_s == pytest.approx(small.mean())
    assert hi_l - lo_l < (hi_s - lo_s) / 3


def test_bootstrap_ci_is_deterministic_with_seed():
    values = np.linspace(0, 1, 40)
    assert bootstrap_ci(values, n_boot=300, seed=7) == bootstrap_ci(values, n_boot=300, seed=7)
    assert bootstrap_ci(values, n_boot=300, seed=7) != bootstrap_ci(values, n_boot=300, seed=8)


def test_bootstrap_ci_rejects_empty():
    with pytest.raises(ValueError):
        bootstrap_ci(np.array([]))


def test_summarize_reuses_slate_metrics():
    inputs = [2, 0, 3]
    outputs = [[2, 0, 1, 3], COPY, None]  # promote to top; copy (target already top); invalid
    assert output_ranks(inputs, outputs) == [0, 0, None]
    kept = summarize(inputs, outputs)
    assert kept["valid_rate"] == pytest.approx(2 / 3)
    assert kept["in_R@1"] == pytest.approx(1 / 3)
    assert kept["out_R@1"] == pytest.approx(2 / 3)
    assert kept["out_R@5"] == pytest.approx(1.0)  # invalid answer falls back to input rank 3
    missed = summarize(inputs, outputs, invalid_keeps_input=False)
    assert missed["out_R@5"] == pytest.approx(2 / 3)  # invalid answer counted as a miss


@pytest.mark.parametrize(
    "a, b, sign",
    [
        # b hits wherever a does and on 30 more of 200 slates: a clear gain, interval above 0
        ([1] * 50 + [0] * 150, [1] * 80 + [0] * 120, +1),
        # the same slates the other way round: interval below 0
        ([1] * 80 + [0] * 120, [1] * 50 + [0] * 150, -1),
        # identical answers: exactly 0 with a zero-width interval
        ([1, 0, 1, 0] * 50, [1, 0, 1, 0] * 50, 0),
    ],
)
def test_paired_bootstrap_diff_signs(a, b, sign):
    diff, low, high = paired_bootstrap_diff(np.array(a), np.array(b), n_boot=500, seed=3)
    assert low <= diff <= high
    assert diff == pytest.approx(np.mean(b) - np.mean(a))
    if sign > 0:
        assert low > 0
    elif sign < 0:
        assert high < 0
    else:
        assert low == high == 0


def test_pairing_finds_a_difference_the_two_own_intervals_hide():
    # 400 slates, a hard half (both miss) and an easy half (both hit) plus 24 slates only b hits:
    # a's and b's own intervals overlap, the paired interval of b - a does not contain 0.
    rng = np.random.default_rng(0)
    a = (rng.random(400) < 0.5).astype(float)
    b = a.copy()
    b[np.flatnonzero(a == 0)[:24]] = 1.0
    _, a_low, a_high = bootstrap_ci(a, n_boot=500, seed=1)
    _, b_low, b_high = bootstrap_ci(b, n_boot=500, seed=1)
    assert b_low < a_high, "the rows' own intervals overlap"
    diff, low, high = paired_bootstrap_diff(a, b, n_boot=500, seed=1)
    assert low > 0 and diff == pytest.approx(0.06)


def test_paired_bootstrap_refuses_unpaired_values():
    with pytest.raises(ValueError, match="not the same slates"):
        paired_bootstrap_diff(np.ones(3), np.ones(4))

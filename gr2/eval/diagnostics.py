"""Reward-hacking and behaviour diagnostics over evaluated slates (pure numpy).

Ranking metrics alone can hide what an RL-tuned re-ranker learned. GR2
(arXiv 2602.07774) reports that with a naive format bonus the policy drifts to
copying the input order: valid, never wrong by much, and worthless. These numbers
make that visible: how often answers parse, how often they copy the input, how far
items move, where the target lands given where it started (position bias), and a
bootstrap interval so small differences between runs are not over-read.

An output order is a list of input indices (``order[j]`` = input index placed at
output position ``j``), or None when the answer did not parse.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# the bootstrap lives with the metrics (gr2.rerank), where the training stages can use it too
from gr2.rerank.metrics import bootstrap_ci, paired_bootstrap_diff, slate_metrics  # noqa: F401 - re-exported
from gr2.rerank.permutations import Order, is_permutation


def valid_rate(output_positions: Sequence[Order]) -> float:
    """Share of outputs that are exact permutations (None and malformed count as invalid)."""
    outs = list(output_positions)
    return sum(is_permutation(o) for o in outs) / len(outs) if outs else float("nan")


def order_copy_rate(output_positions: Sequence[Order]) -> float:
    """Share of VALID outputs equal to the input order 0..K-1 (the naive-reward hack)."""
    valid = [list(o) for o in output_positions if is_permutation(o)]
    return sum(o == list(range(len(o))) for o in valid) / len(valid) if valid else float("nan")


def mean_displacement(output_positions: Sequence[Order]) -> float:
    """Mean ``|output position - input position|`` per item, pooled over the items of
    all valid outputs; 0 for a pure copy."""
    total, count = 0, 0
    for o in output_positions:
        if is_permutation(o):
            arr = np.asarray(o)
            total += int(np.abs(np.arange(arr.size) - arr).sum())
            count += arr.size
    return total / count if count else float("nan")


def target_landing(input_ranks: Sequence[int], output_ranks: Sequence[int | None], k: int) -> np.ndarray:
    """Counts [K, K]: row = target's input position, column = its output position.
    A heavy diagonal means the model leaves targets where it found them; mass in a
    column means position bias. Pairs with no output rank (None or -1) are skipped."""
    if len(input_ranks) != len(output_ranks):
        raise ValueError("input_ranks and output_ranks differ in length")
    counts = np.zeros((k, k), dtype=np.int64)
    for i, o in zip(input_ranks, output_ranks):
        if o is None or o < 0:
            continue
        if not (0 <= i < k and 0 <= o < k):
            raise ValueError(f"rank pair ({i}, {o}) is outside a slate of size K={k}")
        counts[i, o] += 1
    return counts


def output_ranks(input_ranks: Sequence[int], output_positions: Sequence[Order]) -> list[int | None]:
    """Target's output position per slate; None where the answer is invalid."""
    return [list(o).index(i) if is_permutation(o) else None for i, o in zip(input_ranks, output_positions)]


def summarize(
    input_ranks: Sequence[int], output_positions: Sequence[Order], invalid_keeps_input: bool = True
) -> dict[str, float]:
    """All behaviour numbers plus :func:`gr2.rerank.metrics.slate_metrics` before
    (``in_*``) and after (``out_*``) re-ranking. An invalid answer falls back to
    the input order when ``invalid_keeps_input`` (what serving would do), else it
    counts as a miss."""
    outs = list(output_positions)
    landed = output_ranks(input_ranks, outs)
    fallback = [(i if invalid_keeps_input else -1) if o is None else o for i, o in zip(input_ranks, landed)]
    report = {
        "valid_rate": valid_rate(outs),
        "order_copy_rate": order_copy_rate(outs),
        "mean_displacement": mean_displacement(outs),
    }
    report.update({f"in_{k}": v for k, v in slate_metrics(input_ranks).items()})
    report.update({f"out_{k}": v for k, v in slate_metrics(fallback).items()})
    return report

"""Ranking metrics for slates with one relevant item: the one definition of Recall@k and NDCG@k.

A slate's result is the 0-based output position of its target, -1 (or None) when it is absent. The ETL
build's summary, training's held-out checks, the eval report's bootstrap intervals and the benchmarks
all score positions here, so a metric cannot mean one thing in a report and another in a summary. The
bootstrap intervals of a mean and of a paired difference live here too.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

# The slate metrics every report shows, with their cut-off k.
METRIC_KS = {"R@1": 1, "R@3": 3, "R@5": 5, "NDCG@3": 3, "NDCG@5": 5}


def hit_at(position: int | None, k: int) -> float:
    """One slate's Recall@k: 1.0 when the target sits inside the top k, else 0.0."""
    return 1.0 if position is not None and 0 <= position < k else 0.0


def ndcg_gain_at(position: int | None, k: int) -> float:
    """One slate's NDCG@k. One relevant item: the ideal DCG is 1, so NDCG@k = 1 / log2(position + 2)
    inside the top k, 0 outside."""
    return 1.0 / math.log2(position + 2) if position is not None and 0 <= position < k else 0.0


def recall_at(positions: Iterable[int], k: int) -> float:
    pos = list(positions)
    return sum(hit_at(p, k) for p in pos) / len(pos) if pos else float("nan")


def ndcg_at(positions: Iterable[int], k: int) -> float:
    """Mean NDCG@k over slates (`ndcg_gain_at` of each)."""
    pos = list(positions)
    return sum(ndcg_gain_at(p, k) for p in pos) / len(pos) if pos else float("nan")


def slate_metrics(positions: Iterable[int]) -> dict[str, float]:
    pos = list(positions)
    return {m: (recall_at if m.startswith("R@") else ndcg_at)(pos, k) for m, k in METRIC_KS.items()}


def histogram_metrics(counts: dict[int, int]) -> dict[str, float]:
    """`slate_metrics` of positions given as a histogram {position: number of slates}: what a Spark
    groupBy returns, so a job's summary never collects one row per slate to the driver."""
    n = sum(counts.values())
    if not n:
        return {m: float("nan") for m in METRIC_KS}
    gain = {m: (hit_at if m.startswith("R@") else ndcg_gain_at) for m in METRIC_KS}
    return {m: sum(c * gain[m](p, k) for p, c in counts.items()) / n for m, k in METRIC_KS.items()}


def per_slate_values(positions: Sequence[int], metric: str) -> np.ndarray:
    """Per-slate value of one metric of `METRIC_KS` (R@k: 0/1 hit, NDCG@k: `ndcg_gain_at`), vectorised for
    the bootstrap: the gains of the k places inside the top k are looked up, not recomputed per slate."""
    k = METRIC_KS[metric]
    pos = np.asarray(list(positions), dtype=np.int64)
    inside = (pos >= 0) & (pos < k)
    if metric.startswith("R@"):
        return inside.astype(np.float64)
    gains = np.array([ndcg_gain_at(p, k) for p in range(k)], dtype=np.float64)
    return np.where(inside, gains[np.clip(pos, 0, k - 1)], 0.0)


def bootstrap_ci(
    values: np.ndarray, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float, float]:
    """Percentile bootstrap of the mean over slates: ``(mean, low, high)``.
    Resampled in chunks so memory stays bounded for large eval sets."""
    vals = np.asarray(values, dtype=np.float64).ravel()
    if vals.size == 0:
        raise ValueError("no values to bootstrap")
    rng = np.random.default_rng(seed)
    chunk = max(1, 2_000_000 // vals.size)
    means = np.empty(n_boot)
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        idx = rng.integers(0, vals.size, size=(stop - start, vals.size))
        means[start:stop] = vals[idx].mean(axis=1)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(vals.mean()), float(low), float(high)


def paired_bootstrap_diff(
    a: np.ndarray, b: np.ndarray, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float, float]:
    """Percentile bootstrap of ``mean(b) - mean(a)`` over the SAME slates: ``(diff, low, high)``.

    Both rankers answered every slate, so each resample draws slates once and takes the difference on
    them. Pairing removes the slate-to-slate variance both rows share (easy and hard slates), which is
    why a paired interval is much narrower than the two rows' own intervals side by side: two models
    whose own intervals overlap can still differ reliably. An interval that excludes 0 is a difference
    at the 1 - alpha level."""
    va = np.asarray(a, dtype=np.float64).ravel()
    vb = np.asarray(b, dtype=np.float64).ravel()
    if va.size != vb.size:
        raise ValueError(f"paired values differ in length ({va.size} and {vb.size}): not the same slates")
    diff, low, high = bootstrap_ci(vb - va, n_boot=n_boot, alpha=alpha, seed=seed)
    return diff, low, high

"""Ranking metrics for slates with one relevant item (0-based position of the target, -1 if absent)."""

from __future__ import annotations

import math
from collections.abc import Iterable


def recall_at(positions: Iterable[int], k: int) -> float:
    pos = list(positions)
    return sum(1 for p in pos if 0 <= p < k) / len(pos) if pos else float("nan")


def ndcg_at(positions: Iterable[int], k: int) -> float:
    """One relevant item: the ideal DCG is 1, so NDCG@k = 1 / log2(position + 2) inside the top k."""
    pos = list(positions)
    return sum(1.0 / math.log2(p + 2) for p in pos if 0 <= p < k) / len(pos) if pos else float("nan")


def slate_metrics(positions: Iterable[int]) -> dict[str, float]:
    pos = list(positions)
    return {
        "R@1": recall_at(pos, 1),
        "R@3": recall_at(pos, 3),
        "R@5": recall_at(pos, 5),
        "NDCG@3": ndcg_at(pos, 3),
        "NDCG@5": ndcg_at(pos, 5),
    }

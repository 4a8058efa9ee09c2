"""The pre-ranker that produces the K candidates GR2 re-ranks: item-to-item co-occurrence.

Why co-occurrence and not ALS: a slate needs the candidates the upstream ranker would show *at that
point* of the user's sequence. Co-occurrence scores candidates from the most recent history items
directly, so every sliding-window position gets point-in-time candidates without refitting; ALS user
factors summarize the whole training sequence and would leak later items into earlier slates. It is also
the classic strong candidate generator for next-item data, cheap to fit on Spark, and its table
doubles as a collaborative item embedding for the tokenizer.

Fit (Spark): for training positions only, every ordered pair (a at i, b at j) of one user's sequence
with 0 < j - i <= max_gap adds 1/(j - i) to w(a -> b) (in integer units, `gap_unit`). P(b | a) = w(a -> b) / sum_b' w(a -> b');
the top `neighbors` b per a are kept. Scoring (numpy, on executors): the `window` most recent history
items vote with weights decay**r; items with no votes are filled in by training popularity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F


def gap_unit(max_gap: int) -> int:
    """The weight 1/gap counted in units of 1/lcm(1..max_gap), so every pair's weight is an integer: sums
    are exact whatever order an engine adds them in, and so are the ties the ranking breaks by id."""
    return math.lcm(*range(1, max_gap + 1))


def fit_cooccurrence(train_sequences: DataFrame, max_gap: int, neighbors: int) -> DataFrame:
    """train_sequences(user_id, items: array<string>) -> (item_id, neighbor_id, weight, rank)."""
    pos = train_sequences.select("user_id", F.posexplode("items").alias("i", "item_id"))
    unit = gap_unit(max_gap)
    pairs = (
        pos.alias("a")
        .join(pos.alias("b"), (F.col("a.user_id") == F.col("b.user_id")) & (F.col("b.i") > F.col("a.i")) & (F.col("b.i") <= F.col("a.i") + max_gap))
        .where(F.col("a.item_id") != F.col("b.item_id"))
        .select(F.col("a.item_id").alias("item_id"), F.col("b.item_id").alias("neighbor_id"),
                (F.lit(unit) / (F.col("b.i") - F.col("a.i"))).cast("long").alias("w"))  # unit / gap: exact
    )
    agg = pairs.groupBy("item_id", "neighbor_id").agg(F.sum("w").alias("w"))
    total = Window.partitionBy("item_id")
    ranked = agg.withColumn("weight", F.col("w") / F.sum("w").over(total)).withColumn(
        "rank", F.row_number().over(total.orderBy(F.col("w").desc(), F.col("neighbor_id")))
    )
    return ranked.where(F.col("rank") <= neighbors).select("item_id", "neighbor_id", F.col("weight").cast("float"), F.col("rank").cast("int"))


@dataclass
class NeighborIndex:
    """The co-occurrence table as dense arrays, small enough to broadcast to executors."""

    item_ids: np.ndarray  # index -> item_id (object array)
    offsets: np.ndarray  # CSR row offsets, len = n_items + 1
    neighbors: np.ndarray  # neighbor indices (int32)
    weights: np.ndarray  # float32
    popularity_order: np.ndarray  # item indices by training popularity, most popular first

    @property
    def index(self) -> dict[str, int]:
        return {item: i for i, item in enumerate(self.item_ids)}


def build_index(cooc, popularity, all_items) -> NeighborIndex:
    """The broadcastable index, vectorised (the fit's table arrives through Arrow, not as a Row per pair).

    cooc: a pandas DataFrame (item_id, neighbor_id, weight, rank), the fit's table; popularity: a pandas
    DataFrame (item_id, count) of training events; all_items: every catalog item id. Items are indexed in
    sorted id order; each item's neighbours are held by rank (then neighbour index, then weight); pairs
    naming an item outside the catalog are left out; popularity order is by count, ties by id, and items
    never seen in training come last, in id order."""
    item_ids = np.unique(np.asarray(list(all_items), dtype=object))
    n = len(item_ids)

    def positions(values) -> np.ndarray:
        """Index of each id in item_ids, -1 where it is not a catalog item."""
        v = np.asarray(values, dtype=object)
        if n == 0 or len(v) == 0:
            return np.full(len(v), -1, dtype=np.int64)
        at = np.minimum(np.searchsorted(item_ids, v), n - 1)
        return np.where(item_ids[at] == v, at, -1)

    a, b = positions(cooc["item_id"]), positions(cooc["neighbor_id"])
    rank = np.asarray(cooc["rank"], dtype=np.int64)
    w = np.asarray(cooc["weight"], dtype=np.float32)
    keep = (a >= 0) & (b >= 0)
    a, b, rank, w = a[keep], b[keep], rank[keep], w[keep]
    order = np.lexsort((w, b, rank, a))
    a, b, w = a[order], b[order], w[order]
    offsets = np.concatenate([[0], np.cumsum(np.bincount(a, minlength=n))]).astype(np.int64)
    p_idx = positions(popularity["item_id"])
    p_cnt = np.asarray(popularity["count"], dtype=np.int64)
    seen = p_idx >= 0
    p_idx, p_cnt = p_idx[seen], p_cnt[seen]
    ranked = p_idx[np.lexsort((p_idx, -p_cnt))]
    unseen = np.setdiff1d(np.arange(n), ranked)  # items never seen in training come last
    return NeighborIndex(item_ids, offsets, b.astype(np.int32), w, np.concatenate([ranked, unseen]).astype(np.int32))


def score_candidates(history: list[int], index: NeighborIndex, k: int, window: int, decay: float, exclude_history: bool):
    """Top-k (candidate indices, scores) for one history (item indices, oldest first).

    Votes come from the `window` most recent items; popularity fills the rest with score 0, so every
    slate has exactly k distinct candidates whenever the catalog has k items outside the history.
    """
    scores: dict[int, float] = {}
    for r, h in enumerate(reversed(history[-window:])):
        start, end = index.offsets[h], index.offsets[h + 1]
        wr = decay**r
        for b, w in zip(index.neighbors[start:end].tolist(), index.weights[start:end].tolist()):
            scores[b] = scores.get(b, 0.0) + wr * w
    banned = set(history) if exclude_history else set()
    ranked = sorted(((s, b) for b, s in scores.items() if b not in banned), key=lambda x: (-x[0], x[1]))
    out = [b for _, b in ranked[:k]]
    out_scores = [s for s, _ in ranked[:k]]
    if len(out) < k:
        chosen = set(out) | banned
        for b in index.popularity_order.tolist():
            if b not in chosen:
                out.append(b)
                out_scores.append(0.0)
                chosen.add(b)
                if len(out) == k:
                    break
    return out, out_scores, scores


def place_target(candidates: list[int], cand_scores: list[float], target: int, all_scores: dict, policy: str):
    """Where the target sits in the slate; (candidates, scores, position or -1).

    `filter` leaves the slate as it is (position -1 when the target is missing, and the caller drops
    the example). `insert` puts a missing target at the rank its own score earns, dropping the last.
    """
    if target in candidates:
        return candidates, cand_scores, candidates.index(target)
    if policy == "filter":
        return candidates, cand_scores, -1
    t_score = all_scores.get(target, 0.0)
    pos = sum(1 for s in cand_scores if s > t_score)
    pos = min(pos, len(candidates) - 1)
    cands = candidates[:pos] + [target] + candidates[pos:-1]
    scores = cand_scores[:pos] + [t_score] + cand_scores[pos:-1]
    return cands, scores, pos

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
`score_candidates` is the rule for one history, written plainly; `score_batch` computes the same for a
batch of examples in array operations (the ETL's scoring step ran the per-example loop at 60 s per 1M
events), and a test holds the two equal, ties and float sums included.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain

import numpy as np
import pandas as pd
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
    _lookup: pd.Index | None = field(default=None, repr=False, compare=False)

    @property
    def index(self) -> dict[str, int]:
        return {item: i for i, item in enumerate(self.item_ids)}

    def positions(self, ids) -> np.ndarray:
        """Index of each item id, -1 where it is not in the catalog (the hash table is built once per index,
        on the executor that uses it: it does not travel in the broadcast)."""
        if self._lookup is None:
            self._lookup = pd.Index(self.item_ids)
        return positions_in(self._lookup, ids)


def positions_in(lookup: pd.Index, ids) -> np.ndarray:
    """Index of each id in `lookup` (unique ids), -1 where it is absent: a hash lookup in C."""
    return lookup.get_indexer(pd.Index(ids, dtype=object)).astype(np.int64)


def build_index(cooc, popularity, all_items) -> NeighborIndex:
    """The broadcastable index, vectorised (the fit's table arrives through Arrow, not as a Row per pair).

    cooc: a pandas DataFrame (item_id, neighbor_id, weight, rank), the fit's table; popularity: a pandas
    DataFrame (item_id, count) of training events; all_items: every catalog item id. Items are indexed in
    sorted id order; each item's neighbours are held by rank (then neighbour index, then weight); pairs
    naming an item outside the catalog are left out; popularity order is by count, ties by id, and items
    never seen in training come last, in id order."""
    item_ids = np.unique(np.asarray(list(all_items), dtype=object))
    n = len(item_ids)
    lookup = pd.Index(item_ids)
    a, b = positions_in(lookup, cooc["item_id"]), positions_in(lookup, cooc["neighbor_id"])
    rank = np.asarray(cooc["rank"], dtype=np.int64)
    w = np.asarray(cooc["weight"], dtype=np.float32)
    keep = (a >= 0) & (b >= 0)
    a, b, rank, w = a[keep], b[keep], rank[keep], w[keep]
    order = np.lexsort((w, b, rank, a))
    a, b, w = a[order], b[order], w[order]
    offsets = np.concatenate([[0], np.cumsum(np.bincount(a, minlength=n))]).astype(np.int64)
    p_idx = positions_in(lookup, popularity["item_id"])
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
        fill_by_popularity(out, out_scores, k, index.popularity_order.tolist(), banned)
    return out, out_scores, scores


def fill_by_popularity(cands: list[int], scores: list[float], k: int, popular: list[int], banned: set[int]) -> None:
    """Append the most popular items the slate does not hold and `banned` does not name, with score 0,
    until it has k (in place)."""
    chosen = set(cands) | banned
    for b in popular:
        if len(cands) >= k:
            break
        if b not in chosen:
            cands.append(b)
            scores.append(0.0)
            chosen.add(b)


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


def score_batch(histories: Sequence[Sequence[str]], targets: Sequence[str], index: NeighborIndex, k: int, window: int,
                decay: float, exclude_history: bool, policy: str) -> dict[str, list]:
    """`score_candidates` and `place_target` for a batch of examples at once: item ids in, the slate
    columns out (candidates as ids, scores, target_position, target_in_topk), equal to the per-example
    functions' results. History ids outside the catalog are skipped, as the per-example path does.

    The votes of every example are laid out in (example, recency) order and summed with one bincount,
    which adds each (example, candidate)'s votes in the same order as the per-example loop, so the float
    sums and the ties they break come out the same."""
    n_ex = len(histories)
    n = len(index.item_ids)
    lens = np.fromiter((len(h) for h in histories), dtype=np.int64, count=n_ex)
    pos = index.positions(list(chain.from_iterable(histories))) if lens.sum() else np.empty(0, np.int64)
    ex_of = np.repeat(np.arange(n_ex, dtype=np.int64), lens)
    ok = pos >= 0
    h_ex, h_item = ex_of[ok], pos[ok]
    counts = np.bincount(h_ex, minlength=n_ex)
    start = np.cumsum(counts) - counts
    recency = counts[h_ex] - 1 - (np.arange(len(h_ex)) - start[h_ex])  # 0 = the latest valid item
    voting = recency < window
    v_ex, v_item, v_r = h_ex[voting], h_item[voting], recency[voting]
    order = np.lexsort((v_r, v_ex))  # each example's votes latest first, as the loop adds them
    v_ex, v_item, v_r = v_ex[order], v_item[order], v_r[order]
    lo, hi = index.offsets[v_item], index.offsets[v_item + 1]
    nb = hi - lo
    total = int(nb.sum())
    first = np.cumsum(nb) - nb
    at = np.repeat(lo - first, nb) + np.arange(total, dtype=np.int64)  # every voter's neighbour slots
    c_ex = np.repeat(v_ex, nb)
    decays = np.array([decay**r for r in range(max(window, 1))], dtype=np.float64)  # Python's pow, as the loop
    contrib = decays[np.repeat(v_r, nb)] * index.weights[at].astype(np.float64)
    keys, inverse = np.unique(c_ex * n + index.neighbors[at].astype(np.int64), return_inverse=True)
    sums = np.bincount(inverse, weights=contrib, minlength=len(keys))
    keep = ~np.isin(keys, h_ex * n + h_item) if exclude_history else np.ones(len(keys), dtype=bool)
    k_ex, k_item, k_sum = keys[keep] // n, keys[keep] % n, sums[keep]
    ranked = np.lexsort((k_item, -k_sum, k_ex))
    k_ex, k_item, k_sum = k_ex[ranked], k_item[ranked], k_sum[ranked]
    per = np.bincount(k_ex, minlength=n_ex)
    k_start = np.cumsum(per) - per
    top = (np.arange(len(k_ex)) - k_start[k_ex]) < k
    t_item, t_sum = k_item[top], k_sum[top]
    t_start = np.cumsum(np.minimum(per, k)) - np.minimum(per, k)
    t_idx = index.positions(list(targets))
    # the target's own score where it got votes (place_target's `insert` ranks it by that score)
    t_score = np.zeros(n_ex)
    if len(keys):
        t_key = np.arange(n_ex, dtype=np.int64) * n + t_idx
        found = np.minimum(np.searchsorted(keys, t_key), len(keys) - 1)
        hit = (t_idx >= 0) & (keys[found] == t_key)
        t_score[hit] = sums[found[hit]]
    popular = index.popularity_order.tolist()
    t_items, t_sums = t_item.tolist(), t_sum.tolist()
    out: dict[str, list] = {"candidates": [], "scores": [], "target_position": [], "target_in_topk": []}
    for e in range(n_ex):
        s0, m = int(t_start[e]), int(min(per[e], k))
        cands, scores = t_items[s0:s0 + m], t_sums[s0:s0 + m]
        if m < k:
            history = h_item[start[e]:start[e] + counts[e]].tolist() if exclude_history else []
            fill_by_popularity(cands, scores, k, popular, set(history))
        t = int(t_idx[e])
        in_topk = t in cands
        cands, scores, position = place_target(cands, scores, t, {t: float(t_score[e])}, policy)
        out["candidates"].append(index.item_ids[cands].tolist())
        out["scores"].append([float(x) for x in scores])
        out["target_position"].append(position)
        out["target_in_topk"].append(in_topk)
    return out

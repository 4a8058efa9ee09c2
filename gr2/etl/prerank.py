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
`score_candidates` is the rule for one history, written plainly; `score_arrays` computes the same for a
batch of examples on item indices, in array operations a row per example (about a fifth of the rule's
time, benchmarks/prerank_scoring.py), and `score_batch` wraps it for lists of ids. Tests hold them
equal, ties and float sums included.
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


def _gap_pairs(gap: int, weight: int):
    """The pairs (items[i], items[i + gap]) of each row's sequence, as structs, in one array."""
    length = F.greatest(F.size("items") - gap, F.lit(0))
    return F.zip_with(F.slice("items", 1, length), F.slice("items", gap + 1, length),
                      lambda a, b: F.struct(a.alias("item_id"), b.alias("neighbor_id"), F.lit(weight).cast("long").alias("w")))


def pair_weights(train_sequences: DataFrame, max_gap: int, by: Sequence[str] = ()) -> DataFrame:
    """train_sequences(user_id, items: array<string>, *by) -> (*by, item_id, neighbor_id, w): the integer weight
    of every ordered pair of distinct items at most `max_gap` apart, summed per `by` group.

    Each sequence pairs its own items in array functions (a shifted copy of the array per gap), so pairing
    moves no row: a self-join on user_id shuffled every position twice and matched every two positions of a
    user before keeping those within `max_gap`. Weights summed per `by` (a user's fold) add up: the fit of
    any union of groups is a sum over this table, so out-of-fold fits need no second pass over sequences."""
    unit = gap_unit(max_gap)
    per_gap = [_gap_pairs(g, unit // g) for g in range(1, max_gap + 1)]
    pairs = train_sequences.select(*by, F.explode(F.flatten(F.array(*per_gap))).alias("p")).select(*by, "p.*")
    return (pairs.where(F.col("item_id") != F.col("neighbor_id"))
            .groupBy(*by, "item_id", "neighbor_id").agg(F.sum("w").alias("w")))


def rank_neighbors(weights: DataFrame, neighbors: int) -> DataFrame:
    """(item_id, neighbor_id, w) -> (item_id, neighbor_id, weight, rank): P(b | a) and the top `neighbors` b per a
    (ties by neighbour id)."""
    total = Window.partitionBy("item_id")
    ranked = weights.withColumn("weight", F.col("w") / F.sum("w").over(total)).withColumn(
        "rank", F.row_number().over(total.orderBy(F.col("w").desc(), F.col("neighbor_id")))
    )
    return ranked.where(F.col("rank") <= neighbors).select("item_id", "neighbor_id", F.col("weight").cast("float"), F.col("rank").cast("int"))


def fit_cooccurrence(train_sequences: DataFrame, max_gap: int, neighbors: int) -> DataFrame:
    """train_sequences(user_id, items: array<string>) -> (item_id, neighbor_id, weight, rank)."""
    return rank_neighbors(pair_weights(train_sequences, max_gap), neighbors)


@dataclass
class NeighborIndex:
    """The co-occurrence table as dense arrays, small enough to broadcast to executors."""

    item_ids: np.ndarray  # index -> item_id (object array)
    offsets: np.ndarray  # CSR row offsets, len = n_items + 1
    neighbors: np.ndarray  # neighbor indices (int32)
    weights: np.ndarray  # float32
    popularity_order: np.ndarray  # item indices by training popularity, most popular first
    _lookup: pd.Index | None = field(default=None, repr=False, compare=False)
    _arrow: object = field(default=None, repr=False, compare=False)  # item_ids as an Arrow array

    @property
    def index(self) -> dict[str, int]:
        return {item: i for i, item in enumerate(self.item_ids)}

    def positions(self, ids) -> np.ndarray:
        """Index of each item id, -1 where it is not in the catalog (the hash table is built once per index,
        on the executor that uses it: it does not travel in the broadcast)."""
        if self._lookup is None:
            self._lookup = pd.Index(self.item_ids)
        return positions_in(self._lookup, ids)

    def arrow_ids(self):
        """item_ids as an Arrow string array (built once, on the executor that uses it)."""
        if self._arrow is None:
            import pyarrow as pa

            self._arrow = pa.array(self.item_ids.tolist(), type=pa.string())
        return self._arrow

    def arrow_positions(self, ids) -> np.ndarray:
        """`positions` of an Arrow string array, looked up in Arrow (no Python string per id)."""
        import pyarrow.compute as pc

        return pc.index_in(ids, value_set=self.arrow_ids()).fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)


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
    (`score_arrays` does the work on item indices; the ETL's Spark step calls it on Arrow columns.)"""
    lens = np.fromiter((len(h) for h in histories), dtype=np.int64, count=len(histories))
    pos = index.positions(list(chain.from_iterable(histories))) if lens.sum() else np.empty(0, np.int64)
    s = score_arrays(lens, pos, index.positions(list(targets)), index, k, window, decay, exclude_history, policy)
    names = index.item_ids[s.candidates]
    if len(s.candidates) == k * len(lens):  # every slate full: one reshape
        cands, scores = names.reshape(-1, k).tolist(), s.scores.reshape(-1, k).tolist()
    else:
        cands = [names[lo:hi].tolist() for lo, hi in zip(s.offsets[:-1], s.offsets[1:])]
        scores = [s.scores[lo:hi].tolist() for lo, hi in zip(s.offsets[:-1], s.offsets[1:])]
    return {"candidates": cands, "scores": scores, "target_position": s.target_position.tolist(),
            "target_in_topk": s.target_in_topk.tolist()}


@dataclass
class Scored:
    """A batch's slates as arrays: row i's candidates (item indices, best first) and scores are
    candidates[offsets[i]:offsets[i + 1]] (k of them unless the catalog has fewer outside the history)."""

    candidates: np.ndarray
    scores: np.ndarray
    offsets: np.ndarray
    target_position: np.ndarray
    target_in_topk: np.ndarray

    def arrow_columns(self, index: NeighborIndex) -> dict:
        """The slate columns as Arrow arrays (candidates as ids and scores as lists, built in Arrow's C++: no
        Python object per candidate), as the ETL's Spark step and the pandas baseline write them."""
        import pyarrow as pa

        offsets = pa.array(self.offsets, type=pa.int32())
        # -1 (an inserted target outside the catalog: ingest quarantines those) reads as numpy reads it
        at = pa.array(np.where(self.candidates < 0, self.candidates + len(index.item_ids), self.candidates))
        return {"candidates": pa.ListArray.from_arrays(offsets, index.arrow_ids().take(at)),
                "scores": pa.ListArray.from_arrays(offsets, pa.array(self.scores, type=pa.float32())),
                "target_position": pa.array(self.target_position, type=pa.int32()),
                "target_in_topk": pa.array(self.target_in_topk, type=pa.bool_())}


def score_arrays(lens: np.ndarray, pos: np.ndarray, t_idx: np.ndarray, index: NeighborIndex, k: int, window: int,
                 decay: float, exclude_history: bool, policy: str) -> Scored:
    """`score_batch` on item indices: `lens` history lengths, `pos` the histories' items one after another
    (oldest first; -1 for an id outside the catalog, skipped), `t_idx` the targets (-1 likewise).

    One row per example, holding every vote its voters cast (the r-th most recent voter's neighbours in
    columns r * width ...). Each row is sorted by (candidate, column), so a candidate's votes sit side by
    side in recency order and are summed in that order, as the per-example loop adds them: the same
    float sums, so the same ties. The best k of a row are those above its k-th score plus that score's
    ties by candidate (a partition, not a sort), and the k are then sorted. Per-row work on ~300 values
    replaced batch-wide sorts of every (example, candidate) key, which were most of the ETL's pre-rank
    step (benchmarks/prerank_scoring.py times both). A candidate gets at most one vote per voter (an
    item's neighbours are distinct), so its votes are at most `window` columns side by side."""
    n_ex, n = len(lens), len(index.item_ids)
    if n_ex == 0:
        return Scored(np.empty(0, np.int64), np.empty(0), np.zeros(1, np.int64), np.empty(0, np.int64), np.empty(0, bool))
    ex_of = np.repeat(np.arange(n_ex, dtype=np.int64), lens)
    ok = pos >= 0
    h_ex, h_item = ex_of[ok], pos[ok]
    counts = np.bincount(h_ex, minlength=n_ex)
    start = np.cumsum(counts) - counts
    recency = counts[h_ex] - 1 - (np.arange(len(h_ex)) - start[h_ex])  # 0 = the latest valid item
    voting = recency < window
    voters = np.full((n_ex, window), -1, dtype=np.int64)
    voters[h_ex[voting], recency[voting]] = h_item[voting]
    has = voters >= 0
    lo = np.where(has, index.offsets[np.maximum(voters, 0)], 0)
    cnt = np.where(has, index.offsets[np.maximum(voters, 0) + 1] - lo, 0)
    width = int(cnt.max())
    live = np.arange(width) < cnt[:, :, None]
    at = np.where(live, lo[:, :, None] + np.arange(width), 0)
    m = window * width
    cand = np.where(live, index.neighbors[at] if len(index.neighbors) else 0, n).reshape(n_ex, m).astype(np.int64)
    decays = np.array([decay**r for r in range(window)], dtype=np.float64)  # Python's pow, as the loop
    contrib = (decays[:, None] * (index.weights[at] if len(index.weights) else np.zeros(at.shape, np.float32)
                                  ).astype(np.float64)).reshape(n_ex, m)
    key = cand * max(m, 1) + np.arange(m)  # (candidate, column): unique, so any sort is the stable one
    key.sort(axis=1)
    ids, col = key // max(m, 1), key % max(m, 1)
    vals = np.take_along_axis(contrib, col, axis=1)
    sums, last = _run_sums(ids, vals, window)
    flat = (np.arange(n_ex, dtype=np.int64)[:, None] * (n + 1) + ids).ravel()  # sorted: rows, then candidates
    valid = last & (ids < n)
    if exclude_history:
        banned = _lookup_last(flat, h_ex * (n + 1) + h_item)
        hit = np.zeros(flat.size, dtype=bool)
        hit[banned[banned >= 0]] = True
        valid &= ~hit.reshape(n_ex, m)
    t_at = _lookup_last(flat, np.arange(n_ex, dtype=np.int64) * (n + 1) + t_idx)
    t_score, voted = np.zeros(n_ex), (t_idx >= 0) & (t_at >= 0)
    t_score[voted] = sums.ravel()[t_at[voted]]  # the target's own sum where it got votes, else 0
    score = np.where(valid, sums, -np.inf)
    r_sel, c_sel = np.nonzero(_best(score, valid, k))  # row by row, each row's picks in candidate order
    s_sel, i_sel = score[r_sel, c_sel], ids[r_sel, c_sel]
    per = np.bincount(r_sel, minlength=n_ex)
    full = per == k
    picked = full[r_sel]
    f_ids, f_scores = i_sel[picked].reshape(-1, k), s_sel[picked].reshape(-1, k)
    o = np.argsort(-f_scores, axis=1, kind="stable")  # best first; ties keep candidate order
    cands = np.zeros((n_ex, k), dtype=np.int64)
    scores = np.zeros((n_ex, k))
    cands[full], scores[full] = np.take_along_axis(f_ids, o, axis=1), np.take_along_axis(f_scores, o, axis=1)
    cands, scores, position, in_topk = _place(cands, scores, t_idx, t_score, policy)
    lengths = np.full(n_ex, k, dtype=np.int64)
    fixed = {}
    short = np.flatnonzero(~full)  # fewer than k voted candidates: popularity fills them, one at a time
    if len(short):
        popular = index.popularity_order.tolist()
        first = np.cumsum(per) - per
        i_list, s_list = i_sel.tolist(), s_sel.tolist()
        for e in short.tolist():
            ranked = sorted(zip(s_list[first[e]:first[e] + per[e]], i_list[first[e]:first[e] + per[e]]),
                            key=lambda x: (-x[0], x[1]))
            c, sc = [i for _, i in ranked], [x for x, _ in ranked]
            history = h_item[start[e]:start[e] + counts[e]].tolist() if exclude_history else []
            fill_by_popularity(c, sc, k, popular, set(history))
            t = int(t_idx[e])
            in_topk[e] = t in c
            c, sc, position[e] = place_target(c, sc, t, {t: float(t_score[e])}, policy)
            fixed[e], lengths[e] = (c, sc), len(c)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    if not fixed:
        return Scored(cands.ravel(), scores.ravel(), offsets, position, in_topk)
    flat_c, flat_s = np.empty(offsets[-1], dtype=np.int64), np.empty(offsets[-1])
    rows = np.flatnonzero(full)
    at = (offsets[rows][:, None] + np.arange(k)).ravel()
    flat_c[at], flat_s[at] = cands[rows].ravel(), scores[rows].ravel()
    for e, (c, sc) in fixed.items():
        flat_c[offsets[e]:offsets[e + 1]], flat_s[offsets[e]:offsets[e + 1]] = c, sc
    return Scored(flat_c, flat_s, offsets, position, in_topk)


def _run_sums(ids: np.ndarray, vals: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """(sums, last) of rows sorted by candidate: a candidate's votes (at most `window`, side by side)
    summed oldest term first, ((v0 + v1) + v2) as the per-example loop adds them, and whether a column
    holds its candidate's whole sum (the last of its votes)."""
    n_ex, m = ids.shape
    same = ids[:, 1:] == ids[:, :-1]  # a vote for the candidate of the column before
    r, c = np.nonzero(same)
    follow = r * m + c + 1  # (flat) the columns that continue a run
    sums, v = vals.ravel().copy(), vals.ravel()
    for _ in range(window - 1):
        sums[follow] = sums[follow - 1] + v[follow]  # the right side is read before any is written
    last = np.ones(ids.shape, dtype=bool)
    last[:, :-1] = ~same
    return sums.reshape(n_ex, m), last


def _best(score: np.ndarray, valid: np.ndarray, k: int) -> np.ndarray:
    """Per row, the k best columns by (-score, column): every column above the row's k-th score, then
    that score's ties in column order (columns are in candidate order); all valid ones where fewer."""
    m = score.shape[1]
    kk = min(k, m)
    if not kk:
        return np.zeros(score.shape, dtype=bool)
    kth = np.partition(score, m - kk, axis=1)[:, m - kk][:, None]
    above = score > kth
    tie = (score == kth) & valid
    return above | (tie & (np.cumsum(tie, axis=1) <= kk - above.sum(axis=1, keepdims=True)))


def _lookup_last(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """For each key, the position of its last occurrence in `sorted_keys`, -1 where it is absent."""
    if not len(sorted_keys):  # a batch whose voters have no neighbours at all
        return np.full(len(keys), -1, dtype=np.int64)
    at = np.searchsorted(sorted_keys, keys, side="right") - 1
    hit = (at >= 0) & (sorted_keys[np.maximum(at, 0)] == keys)
    return np.where(hit, at, -1)


def _place(cands: np.ndarray, scores: np.ndarray, target: np.ndarray, t_score: np.ndarray, policy: str):
    """`place_target` for full slates, row by row in array operations: (candidates, scores, position,
    target_in_topk)."""
    k = cands.shape[1]
    match = cands == target[:, None]
    in_topk = match.any(axis=1)
    position = np.where(in_topk, match.argmax(axis=1), -1)
    if policy == "filter":
        return cands, scores, position, in_topk
    miss = ~in_topk
    at = np.minimum((scores > t_score[:, None]).sum(axis=1), k - 1)
    j = np.arange(k)
    shifted = np.concatenate([cands[:, :1], cands[:, :-1]], axis=1)
    s_shifted = np.concatenate([scores[:, :1], scores[:, :-1]], axis=1)
    put = miss[:, None] & (j == at[:, None])
    move = miss[:, None] & (j > at[:, None])
    cands = np.where(put, target[:, None], np.where(move, shifted, cands))
    scores = np.where(put, t_score[:, None], np.where(move, s_shifted, scores))
    return cands, scores, np.where(miss, at, position), in_topk

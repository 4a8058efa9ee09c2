"""The pre-ranker's scoring and target placement, on hand-made neighbour tables (no Spark)."""

import numpy as np
import pandas as pd
import pytest

from gr2.etl.prerank import build_index, place_target, score_candidates


def frames(rows, pop):
    return (pd.DataFrame(rows, columns=["item_id", "neighbor_id", "weight", "rank"]),
            pd.DataFrame(pop, columns=["item_id", "count"]))


@pytest.fixture()
def index():
    # a -> b (0.7), a -> c (0.3); b -> c (1.0); popularity: d > c > b > a > e
    rows = [("a", "b", 0.7, 1), ("a", "c", 0.3, 2), ("b", "c", 1.0, 1)]
    pop = [("d", 9), ("c", 5), ("b", 4), ("a", 2)]
    return build_index(*frames(rows, pop), ["a", "b", "c", "d", "e"])


def reference_index(rows, pop, all_items):
    """build_index as a loop over tuples (the specification the vectorised one must equal)."""
    item_ids = sorted(set(all_items))
    idx = {item: i for i, item in enumerate(item_ids)}
    kept = sorted((idx[a], r, idx[b], np.float32(w)) for a, b, w, r in rows if a in idx and b in idx)
    offsets = [0] * (len(item_ids) + 1)
    for a, _, _, _ in kept:
        offsets[a + 1] += 1
    ranked = [idx[item] for _, item in sorted((-c, item) for item, c in pop if item in idx)]
    ranked += [i for i in range(len(item_ids)) if i not in set(ranked)]
    return item_ids, np.cumsum(offsets).tolist(), [b for _, _, b, _ in kept], [w for _, _, _, w in kept], ranked


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_build_index_equals_the_loop_over_tuples(seed):
    """Random tables with pairs naming unknown items, tied weights and tied popularity counts."""
    rng = np.random.default_rng(seed)
    catalog = [f"i{k:03d}" for k in rng.choice(500, 60, replace=False)]
    names = catalog + ["ghost1", "ghost2"]
    rows = []
    for a in rng.choice(names, 40, replace=False):
        for r, b in enumerate(rng.choice([n for n in names if n != a], rng.integers(1, 6), replace=False), start=1):
            rows.append((str(a), str(b), float(rng.choice([0.5, 0.25, 0.125])), r))
    pop = [(str(i), int(rng.integers(1, 4))) for i in rng.choice(names, 30, replace=False)]
    got = build_index(*frames(rows, pop), catalog)
    want = reference_index(rows, pop, catalog)
    assert got.item_ids.tolist() == want[0] and got.offsets.tolist() == want[1]
    assert got.neighbors.tolist() == want[2] and got.weights.tolist() == want[3]
    assert got.popularity_order.tolist() == want[4]


def test_build_index_of_empty_tables():
    got = build_index(*frames([], []), ["b", "a"])
    assert got.item_ids.tolist() == ["a", "b"] and got.offsets.tolist() == [0, 0, 0]
    assert got.neighbors.tolist() == [] and got.popularity_order.tolist() == [0, 1]


def ids(index, idx):
    return [index.item_ids[i] for i in idx]


def test_recent_items_vote_with_decay(index):
    ix = index.index
    cands, scores, _ = score_candidates([ix["a"], ix["b"]], index, k=3, window=2, decay=0.5, exclude_history=True)
    # c: 1.0 (from b, r=0) + 0.5*0.3 (from a, r=1); then popularity fill: d first
    assert ids(index, cands) == ["c", "d", "e"]
    assert scores[0] == pytest.approx(1.15) and scores[1:] == [0.0, 0.0]


def test_history_excluded_or_kept(index):
    ix = index.index
    kept, _, _ = score_candidates([ix["a"]], index, k=2, window=1, decay=1.0, exclude_history=False)
    assert ids(index, kept) == ["b", "c"]
    cands, _, _ = score_candidates([ix["b"], ix["a"]], index, k=2, window=1, decay=1.0, exclude_history=True)
    assert "b" not in ids(index, cands) and len(set(cands)) == 2


def test_window_limits_voters(index):
    ix = index.index
    cands, _, _ = score_candidates([ix["a"], ix["e"]], index, k=1, window=1, decay=1.0, exclude_history=True)
    assert ids(index, cands) == ["d"]  # e has no neighbours; a is outside the window


@pytest.mark.parametrize(
    "cands, scores, target, all_scores, policy, want_cands, want_pos",
    [
        ([1, 2, 3], [3.0, 2.0, 1.0], 2, {}, "filter", [1, 2, 3], 1),
        ([1, 2, 3], [3.0, 2.0, 1.0], 9, {}, "filter", [1, 2, 3], -1),
        ([1, 2, 3], [3.0, 2.0, 1.0], 9, {9: 2.5}, "insert", [1, 9, 2], 1),
        ([1, 2, 3], [3.0, 2.0, 1.0], 9, {}, "insert", [1, 2, 9], 2),
        ([1, 2, 3], [3.0, 2.0, 1.0], 9, {9: 5.0}, "insert", [9, 1, 2], 0),
    ],
)
def test_place_target(cands, scores, target, all_scores, policy, want_cands, want_pos):
    got_cands, got_scores, pos = place_target(cands, scores, target, all_scores, policy)
    assert got_cands == want_cands and pos == want_pos and len(got_scores) == len(got_cands)


def loop_batch(histories, targets, index, k, window, decay, exclude, policy):
    """score_candidates + place_target per example, as the ETL ran them before score_batch."""
    lookup = index.index
    out = {"candidates": [], "scores": [], "target_position": [], "target_in_topk": []}
    for history, target in zip(histories, targets):
        h = [lookup[x] for x in history if x in lookup]
        t = lookup.get(target, -1)
        cands, scores, all_scores = score_candidates(h, index, k, window, decay, exclude)
        in_topk = t in cands
        cands, scores, position = place_target(cands, scores, t, all_scores, policy)
        out["candidates"].append([index.item_ids[c] for c in cands])
        out["scores"].append([float(s) for s in scores])
        out["target_position"].append(position)
        out["target_in_topk"].append(in_topk)
    return out


@pytest.mark.parametrize("seed, k, window, decay, exclude, policy", [
    (0, 5, 3, 0.8, True, "filter"),
    (1, 5, 3, 0.7, True, "insert"),
    (2, 8, 1, 1.0, False, "filter"),
    (3, 3, 5, 0.9, False, "insert"),
    (4, 10, 2, 0.5, True, "insert"),  # slates larger than most neighbour lists: popularity fills them
])
def test_score_batch_equals_the_per_example_rule(seed, k, window, decay, exclude, policy):
    """Random neighbour tables with tied and non-dyadic weights, histories with repeats, items outside the
    catalog and empty histories: the batch path gives the same candidates, float scores, positions and flags."""
    from gr2.etl.prerank import score_batch

    rng = np.random.default_rng(seed)
    catalog = [f"i{j:03d}" for j in range(40)]
    rows = []
    for a in catalog:
        nbrs = rng.choice([c for c in catalog if c != a], rng.integers(0, 7), replace=False)
        for r, b in enumerate(nbrs, start=1):
            rows.append((a, str(b), float(rng.choice([0.1, 0.2, 1 / 3, 0.3, 0.7])), r))
    pop = [(c, int(rng.integers(1, 5))) for c in rng.choice(catalog, 25, replace=False)]
    index = build_index(*frames(rows, pop), catalog)
    names = catalog + ["ghost"]
    histories = [list(rng.choice(names, rng.integers(0, 8))) for _ in range(300)] + [[]]
    targets = [str(rng.choice(catalog)) for _ in histories]
    got = score_batch(histories, targets, index, k, window, decay, exclude, policy)
    want = loop_batch(histories, targets, index, k, window, decay, exclude, policy)
    for col in want:
        assert got[col] == want[col], col
    assert score_batch([], [], index, k, window, decay, exclude, policy) == {c: [] for c in want}


@pytest.mark.parametrize("policy, exclude", [("insert", True), ("filter", False)])
def test_score_batch_equals_the_rule_on_the_scoring_benchmarks_index(policy, exclude):
    """The index benchmarks/prerank_scoring.py times (every item a full neighbour list of popular items,
    few weight values: long runs of tied scores at the k-th place), small: the same slates as the rule."""
    from script_modules import load_script

    from gr2.etl.prerank import score_batch

    bench = load_script("benchmarks/prerank_scoring.py")
    index, histories, targets = bench.synthetic(items=300, neighbors=30, examples=400)
    got = score_batch(histories, targets, index, 10, 3, 0.6, exclude, policy)
    assert got == loop_batch(histories, targets, index, 10, 3, 0.6, exclude, policy)


@pytest.mark.parametrize("policy", ["insert", "filter"])
def test_score_batch_of_a_batch_without_one_vote_fills_every_slate_by_popularity(policy):
    """No voter of the batch has a neighbour (a new catalog, or a batch of cold histories): every slate is
    popularity alone, as the rule fills it."""
    from gr2.etl.prerank import score_batch

    catalog = [f"i{j}" for j in range(15)]
    index = build_index(*frames([], [(c, 15 - j) for j, c in enumerate(catalog)]), catalog)
    histories = [["i1", "i2"], [], ["i7", "ghost"], ["i0"] * 3]
    targets = ["i3", "i0", "i14", "i9"]
    got = score_batch(histories, targets, index, 5, 3, 0.6, True, policy)
    assert got == loop_batch(histories, targets, index, 5, 3, 0.6, True, policy)
    assert got["candidates"][1] == ["i0", "i1", "i2", "i3", "i4"]

"""The pre-ranker's scoring and target placement, on hand-made neighbour tables (no Spark)."""

import pytest

from gr2.etl.prerank import build_index, place_target, score_candidates


@pytest.fixture()
def index():
    # a -> b (0.7), a -> c (0.3); b -> c (1.0); popularity: d > c > b > a > e
    rows = [("a", "b", 0.7, 1), ("a", "c", 0.3, 2), ("b", "c", 1.0, 1)]
    pop = [("d", 9), ("c", 5), ("b", 4), ("a", 2)]
    return build_index(rows, pop, ["a", "b", "c", "d", "e"])


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

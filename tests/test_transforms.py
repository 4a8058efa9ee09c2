"""Ingest and build transforms on a few hand-made rows (real local Spark, no I/O)."""

from datetime import date, datetime

import pytest

from gr2.config import EtlConfig
from gr2.etl import gold, transforms
from gr2.etl.schema import PARSED_INTERACTION, PARSED_ITEM
from gr2.platform.keys import INTERACTION_KEY

T0 = datetime(2024, 5, 1, 12, 0, 0)
LOW, HIGH = datetime(1990, 1, 1), datetime(2030, 1, 1)


def rec(line, user="u1", item="i1", ts=T0, event="click", reason=None, raw=None):
    return ("events", "f.jsonl", line, raw or f"r{line}", user, item, ts, event, None, None, reason)


def reasons(spark, rows, known=("i1", "i2")):
    df = spark.createDataFrame(rows, PARSED_INTERACTION)
    checked = transforms.check_interactions(df, LOW, HIGH)
    checked = transforms.mark_unknown_items(checked, spark.createDataFrame([(k,) for k in known], "item_id string"))
    checked = transforms.mark_duplicates(checked, INTERACTION_KEY, "duplicate event")
    return {r.line: r.reason for r in checked.collect()}


def test_interaction_rules_each_name_their_reason(spark):
    got = reasons(
        spark,
        [
            rec(1),
            rec(2, reason="malformed JSON: x"),
            rec(3, user=" "),
            rec(4, item=None),
            rec(5, ts=None),
            rec(6, ts=datetime(1971, 1, 1)),
            rec(7, ts=datetime(2199, 1, 1)),
            rec(8, item="ghost"),
            rec(9),  # same key as line 1
            rec(10, item="i2"),
            # the bytes caf\xe9 / caf\xe8 read as UTF-8: both users would be "caf\ufffd", one user
            rec(11, user="caf\ufffd", item="i2", raw='{"user_id": "caf\ufffd"}'),
            rec(12, user="caf\ufffd", item="i2", raw='{"user_id": "caf\ufffd", "x": 1}'),
        ],
    )
    assert got[1] is None and got[10] is None
    assert got[11] == got[12] == transforms.INVALID_TEXT, "quarantined as bad bytes, not merged into one user"
    assert got[2] == "malformed JSON: x"
    assert got[3] == "missing or empty user_id"
    assert got[4] == "missing or empty item_id"
    assert got[5] == "missing timestamp"
    assert got[6].startswith("absurd timestamp (before 1990-01-01)")
    assert got[7].startswith("absurd timestamp (too far in the future): "), "no date: the same line gives the same reason every day"
    assert got[8] == "event for an item with no metadata"
    assert got[9] == "duplicate event"


def test_items_last_record_wins_and_duplicates_are_quarantined(spark):
    rows = [
        ("x", "f", 1, "r1", "a", "Old", ["C"], None, None),
        ("x", "f", 2, "r2", "a", "New", ["C", "D"], "B", None),
        ("x", "f", 3, "r3", "", "No id", None, None, None),
        ("x", "f", 4, "r4", "caf\ufffd", "Bad id bytes", None, None, None),
        ("x", "f", 5, "r5 Cr\ufffdme", "b", "Cr\ufffdme", None, None, None),  # a bad byte in a title only: kept
    ]
    checked = transforms.check_items(spark.createDataFrame(rows, PARSED_ITEM))
    by_line = {r.line: r.reason for r in checked.collect()}
    assert by_line == {1: "duplicate item record (a later one wins)", 2: None, 3: "missing or empty item_id",
                       4: transforms.INVALID_TEXT, 5: None}
    silver = {r.item_id: r for r in transforms.to_silver_items(checked, date(2024, 5, 1)).collect()}
    assert sorted(silver) == ["a", "b"]
    assert silver["a"].title == "New" and silver["a"].text == "New | C > D | B"


def seqs(spark, rows):
    df = spark.createDataFrame(rows, "user_id string, item_id string, ts timestamp, event string, slate_id string")
    return gold.build_sequences(df)


def test_sequences_are_time_ordered_and_hold_positive_events_only(spark):
    from gr2.etl.schema import POSITIVE_EVENTS

    assert set(POSITIVE_EVENTS) == {"purchase", "review", "rating", "click", "view", "add_to_cart"}
    t = lambda m: datetime(2024, 1, 1, 0, m)  # noqa: E731
    s = seqs(spark, [("u", "b", t(2), "click", None), ("u", "a", t(1), "view", None), ("u", "z", t(3), "impression", "s1"),
                     ("u", "y", t(4), "dislike", None), ("u", "c", t(5), "add_to_cart", None),
                     ("u", "x", t(6), "remove_from_cart", None), ("v", "a", t(1), "dislike", None)])
    (row,) = s.collect()
    assert row.items == ["a", "b", "c"] and row.n_items == 3, "impressions and non-positive events are no engagement"


def test_leave_one_out_and_time_splits(spark):
    t = lambda d: datetime(2024, 1, d)  # noqa: E731
    rows = [("u1", f"i{d}", t(d), "click", None) for d in range(1, 6)] + [("u2", "i1", t(1), "click", None), ("u2", "i2", t(9), "click", None)]
    loo = {r.user_id: r.split for r in gold.label_splits(seqs(spark, rows), "loo").collect()}
    assert loo["u1"] == ["train", "train", "train", "valid", "test"]
    assert loo["u2"] == ["train", "train"]  # too short to hold out two items
    timed = {r.user_id: r.split for r in gold.label_splits(seqs(spark, rows), "time", (t(4), t(5))).collect()}
    assert timed["u1"] == ["train", "train", "train", "valid", "test"]
    assert timed["u2"] == ["train", "test"]


def test_examples_never_train_on_held_out_targets(spark):
    t = lambda d: datetime(2024, 1, d)  # noqa: E731
    rows = [("u1", f"i{d}", t(d), "click", None) for d in range(1, 9)]
    labelled = gold.label_splits(seqs(spark, rows), "loo")
    cfg = EtlConfig(history_len=3, train_slates_per_user=2, min_history=1)
    ex = {r.slate_id: r for r in gold.examples(labelled, cfg).collect()}
    assert set(ex) == {"u1:4", "u1:5", "u1:6", "u1:7"}
    assert ex["u1:7"].split == "test" and ex["u1:7"].target == "i8" and ex["u1:7"].history == ["i5", "i6", "i7"]
    assert ex["u1:6"].split == "valid" and ex["u1:6"].target == "i7"
    train_targets = {e.target for e in ex.values() if e.split == "train"}
    assert train_targets == {"i5", "i6"}
    # the pre-ranker learns only from training positions
    (prefix,) = gold.train_prefixes(labelled).collect()
    assert prefix.items == [f"i{d}" for d in range(1, 7)]


def test_cooccurrence_counts_gaps_and_normalizes(spark):
    from gr2.etl.prerank import fit_cooccurrence

    train = spark.createDataFrame([("u1", ["a", "b", "c"]), ("u2", ["a", "b"])], "user_id string, items array<string>")
    rows = {(r.item_id, r.neighbor_id): r.weight for r in fit_cooccurrence(train, max_gap=2, neighbors=5).collect()}
    # a->b: 1 + 1, a->c: 1/2 ; normalized over a's row
    assert rows[("a", "b")] == pytest.approx(2 / 2.5) and rows[("a", "c")] == pytest.approx(0.5 / 2.5)
    assert rows[("b", "c")] == pytest.approx(1.0) and ("c", "a") not in rows


def test_pair_weights_match_the_rule_and_add_up_over_folds(spark):
    """Pairs come from each sequence's own array (no join): every ordered pair of distinct items at most
    max_gap apart, weighted unit/gap, for short, empty and repeating sequences; summed per fold, the
    folds add up to the whole fit."""
    from pyspark.sql import functions as F

    from gr2.etl.prerank import gap_unit, pair_weights

    seqs = [("u1", ["a", "b", "a", "c", "d"], 0), ("u2", ["a"], 1), ("u3", [], 0), ("u4", ["b", "b", "c"], 1),
            ("u5", ["d", "a", "b", "c", "a", "b"], 1)]
    train = spark.createDataFrame(seqs, "user_id string, items array<string>, fold int")
    expected: dict = {}
    for _, items, fold in seqs:
        for i, a in enumerate(items):
            for g in range(1, 4):
                if i + g < len(items) and items[i + g] != a:
                    key = (fold, a, items[i + g])
                    expected[key] = expected.get(key, 0) + gap_unit(3) // g
    per_fold = {(r.fold, r.item_id, r.neighbor_id): r.w for r in pair_weights(train, 3, ["fold"]).collect()}
    assert per_fold == expected
    total = {(r.item_id, r.neighbor_id): r.w for r in pair_weights(train, 3).collect()}
    summed = (pair_weights(train, 3, ["fold"]).groupBy("item_id", "neighbor_id").agg(F.sum("w").alias("w")).collect())
    assert total == {(r.item_id, r.neighbor_id): r.w for r in summed} and len(total) > 5


def test_every_logged_slate_is_published_or_quarantined_with_its_reason(spark):
    t = lambda m: datetime(2024, 1, 2, 0, m)  # noqa: E731
    rows = []

    def slate(sid, user, items, click=None, positions=None, shown=True, click_user=None):
        for p, i in zip(positions or range(len(items)), items):
            if shown:
                rows.append((user, i, t(1), "impression", sid, p))
        if click:
            rows.append((click_user or user, click, t(2), "click", sid, None))

    slate("ok", "u1", ["a", "b", "c"], click="b")
    slate("unclicked", "u1", ["a", "b", "c"])
    slate("click-only", "u1", ["a", "b", "c"], click="a", shown=False)
    slate("shared", "u1", ["a", "b", "c"], click="c", click_user="u2")
    slate("dup-pos", "u1", ["a", "b", "c"], click="a", positions=[0, 1, 1])
    slate("short", "u1", ["a", "b"], click="a")
    slate("disliked", "u1", ["a", "b", "c"])
    rows.append(("u1", "b", t(2), "dislike", "disliked", None))  # not a positive event: not a click
    interactions = spark.createDataFrame(
        rows, "user_id string, item_id string, ts timestamp, event string, slate_id string, position int")
    sequences = spark.createDataFrame([("u1", ["x", "y"], [datetime(2024, 1, 1), datetime(2024, 1, 1, 1)])],
                                      "user_id string, items array<string>, ts array<timestamp>")
    good, bad = gold.logged_slates(interactions, sequences, EtlConfig(k=3))
    assert [(r.slate_id, r.candidates, r.target, r.history) for r in good.collect()] == [("ok", ["a", "b", "c"], "b", ["x", "y"])]
    assert {r.slate_id: r.reason for r in bad.collect()} == {
        "unclicked": "slate without the clicked item", "click-only": "slate has clicks but no impressions",
        "shared": "slate id logged for more than one user: 2", "dup-pos": "slate lists a position twice",
        "short": "slate has a size other than K=3: 2", "disliked": "slate without the clicked item"}
    short, _ = gold.logged_slates(interactions, sequences, EtlConfig(k=3, history_len=2))
    assert [r.history for r in short.collect()] == [["x", "y"]]
    one, _ = gold.logged_slates(interactions, sequences, EtlConfig(k=3, history_len=1))
    assert [r.history for r in one.collect()] == [["y"]], "the most recent item"

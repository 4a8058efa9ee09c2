"""Pure transforms of the build stage: silver interactions -> sequences, splits, examples, slates."""

from __future__ import annotations

from datetime import datetime

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from gr2.config import EtlConfig
from gr2.etl import prerank
from gr2.etl.schema import IMPRESSION_EVENT, POSITIVE_EVENTS


def is_positive(event: F.Column) -> F.Column:
    """The user engaged with the item (POSITIVE_EVENTS: purchase, click, view ...). Impressions are not
    engagement, and neither is an event name outside the list (a "dislike", a "remove_from_cart")."""
    return event.isin(*POSITIVE_EVENTS)


def build_sequences(interactions: DataFrame) -> DataFrame:
    """One row per user: the items of positive events (`is_positive`), in time order (ties broken by
    item_id). Impressions and other event names stay in silver.interactions, out of the sequences."""
    events = interactions.where(is_positive(F.col("event")))
    grouped = events.groupBy("user_id").agg(F.array_sort(F.collect_list(F.struct("ts", "item_id"))).alias("e"))
    return grouped.select(
        "user_id", F.col("e.item_id").alias("items"), F.col("e.ts").alias("ts"), F.size("e").alias("n_items")
    )


def time_cuts(interactions: DataFrame, split) -> tuple[datetime, datetime]:
    """The (valid_start, test_start) of the time protocol: explicit dates, or quantiles of event time."""
    if split.valid_start and split.test_start:
        return datetime.fromisoformat(split.valid_start), datetime.fromisoformat(split.test_start)
    secs = interactions.select(F.col("ts").cast("double").alias("s"))
    qv, qt = secs.approxQuantile("s", [split.valid_quantile, split.test_quantile], 0.0001)
    to_dt = lambda s: datetime.utcfromtimestamp(s)  # noqa: E731
    valid = datetime.fromisoformat(split.valid_start) if split.valid_start else to_dt(qv)
    test = datetime.fromisoformat(split.test_start) if split.test_start else to_dt(qt)
    if not valid < test:
        raise ValueError(f"time split: validation start {valid} must be before test start {test}")
    return valid, test


def label_splits(sequences: DataFrame, protocol: str, cuts: tuple[datetime, datetime] | None = None) -> DataFrame:
    """Add `split`: the split of every position of the sequence.

    loo: the last item is test, the second-to-last validation (users with fewer than 3 items keep all
    in train); time: positions at or after the test cut are test, after the valid cut validation.
    """
    if protocol == "loo":
        split = F.transform(
            "items",
            lambda _, i: F.when((F.col("n_items") >= 3) & (i == F.col("n_items") - 1), "test")
            .when((F.col("n_items") >= 3) & (i == F.col("n_items") - 2), "valid")
            .otherwise("train"),
        )
    else:
        valid, test = cuts
        split = F.transform(
            "ts", lambda t: F.when(t >= F.lit(test), "test").when(t >= F.lit(valid), "valid").otherwise("train")
        )
    return sequences.withColumn("split", split)


def train_prefixes(sequences: DataFrame) -> DataFrame:
    """(user_id, items) restricted to training positions: what the pre-ranker may learn from."""
    pairs = F.arrays_zip("items", "split")
    kept = F.filter(pairs, lambda p: p["split"] == "train")
    return sequences.select("user_id", F.transform(kept, lambda p: p["items"]).alias("items"))


def user_fold(user_id, folds: int):
    """The out-of-fold pre-ranking fold of a user (a stable hash, 0 .. folds-1)."""
    return F.pmod(F.xxhash64(user_id), F.lit(folds))


def examples(sequences: DataFrame, cfg: EtlConfig) -> DataFrame:
    """One row per (user, target position): history = the N items before it, never a later one.

    Training examples come from the latest `train_slates_per_user` training positions (sliding window),
    so no validation or test target is ever a training target.
    """
    pos = sequences.select(
        "user_id", "items", "ts", F.posexplode("split").alias("p", "split")
    ).where(F.col("p") >= cfg.min_history)
    if cfg.train_slates_per_user > 0:
        from pyspark.sql import Window

        latest = Window.partitionBy("user_id", "split").orderBy(F.col("p").desc())
        pos = pos.withColumn("_r", F.row_number().over(latest)).where(
            (F.col("split") != "train") | (F.col("_r") <= cfg.train_slates_per_user)
        ).drop("_r")
    start = F.greatest(F.lit(0), F.col("p") - cfg.history_len)
    return pos.select(
        F.concat_ws(":", "user_id", F.col("p").cast("string")).alias("slate_id"),
        "user_id",
        F.slice("items", start + 1, F.col("p") - start).alias("history"),
        F.element_at("items", F.col("p") + 1).alias("target"),
        F.element_at("ts", F.col("p") + 1).alias("ts"),
        "split",
    )


CANDIDATES = T.StructType(
    [
        T.StructField("slate_id", T.StringType()),
        T.StructField("user_id", T.StringType()),
        T.StructField("history", T.ArrayType(T.StringType())),
        T.StructField("target", T.StringType()),
        T.StructField("ts", T.TimestampType()),
        T.StructField("split", T.StringType()),
        T.StructField("candidates", T.ArrayType(T.StringType())),
        T.StructField("scores", T.ArrayType(T.FloatType())),
        T.StructField("target_position", T.IntegerType()),
        T.StructField("target_in_topk", T.BooleanType()),
    ]
)


def attach_candidates(examples_df: DataFrame, indexes_bc, cfg: EtlConfig, index_of=None) -> DataFrame:
    """Score every example with a broadcast co-occurrence index (numpy on executors, one Arrow batch at a
    time: `prerank.score_arrays`), in one pass over the examples.

    indexes_bc: a broadcast list of `prerank.NeighborIndex`; index_of: an int column naming which of
    them scores each row (None: the first scores all). Out-of-fold pre-ranking scores each fold's
    training slates with its own index; doing that in one pass, rather than one filtered pass per index,
    builds the examples and runs the Python workers once. The batches stay Arrow: item ids are looked
    up and the candidate lists built in Arrow's C++, so no Python object is made per id (`mapInPandas`
    made one for every history item and candidate of every example, both ways)."""
    k, window, decay = cfg.k, cfg.prerank.window, cfg.prerank.decay
    exclude, policy = cfg.prerank.exclude_history, cfg.prerank.policy
    names = [f.name for f in CANDIDATES.fields]

    def score(batches):
        import pyarrow as pa
        import pyarrow.compute as pc

        indexes = indexes_bc.value
        for batch in batches:
            cols = batch.schema.names
            which = (batch.column(cols.index("_index")).to_numpy(zero_copy_only=False) if "_index" in cols
                     else np.zeros(batch.num_rows, dtype=np.int64))
            for i in np.unique(which):  # each index's rows of the batch (rows may leave in any order)
                part = batch if (which == i).all() else batch.filter(pa.array(which == i))
                index = indexes[int(i)]
                history = part.column(cols.index("history"))
                lens = pc.list_value_length(history).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
                pos = index.arrow_positions(pc.list_flatten(history))
                s = prerank.score_arrays(lens, pos, index.arrow_positions(part.column(cols.index("target"))), index, k,
                                         window, decay, exclude, policy)
                new = s.arrow_columns(index)
                yield pa.RecordBatch.from_arrays([new[c] if c in new else part.column(cols.index(c)) for c in names], names=names)

    if index_of is not None:
        examples_df = examples_df.withColumn("_index", index_of.cast("long"))
    return examples_df.mapInArrow(score, CANDIDATES)


def to_slates(scored: DataFrame) -> DataFrame:
    """gold.slates rows from scored examples (the caller has applied the policy's filter)."""
    return scored.select(
        "slate_id",
        "user_id",
        "history",
        "candidates",
        "target",
        F.transform("candidates", lambda c: (c == F.col("target")).cast("int")).alias("labels"),
        "target_position",
        "scores",
        "split",
        F.lit("prerank").alias("origin"),
        "ts",
    )


def logged_slates(interactions: DataFrame, sequences: DataFrame, cfg: EtlConfig) -> tuple[DataFrame, DataFrame]:
    """Slates logged by a company's ranker (events with slate_id): used as they are.

    Returns (slates, rejected) where rejected rows carry the slate and a reason: clicks but no
    impressions, one slate id logged for several users, a position listed twice, no click, or a size
    other than K distinct candidates. Every slate id of the input lands in exactly one of the two.
    A slate's candidates are its impressions and its clicks are its positive events (`is_positive`); an
    event of another name with a slate id (a "dislike") is neither.
    """
    empty = F.array().cast("array<string>")
    logged = interactions.where(F.col("slate_id").isNotNull()
                                & ((F.col("event") == IMPRESSION_EVENT) | is_positive(F.col("event"))))
    shown = logged.where(F.col("event") == IMPRESSION_EVENT).groupBy("slate_id").agg(
        F.first("user_id").alias("shown_user"),
        F.min("ts").alias("shown_ts"),
        F.array_sort(F.collect_list(F.struct(F.coalesce("position", F.lit(1 << 30)).alias("p"), "item_id"))).alias("shown"),
        F.collect_set("user_id").alias("shown_users"),
        F.count("position").alias("n_positions"),
        F.size(F.collect_set("position")).alias("n_distinct_positions"),
    )
    clicks = logged.where(is_positive(F.col("event"))).groupBy("slate_id").agg(
        F.array_distinct(F.collect_list("item_id")).alias("clicked"),
        F.first("user_id").alias("click_user"),
        F.min("ts").alias("click_ts"),
        F.collect_set("user_id").alias("click_users"),
    )
    # A full join: a slate id with clicks and no impressions is rejected, not dropped.
    slates = shown.join(clicks, "slate_id", "full").select(
        "slate_id", F.coalesce("shown_user", "click_user").alias("user_id"), F.coalesce("shown_ts", "click_ts").alias("ts"),
        F.coalesce(F.col("shown.item_id"), empty).alias("candidates"), F.coalesce("clicked", empty).alias("clicked"),
        F.size(F.array_union(F.coalesce("shown_users", empty), F.coalesce("click_users", empty))).alias("_users"),
        F.col("shown").isNull().alias("_unshown"), (F.col("n_positions") != F.col("n_distinct_positions")).alias("_dup_pos"),
    )
    labels = F.transform("candidates", lambda c: F.array_contains("clicked", c).cast("int"))
    slates = slates.withColumn("labels", labels)
    n_distinct = F.size(F.array_distinct("candidates"))
    reason = (
        F.when(F.col("_unshown"), F.lit("slate has clicks but no impressions"))
        .when(F.col("_users") > 1, F.concat(F.lit("slate id logged for more than one user: "), F.col("_users").cast("string")))
        .when(F.col("_dup_pos"), F.lit("slate lists a position twice"))
        .when(F.aggregate("labels", F.lit(0), lambda a, x: a + x) == 0, F.lit("slate without the clicked item"))
        .when(F.size("candidates") != cfg.k, F.concat(F.lit(f"slate has a size other than K={cfg.k}: "), F.size("candidates").cast("string")))
        .when(n_distinct != F.size("candidates"), F.lit("slate lists an item twice"))
    )
    slates = slates.withColumn("reason", reason).drop("_users", "_unshown", "_dup_pos")
    rejected = slates.where(F.col("reason").isNotNull())
    good = slates.where(F.col("reason").isNull())
    # History: the user's items strictly before the slate was shown.
    hist = good.join(sequences.select("user_id", F.col("items").alias("_items"), F.col("ts").alias("_ts")), "user_id", "left")
    before = F.filter(F.arrays_zip("_items", "_ts"), lambda e: e["_ts"] < F.col("ts"))
    hist = hist.withColumn("_before", F.transform(before, lambda e: e["_items"]))
    # The last history_len items. Not slice(arr, -n, n): with fewer than n items Spark returns [] for it.
    before_items = F.coalesce("_before", F.array().cast("array<string>"))
    start = F.greatest(F.lit(1), F.size(before_items) - cfg.history_len + 1)
    hist = hist.withColumn("history", F.slice(before_items, start, F.lit(cfg.history_len)))
    first_pos = F.array_position("labels", 1) - 1
    out = hist.select(
        "slate_id",
        "user_id",
        F.coalesce("history", F.array().cast("array<string>")).alias("history"),
        "candidates",
        F.element_at("candidates", F.array_position("labels", 1).cast("int")).alias("target"),
        "labels",
        first_pos.cast("int").alias("target_position"),
        F.transform("candidates", lambda c: F.lit(None).cast("float")).alias("scores"),
        "ts",
    )
    return out, rejected


def split_logged(slates: DataFrame, protocol: str, cuts: tuple[datetime, datetime] | None) -> DataFrame:
    """Logged slates get splits by the same protocol: per user by slate time (loo) or time cuts."""
    from pyspark.sql import Window

    if protocol == "loo":
        w = Window.partitionBy("user_id")
        r = F.row_number().over(w.orderBy(F.col("ts").desc(), F.col("slate_id").desc()))
        n = F.count(F.lit(1)).over(w)
        split = F.when((n >= 3) & (r == 1), "test").when((n >= 3) & (r == 2), "valid").otherwise("train")
    else:
        valid, test = cuts
        split = F.when(F.col("ts") >= F.lit(test), "test").when(F.col("ts") >= F.lit(valid), "valid").otherwise("train")
    return slates.withColumn("split", split).select(
        "slate_id", "user_id", "history", "candidates", "target", "labels", "target_position", "scores", "split",
        F.lit("logged").alias("origin"), "ts",
    )

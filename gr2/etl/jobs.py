"""The ETL jobs: thin I/O around the pure transforms. Each returns a summary dict."""

from __future__ import annotations

import json
from datetime import date, datetime, timezone
from functools import wraps
from pathlib import Path

from pyspark import StorageLevel
from pyspark.sql import functions as F

from gr2.config import Config
from gr2.etl import gold, prerank, transforms
from gr2.etl.schema import IMPRESSION_EVENT, ITEM_UPDATABLE
from gr2.etl.sources import get_reader
from gr2.platform import quality as qc
from gr2.platform.contracts import contract
from gr2.platform.keys import BRONZE_KEY, INTERACTION_KEY, QUARANTINE_KEY, SPLITS
from gr2.platform.lake import Lake
from gr2.platform.progress import Steps
from gr2.rerank.metrics import histogram_metrics


class ConservationError(AssertionError):
    pass


COUNTS = ("accepted", "quarantined", "duplicates_of_published", "other_dates")


def _tally(checked, day: date | None) -> tuple[dict[str, int], dict[str, int]]:
    """(counts, reasons) of the checked records, from one aggregation. Counts: every record in exactly one
    class: quarantined (a reason), of another date (daily runs), a duplicate of a record already published
    (merging it writes nothing), or accepted (merged by this run). Reasons: quarantined records per reason,
    those that embed a value (an absurd timestamp) grouped by their fixed prefix, most frequent first."""
    status = (
        F.when(F.col("reason").isNotNull(), "quarantined")
        .when(~transforms.in_date(checked, day), "other_dates")
        .when(F.col("published"), "duplicates_of_published")
        .otherwise("accepted")
    )
    reason = F.regexp_replace(F.col("reason"), r":.*$", "")
    rows = checked.groupBy(status.alias("s"), reason.alias("r")).count().collect()
    counts = {k: sum(r["count"] for r in rows if r["s"] == k) for k in COUNTS}
    counts["read"] = sum(counts.values())
    by_reason: dict[str, int] = {}
    for r in rows:
        if r["r"] is not None:
            by_reason[r["r"]] = by_reason.get(r["r"], 0) + r["count"]
    return counts, dict(sorted(by_reason.items(), key=lambda kv: -kv[1]))


def _one_publication(name: str):
    """Run the job as one lake publication: readers that follow the manifest (`Lake.read`) see all of
    its tables move at the end, or none if it fails or is killed between two table commits."""
    def wrap(job):
        @wraps(job)
        def run(spark, cfg: Config, *args, **kwargs):
            with Lake(cfg.lake_path).publication(name):
                return job(spark, cfg, *args, **kwargs)
        return run
    return wrap


def landing_path(cfg: Config) -> Path:
    return cfg.lake_path / "landing" / "synthetic"


@_one_publication("ingest")
def ingest(spark, cfg: Config, day: date | None = None, steps: Steps | None = None) -> dict:
    """Raw files -> bronze, silver (interactions, items) and quarantine, for one day or for all."""
    steps = steps or Steps(quiet=True)
    lake = Lake(cfg.lake_path)
    etl = cfg.etl
    source, path = etl.source, etl.path
    if source == "synthetic":
        from gr2.etl import synthetic

        path = str(landing_path(cfg))
        with steps.step("generate synthetic logs"):
            synthetic.generate(spark, etl.synthetic, path)
        source = "events"
    if path is None:
        raise ValueError(f"source {etl.source} needs --path (a file or folder of its raw data)")
    run_day = day or datetime.now(timezone.utc).date()
    low, high = transforms.ts_bounds(etl.min_ts, datetime.now(timezone.utc).date(), etl.max_future_days)

    with steps.step(f"read {etl.source} from {path}"):
        batch = get_reader(source)(spark, path, etl.encoding)

    summary: dict = {"source": etl.source, "path": str(path), "date": str(day) if day else "all", "tables": {},
                     "files": {"read": len(batch.files), "skipped": len(batch.skipped), "failed": len(batch.failed)},
                     "skipped_files": [{"file": f, "reason": r} for f, r in batch.skipped],
                     "failed_files": [{"file": f, "reason": r} for f, r in batch.failed]}
    # Items first: events are checked against the catalog this run will publish.
    published_items = lake.read(spark, "silver.items", latest=True) if lake.exists(spark, "silver.items") else None
    known = published_items.select("item_id") if published_items is not None else None
    items_checked = items_silver = None
    if batch.items is not None:
        items_checked = transforms.check_items(batch.items).persist(StorageLevel.MEMORY_AND_DISK)
        new_known = items_checked.where("reason IS NULL").select("item_id")
        known = new_known if known is None else known.unionByName(new_known)
        # An item record equal to the published item is a duplicate of it; a changed one is accepted (an update).
        items_silver = transforms.mark_published(transforms.to_silver_items(items_checked, run_day), published_items,
                                                 ["item_id"], ITEM_UPDATABLE)
    if known is None:
        raise ValueError(
            f"no item metadata: {etl.source} at {path} has no item records and silver.items is empty; "
            "ingest the catalog first (an items file beside the events)"
        )

    checked = transforms.check_interactions(batch.interactions, low, high)
    checked = transforms.mark_unknown_items(checked, known)
    checked = transforms.mark_duplicates(checked, INTERACTION_KEY, "duplicate event")
    published = (lake.read(spark, "silver.interactions", latest=True).select(*INTERACTION_KEY)
                 if lake.exists(spark, "silver.interactions") else None)
    checked = transforms.mark_published(checked, published, INTERACTION_KEY).persist(StorageLevel.MEMORY_AND_DISK)
    with steps.step("validate records"):
        counts, reasons = {}, {}
        counts["interactions"], reasons["interactions"] = _tally(checked, day)
        if items_checked is not None:
            flags = items_silver.select("item_id", "published")
            items_status = items_checked.join(flags, "item_id", "left").withColumn("ts", F.lit(None))
            counts["items"], reasons["items"] = _tally(items_status.fillna(False, ["published"]), None)
    for kind, c in counts.items():
        if c["read"] != c["accepted"] + c["quarantined"] + c["duplicates_of_published"] + c["other_dates"]:
            raise ConservationError(f"{kind}: read {c['read']} != accepted + quarantined + duplicates of published "
                                    f"+ other dates ({c})")
    summary["counts"], summary["reasons"] = counts, reasons

    ing = run_day
    with steps.step("publish bronze.events"):
        bronze = None
        for kind, lines in batch.lines.items():
            if batch.records_are_lines:  # from the cached checked rows: the files are not read a second time
                lines = (checked if kind == "interactions" else items_checked).select("file", "line", "raw")
            part = transforms.to_bronze(lines, etl.source, kind, ing)
            bronze = part if bronze is None else bronze.unionByName(part)
        # the checked rows are the lines (every one counted in exactly one class): no pass to count them again
        n_lines = sum(counts[k]["read"] for k in batch.lines) if batch.records_are_lines else bronze.count()
        res = lake.publish_merge(
            spark, bronze, "bronze.events", BRONZE_KEY,
            [qc.rows(n_lines), *contract("bronze.events").checks],
        )
        summary["tables"]["bronze.events"] = res.__dict__
    if items_checked is not None:
        with steps.step("publish silver.items"):
            items = items_silver.where(~F.col("published")).drop("published")
            res = lake.publish_merge(
                spark, items, "silver.items", ["item_id"],
                [qc.rows(counts["items"]["accepted"]), *contract("silver.items").checks],
                update_columns=ITEM_UPDATABLE,
            )
            summary["tables"]["silver.items"] = res.__dict__
    with steps.step("publish silver.interactions"):
        accepted = transforms.to_silver_interactions(checked.where(transforms.is_new(checked, day)), ing)
        res = lake.publish_merge(
            spark, accepted, "silver.interactions", INTERACTION_KEY,
            [
                qc.rows(counts["interactions"]["accepted"]),
                *contract("silver.interactions").checks,
                qc.between("ts", low.isoformat(), high.isoformat()),
            ],
        )
        summary["tables"]["silver.interactions"] = res.__dict__
    with steps.step("publish quarantine"):
        bad = transforms.to_quarantine(checked, "interactions", "ingest", ing)
        if items_checked is not None:
            bad = bad.unionByName(transforms.to_quarantine(items_checked, "items", "ingest", ing))
        if batch.failed:  # a file that could not be read is one quarantine row of kind "file"
            bad = bad.unionByName(transforms.failed_files(spark, etl.source, batch.failed, "ingest", ing))
        n_bad = sum(c["quarantined"] for c in counts.values()) + len(batch.failed)
        res = lake.publish_merge(
            spark, bad, "quarantine", QUARANTINE_KEY, [qc.rows(n_bad), *contract("quarantine").checks]
        )
        summary["tables"]["quarantine"] = res.__dict__
    checked.unpersist()
    if items_checked is not None:
        items_checked.unpersist()
    _write_report(cfg, "ingest", summary)
    return summary


def _index_of(cooc, popularity, all_items) -> tuple[int, prerank.NeighborIndex]:
    """(pairs in the fit, its broadcastable index); `popularity` (item_id, count) fills empty slots. Both tables
    reach the driver through Arrow: at millions of pairs a Row object per pair cost more than the fit."""
    rows = cooc.select("item_id", "neighbor_id", "weight", "rank").toPandas()
    return len(rows), prerank.build_index(rows, popularity.toPandas(), all_items)


def _fit(weights, counts, neighbors: int, without_fold: int | None = None):
    """(the co-occurrence table, item popularity) of all training sequences or of all but one fold's, from pair
    weights and item counts (per fold where they have a fold column)."""
    if without_fold is not None:
        weights, counts = weights.where(F.col("fold") != without_fold), counts.where(F.col("fold") != without_fold)
    if "fold" in counts.columns:
        weights = weights.groupBy("item_id", "neighbor_id").agg(F.sum("w").alias("w"))
        counts = counts.groupBy("item_id").agg(F.sum("count").alias("count"))
    return prerank.rank_neighbors(weights, neighbors), counts


@_one_publication("build")
def build(spark, cfg: Config, steps: Steps | None = None) -> dict:
    """silver -> gold.sequences, gold.cooccurrence, gold.slates (pre-ranked and logged)."""
    steps = steps or Steps(quiet=True)
    lake = Lake(cfg.lake_path)
    etl = cfg.etl
    interactions = lake.read(spark, "silver.interactions")
    items = lake.read(spark, "silver.items")
    summary: dict = {"k": etl.k, "protocol": etl.split.protocol, "policy": etl.prerank.policy, "tables": {}}

    with steps.step("sequences and splits"):
        cuts = gold.time_cuts(interactions, etl.split) if etl.split.protocol == "time" else None
        sequences = gold.label_splits(gold.build_sequences(interactions), etl.split.protocol, cuts)
        sequences = sequences.persist(StorageLevel.MEMORY_AND_DISK)
        n_users = sequences.count()
        summary["users"] = n_users
        # Events neither positive nor impressions stay in silver but feed no gold table: say which.
        unused = interactions.where(~gold.is_positive(F.col("event")) & (F.col("event") != IMPRESSION_EVENT))
        summary["unused_events"] = {r["event"]: r["count"] for r in unused.groupBy("event").count().collect()}
        if cuts:
            summary["time_cuts"] = {"valid_start": cuts[0].isoformat(), "test_start": cuts[1].isoformat()}
    folds = etl.prerank.oof_folds if etl.prerank.oof_folds >= 2 else 0
    summary["oof_folds"] = folds
    with steps.step("fit co-occurrence pre-ranker on the training split"):
        train = gold.train_prefixes(sequences)
        by = []
        if folds:  # pair weights and item counts per fold add up to every fit the build needs
            train, by = train.withColumn("fold", gold.user_fold(F.col("user_id"), folds)), ["fold"]
        weights = prerank.pair_weights(train, etl.prerank.max_gap, by).persist(StorageLevel.MEMORY_AND_DISK)
        counts = (train.select(*by, F.explode("items").alias("item_id")).groupBy(*by, "item_id").count()
                  .persist(StorageLevel.MEMORY_AND_DISK))
        cooc, popularity = _fit(weights, counts, etl.prerank.neighbors)
        cooc = cooc.persist(StorageLevel.MEMORY_AND_DISK)
        all_items = items.select("item_id").toPandas()["item_id"].to_numpy()
        n_pairs, index = _index_of(cooc, popularity, all_items)
        summary["cooccurrence_pairs"] = n_pairs
    fold_index = {}
    for f in range(folds):
        with steps.step(f"fit out-of-fold pre-ranker {f + 1}/{folds} for training slates"):
            fold_index[f] = _index_of(*_fit(weights, counts, etl.prerank.neighbors, without_fold=f), all_items)[1]
    weights.unpersist()
    counts.unpersist()
    with steps.step("pre-rank candidates for every example"):
        ex = gold.examples(sequences, etl)
        if folds:
            # Training slates of fold f are scored by the fit without fold f's sequences (index f + 1);
            # held-out slates by the full fit (index 0).
            fold = gold.user_fold(F.col("user_id"), folds)
            which = F.when(F.col("split") == "train", fold + 1).otherwise(F.lit(0))
            indexes = [index] + [fold_index[f] for f in range(folds)]
            scored = gold.attach_candidates(ex, spark.sparkContext.broadcast(indexes), etl, which)
        else:
            scored = gold.attach_candidates(ex, spark.sparkContext.broadcast([index]), etl)
        scored = scored.persist(StorageLevel.MEMORY_AND_DISK)
        cov_rows = scored.groupBy("split").agg(
            F.count(F.lit(1)).alias("n"), F.avg(F.col("target_in_topk").cast("double")).alias("cov"),
            F.sum((F.col("target_position") >= 0).cast("long")).alias("kept")).collect()
        summary["examples"] = {r["split"]: r["n"] for r in cov_rows}
        summary["coverage"] = {r["split"]: round(r["cov"], 4) for r in cov_rows}
        kept = scored.where(F.col("target_position") >= 0)
        slates = gold.to_slates(kept)

    logged_n = 0
    if interactions.where(F.col("slate_id").isNotNull()).limit(1).count():
        with steps.step("logged slates"):
            logged, rejected = gold.logged_slates(interactions, sequences, etl)
            logged = gold.split_logged(logged, etl.split.protocol, cuts)
            slates = slates.unionByName(logged)
            bad = rejected.select(
                F.lit("events").alias("source"), F.lit("slate").alias("kind"), F.lit("gold.slates").alias("file"),
                F.lit(0).cast("long").alias("line"),
                F.to_json(F.struct("slate_id", "user_id", "candidates", "clicked")).alias("raw"),
                F.col("reason"), F.lit("build").alias("stage"), F.current_date().alias("ingest_date"),
            )
            n_rej = bad.count()
            logged_n = logged.count()
            summary["logged_slates"] = {"accepted": logged_n, "quarantined": n_rej}
            if n_rej:
                lake.publish_merge(spark, bad, "quarantine", QUARANTINE_KEY, [qc.rows(n_rej), *contract("quarantine").checks])

    with steps.step("publish gold tables"):
        n_slates = sum(r["kept"] for r in cov_rows) + logged_n  # the slates' rows, counted with the coverage
        c = contract("gold.slates", etl.k)
        res = lake.publish_overwrite(spark, slates, "gold.slates", [qc.rows(n_slates), *c.checks], audit=c.audit)
        summary["tables"]["gold.slates"] = res.__dict__
        res = lake.publish_overwrite(
            spark, sequences, "gold.sequences", [qc.rows(n_users), *contract("gold.sequences").checks]
        )
        summary["tables"]["gold.sequences"] = res.__dict__
        res = lake.publish_overwrite(
            spark, cooc, "gold.cooccurrence", [qc.rows(n_pairs), *contract("gold.cooccurrence").checks]
        )
        summary["tables"]["gold.cooccurrence"] = res.__dict__
    with steps.step("incoming-order metrics"):
        # one pass: a histogram of target positions per split (at most K rows each), not a row per slate
        hist = (lake.read(spark, "gold.slates").where(F.col("origin") == "prerank")
                .groupBy("split", "target_position").count().collect())
        per_split = {}
        for split in SPLITS:
            counts = {int(r["target_position"]): int(r["count"]) for r in hist if r["split"] == split}
            if counts:
                per_split[split] = {"slates": sum(counts.values()),
                                    **{m: round(v, 4) for m, v in histogram_metrics(counts).items()}}
        summary["incoming_order"] = per_split
    summary["slates"] = n_slates
    sequences.unpersist()
    scored.unpersist()
    cooc.unpersist()
    _write_report(cfg, "build", summary)
    return summary


def _write_report(cfg: Config, name: str, summary: dict) -> Path:
    folder = cfg.lake_path / "reports" / "etl"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    path = folder / f"{name}-{stamp}.json"
    text = json.dumps(summary, indent=2, default=str)
    path.write_text(text)
    (folder / f"{name}-latest.json").write_text(text)
    summary["report"] = str(path)
    return path

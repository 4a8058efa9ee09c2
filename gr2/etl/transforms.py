"""Pure DataFrame transforms of the ingest stage: parsed records -> accepted rows + rejected rows.

No I/O here: every function takes DataFrames and returns DataFrames, so each rule is tested on a few
hand-made rows. The first failing rule names a record's reason; a record is rejected for one reason.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from gr2.platform.keys import INTERACTION_KEY


def _first_reason(*rules) -> F.Column:
    """`when(cond1, reason1).when(cond2, reason2)...`: the first rule that fires wins."""
    expr = None
    for cond, reason in rules:
        expr = F.when(cond, reason) if expr is None else expr.when(cond, reason)
    return expr


# Spark's text reader (and a Python decode with errors="replace") turns bytes that are not valid in the
# file's encoding into U+FFFD. Such a record is quarantined, never kept: two ids that differ only in
# their bad bytes ("caf\xe9", "caf\xe8") would otherwise become one id.
INVALID_TEXT = "bytes that are not valid in the file's encoding (etl.encoding; utf-8 unless set)"


def _invalid_text() -> F.Column:
    return F.col("raw").contains("\ufffd")


def _blank(col: str) -> F.Column:
    return F.col(col).isNull() | (F.trim(F.col(col)) == "")


def check_interactions(parsed: DataFrame, min_ts: datetime, max_ts: datetime) -> DataFrame:
    """Add a reason to records with missing ids or impossible timestamps (keeps the reader's reason)."""
    rule = _first_reason(
        (_invalid_text(), F.lit(INVALID_TEXT)),
        (F.col("reason").isNotNull(), F.col("reason")),
        (_blank("user_id"), F.lit("missing or empty user_id")),
        (_blank("item_id"), F.lit("missing or empty item_id")),
        (F.col("ts").isNull(), F.lit("missing timestamp")),
        (
            F.col("ts") < F.lit(min_ts),
            F.concat(F.lit(f"absurd timestamp (before {min_ts:%Y-%m-%d}): "), F.col("ts").cast("string")),
        ),
        (
            F.col("ts") > F.lit(max_ts),
            # No date in the text: the bound moves with the run's clock, and the reason is part of the
            # quarantine key, so one bad line ingested on two days must give one reason, one row.
            F.concat(F.lit("absurd timestamp (too far in the future): "), F.col("ts").cast("string")),
        ),
    )
    return parsed.withColumn("reason", rule).withColumn("user_id", F.trim("user_id")).withColumn("item_id", F.trim("item_id"))


def mark_duplicates(df: DataFrame, key: list[str], reason: str) -> DataFrame:
    """Among not-yet-rejected rows sharing `key`, the first by (file, line, raw) stays; the rest get `reason`."""
    order = Window.partitionBy(*key).orderBy("file", "line", "raw")
    ranked = df.withColumn("_n", F.when(F.col("reason").isNull(), F.row_number().over(order)))
    return ranked.withColumn(
        "reason", F.when(F.col("reason").isNull() & (F.col("_n") > 1), F.lit(reason)).otherwise(F.col("reason"))
    ).drop("_n")


def mark_unknown_items(df: DataFrame, known_items: DataFrame) -> DataFrame:
    """Events whose item has no metadata (neither published nor in this batch) are rejected."""
    known = known_items.select(F.col("item_id").alias("_known")).distinct()
    joined = df.join(known, df["item_id"] == known["_known"], "left")
    return joined.withColumn(
        "reason",
        F.when(F.col("reason").isNull() & F.col("_known").isNull(), F.lit("event for an item with no metadata")).otherwise(
            F.col("reason")
        ),
    ).drop("_known")


def check_items(parsed: DataFrame) -> DataFrame:
    rule = _first_reason(
        # Only the id matters here: a title with a replaced character is still the item's title, and
        # quarantining the item would take every event of it along.
        (F.col("item_id").contains("\ufffd"), F.lit(INVALID_TEXT)),
        (F.col("reason").isNotNull(), F.col("reason")),
        (_blank("item_id"), F.lit("missing or empty item_id")),
    )
    out = parsed.withColumn("reason", rule).withColumn("item_id", F.trim("item_id"))
    # The last record of an item in file order is its current metadata; earlier ones are duplicates.
    latest = Window.partitionBy("item_id").orderBy(F.col("file").desc(), F.col("line").desc())
    out = out.withColumn("_n", F.when(F.col("reason").isNull(), F.row_number().over(latest)))
    return out.withColumn(
        "reason",
        F.when(F.col("reason").isNull() & (F.col("_n") > 1), F.lit("duplicate item record (a later one wins)")).otherwise(
            F.col("reason")
        ),
    ).drop("_n")


def mark_published(df: DataFrame, published: DataFrame | None, key: list[str], same: list[str] = ()) -> DataFrame:
    """Add `published`: true when the row's `key` (and `same` columns, compared null-safely) equal a row
    already in the table `published` holds, so merging it would write nothing. Such a record is neither
    accepted (it adds nothing) nor quarantined (nothing is wrong with it): it is counted as a duplicate of
    a published record. The table's key is unique (its gate checks it), so the join adds no rows."""
    if published is None:
        return df.withColumn("published", F.lit(False))
    cols = [*key, *same]
    pub = published.select(*[F.col(c).alias(f"_pub_{c}") for c in cols], F.lit(True).alias("_pub"))
    cond = [df[c].eqNullSafe(pub[f"_pub_{c}"]) for c in cols]
    joined = df.join(pub, cond, "left")
    return joined.withColumn("published", F.col("_pub").isNotNull()).drop("_pub", *[f"_pub_{c}" for c in cols])


def is_new(df: DataFrame, day: date | None) -> F.Column:
    """The rows a run merges into silver: of the day being ingested and not published before."""
    return in_date(df, day) & ~F.col("published")


def in_date(df: DataFrame, day: date | None) -> F.Column:
    """True for rows of the day being ingested (all rows when no day is given)."""
    return F.lit(True) if day is None else (F.to_date("ts") == F.lit(day))


def item_text(title: F.Column, categories: F.Column, brand: F.Column) -> F.Column:
    """The text an encoder reads: title, then the category path, then the brand."""
    cats = F.array_join(F.coalesce(categories, F.array().cast("array<string>")), " > ")
    return F.concat_ws(" | ", F.nullif(F.trim(title), F.lit("")), F.nullif(cats, F.lit("")), F.nullif(F.trim(brand), F.lit("")))


def to_silver_items(checked: DataFrame, ingest_date: date) -> DataFrame:
    ok = checked.where(F.col("reason").isNull())
    return ok.select(
        "item_id",
        F.nullif(F.trim("title"), F.lit("")).alias("title"),
        F.coalesce("categories", F.array().cast("array<string>")).alias("categories"),
        F.nullif(F.trim("brand"), F.lit("")).alias("brand"),
        item_text(F.col("title"), F.col("categories"), F.col("brand")).alias("text"),
        "source",
        F.lit(ingest_date).alias("ingest_date"),
    )


def to_silver_interactions(checked: DataFrame, ingest_date: date) -> DataFrame:
    ok = checked.where(F.col("reason").isNull())
    return ok.select(*INTERACTION_KEY, "slate_id", "position", "source", F.lit(ingest_date).alias("ingest_date"))


def to_quarantine(checked: DataFrame, kind: str, stage: str, ingest_date: date) -> DataFrame:
    bad = checked.where(F.col("reason").isNotNull())
    return bad.select(
        "source",
        F.lit(kind).alias("kind"),
        "file",
        "line",
        "raw",
        "reason",
        F.lit(stage).alias("stage"),
        F.lit(ingest_date).alias("ingest_date"),
    )


QUARANTINE_SCHEMA = T.StructType([
    T.StructField("source", T.StringType(), False), T.StructField("kind", T.StringType(), False),
    T.StructField("file", T.StringType(), False), T.StructField("line", T.LongType(), False),
    T.StructField("raw", T.StringType(), False), T.StructField("reason", T.StringType(), False),
    T.StructField("stage", T.StringType(), False), T.StructField("ingest_date", T.DateType(), False),
])  # fmt: skip
FILE_KIND = "file"


def failed_files(spark, source: str, failed: list[tuple[str, str]], stage: str, ingest_date: date) -> DataFrame:
    """One quarantine row per data file that could not be read (corrupt, unreadable): kind "file", line 0,
    raw "" (there is no record to keep), and the file's reason. Its key is (source, kind, file, line, raw,
    reason), so the same failed file ingested again adds no second row."""
    rows = [(source, FILE_KIND, f, 0, "", reason, stage, ingest_date) for f, reason in failed]
    return spark.createDataFrame(rows, QUARANTINE_SCHEMA)


def to_bronze(lines: DataFrame, source: str, kind: str, ingest_date: date) -> DataFrame:
    return lines.select(
        F.lit(source).alias("source"), F.lit(kind).alias("kind"), "file", "line", "raw", F.lit(ingest_date).alias("ingest_date")
    )


def ts_bounds(min_ts: str, today: date, max_future_days: int) -> tuple[datetime, datetime]:
    """Plausible event times: from `min_ts` to the end of `today` + `max_future_days` (clock skew).

    The upper bound is the wall clock, not the ingested day, so a backfill of an old day still
    accepts that day's events and only the truly impossible ones are quarantined.
    """
    low = datetime.fromisoformat(min_ts)
    high = datetime.combine(today, datetime.min.time()) + timedelta(days=max_future_days + 1)
    return low, high

"""Where one publish's time goes: the staging write, the quality gate (example values collected at once,
or counts first; with and without its Data Docs update), the table write and the row count, on a synthetic silver.interactions table.

    .venv/bin/python benchmarks/publish_overhead.py --rows 100000 1000000

Every table gr2 publishes goes through `Lake.publish_overwrite` / `publish_merge`: the rows are written to a
staging Delta table, Great Expectations validates the staged rows (a checkpoint whose action renders the
result into the lake's Data Docs), then the rows are written to the table and counted. This times each part
on its own, the gate several times in a row (its cost per call, and whether it grows as the lake's
validation history does), and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gr2.config import load_config  # noqa: E402
from gr2.platform import quality as qc  # noqa: E402
from gr2.platform.contracts import contract  # noqa: E402
from gr2.platform.spark import get_spark  # noqa: E402


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--gates", type=int, default=3, help="gate calls per setting")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="gr2-publish-"))
    cfg = load_config(overrides=["spark.shuffle_partitions=4"], lake=str(root / "lake"))
    spark = get_spark(cfg.spark)
    from pyspark.sql import functions as F

    rows = []
    try:
        for n in args.rows:
            df = spark.range(n).select(
                F.concat(F.lit("u"), (F.col("id") % max(1, n // 12)).cast("string")).alias("user_id"),
                F.concat(F.lit("i"), (F.col("id") % 5000).cast("string")).alias("item_id"),
                (F.lit(1_600_000_000) + F.col("id")).cast("timestamp").alias("ts"),
                F.lit("purchase").alias("event"), F.lit(None).cast("string").alias("slate_id"),
            )
            stage, table = root / f"stage-{n}", root / f"table-{n}"
            t_stage = timed(lambda: df.write.format("delta").mode("overwrite").save(str(stage)))
            staged = spark.read.format("delta").load(str(stage))
            checks = [qc.rows(n), *contract("silver.interactions").checks]
            examples = [timed(lambda: qc.gate(staged, "silver.interactions", checks, cfg.lake_path, counts_first=False))
                        for _ in range(args.gates)]
            with_docs = [timed(lambda: qc.gate(staged, "silver.interactions", checks, cfg.lake_path)) for _ in range(args.gates)]
            without = [timed(lambda: qc.gate(staged, "silver.interactions", checks, cfg.lake_path, update_docs=False))
                       for _ in range(args.gates)]
            t_write = timed(lambda: staged.write.format("delta").mode("overwrite").save(str(table)))
            t_count = timed(lambda: spark.read.format("delta").load(str(stage)).count())
            rows.append((n, t_stage, examples, with_docs, without, t_write, t_count))
            print(f"  {n:,} rows: stage {t_stage:.1f} s, gate {with_docs[-1]:.1f} s", file=sys.stderr, flush=True)
    finally:
        spark.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(f"\n### One publish of silver.interactions ({platform.node()}, local Spark; seconds; gates: each call in order)\n")
    print("| rows | staging write | gate, example values at once | gate, counts first | gate, counts first, no Data Docs | "
          "table write | count |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for n, t_stage, examples, with_docs, without, t_write, t_count in rows:
        print(f"| {n:,} | {t_stage:.1f} | {', '.join(f'{t:.1f}' for t in examples)} | {', '.join(f'{t:.1f}' for t in with_docs)} | "
              f"{', '.join(f'{t:.1f}' for t in without)} | {t_write:.1f} | {t_count:.1f} |")


if __name__ == "__main__":
    main()

"""ETL throughput: gr2's Spark ingest + build next to one pandas process doing the same work.

    .venv/bin/python benchmarks/etl_throughput.py --sizes 100000 1000000 10000000

For each size it generates synthetic logs (not timed), runs `ingest` + `build` on local Spark (with the
Great Expectations gates and Delta writes they include), then `benchmarks/pandas_etl.py` on the same
files, checks both accept the same events, and prints a Markdown table with interactions/s, the
Spark/pandas ratio and how time grows with size (the exponent b in time ~ size^b between sizes).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

import pandas_etl  # noqa: E402
import spark_stages  # noqa: E402

from gr2.config import load_config  # noqa: E402
from gr2.etl import jobs, synthetic  # noqa: E402
from gr2.platform.progress import Steps  # noqa: E402
from gr2.platform.spark import get_spark  # noqa: E402


def measure(n: int, root: Path, master: str = "local[*]", with_pandas: bool = True, partitions: int = 16,
            conf: dict | None = None, stages: bool = False) -> dict:
    """One size: synthetic logs of about `n` events under `root` (not timed), then Spark's ingest + build
    timed step by step, then the pandas baseline on the same files. -> the table's row."""
    users = max(100, n // 12)
    items = max(1000, n // 200)
    shutil.rmtree(root, ignore_errors=True)
    landing = root / "landing"
    sets = [
        "etl.source=events", f"etl.path={landing}", f"etl.synthetic.users={users}", f"etl.synthetic.items={items}",
        "etl.synthetic.mean_events_per_user=12", "etl.synthetic.bad_record_rate=0.001", f"spark.master={master}",
        "spark.driver_memory=10g", f"spark.shuffle_partitions={partitions}",
    ]
    cfg = load_config(overrides=sets, lake=str(root / "lake"))
    cfg.spark.conf.update(conf or {})
    if stages:  # the driver UI's REST API gives each step's stage metrics (spark_stages.py)
        cfg.spark.conf["spark.ui.enabled"] = "true"
    spark = get_spark(cfg.spark)
    gen = synthetic.generate(spark, cfg.etl.synthetic, landing)
    ing_steps, bld_steps = Steps(quiet=True), Steps(quiet=True)
    first_job = spark_stages.last_job(spark) if stages else None
    t0 = time.perf_counter()
    ing = jobs.ingest(spark, cfg, steps=ing_steps)
    t1 = time.perf_counter()
    bld = jobs.build(spark, cfg, steps=bld_steps)
    t2 = time.perf_counter()
    row = {
        "interactions": gen["events"], "lines": gen["lines"], "users": users, "items": items,
        "spark_ingest_s": t1 - t0, "spark_build_s": t2 - t1, "spark_s": t2 - t0,
        "accepted": ing["counts"]["interactions"]["accepted"], "slates": bld["slates"],
        # "read events from <path>": the path differs per size, the step does not
        "ingest_steps": {k.split(" from ")[0]: v for k, v in ing_steps.timings.items()}, "build_steps": bld_steps.timings,
        # of the publish steps' time, what the quality gates took (Great Expectations and its Data Docs)
        "ingest_gates_s": sum(t.get("gate_s", 0.0) for t in ing["tables"].values()),
        "build_gates_s": sum(t.get("gate_s", 0.0) for t in bld["tables"].values()),
    }
    if stages:
        by_step = spark_stages.stages_by_step(spark, [*ing_steps.timings, *bld_steps.timings], first_job)
        row["stages"] = {k.split(" from ")[0]: v for k, v in by_step.items()}
    if with_pandas:
        p0 = time.perf_counter()
        pd_res = pandas_etl.run(landing, cfg.etl, out=root / "pandas_out")
        row["pandas_s"] = time.perf_counter() - p0
        row["pandas_accepted"], row["pandas_slates"] = pd_res["accepted"], pd_res["slates"]
        row["pandas_steps"] = pd_res["steps"]
        row["same_slate_rows"] = same_slates(spark, cfg, root / "pandas_out" / "slates.parquet")
    return row


SLATE_COLUMNS = ["user_id", "split", "history", "target", "candidates", "scores", "target_position"]


def same_slates(spark, cfg, parquet: Path) -> bool:
    """Whether the pandas baseline's slates are gold.slates' pre-ranked rows, value for value (not timed)."""
    from pyspark.sql import functions as F

    from gr2.platform.lake import Lake

    def rows(df):
        return df.select(*[F.col(c).cast("int") if c == "target_position" else F.col(c) for c in SLATE_COLUMNS])

    ours = rows(Lake(cfg.lake_path).read(spark, "gold.slates").where(F.col("origin") == "prerank"))
    theirs = rows(spark.read.parquet(str(parquet)))
    return ours.exceptAll(theirs).limit(1).count() == 0 and theirs.exceptAll(ours).limit(1).count() == 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--work", default="benchmarks/out/etl")
    ap.add_argument("--master", default="local[*]")
    ap.add_argument("--skip-pandas-above", type=int, default=20_000_000)
    ap.add_argument("--partitions", type=int, default=16, help="spark.sql.shuffle.partitions")
    ap.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE",
                    help="a Spark setting for this run (repeatable), e.g. spark.databricks.delta.optimizeWrite.enabled=false")
    ap.add_argument("--stages", action="store_true", help="also print each step's stage metrics from the Spark "
                    "UI's REST API (tasks, task-seconds, shuffle bytes; turns the UI on)")
    args = ap.parse_args()
    work = Path(args.work).resolve()
    rows = []
    for n in args.sizes:
        row = measure(n, work / f"n{n}", args.master, with_pandas=n <= args.skip_pandas_above, partitions=args.partitions,
                      conf=dict(c.split("=", 1) for c in args.conf), stages=args.stages)
        rows.append(row)
        print(json.dumps(row), flush=True)
    print_table(rows)
    for r in rows:
        if "stages" in r:
            print(f"\n{r['interactions']:,} interactions: the steps' Spark stages ({os.cpu_count()} cores)\n")
            spark_stages.print_steps({**r["ingest_steps"], **r["build_steps"]}, r["stages"], os.cpu_count())


def print_table(rows: list[dict]) -> None:
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}\n")
    print("| interactions | Spark ingest s | Spark build s | Spark total s | Spark inter./s | pandas s | pandas inter./s "
          "| pandas/Spark time | same accepted / slate count / slate rows |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        n = r["lines"]
        pdt = r.get("pandas_s")
        same = "-" if pdt is None else (f"{r['accepted'] == r['pandas_accepted']} / {r['slates'] == r['pandas_slates']}"
                                        f" / {r.get('same_slate_rows', '-')}")
        print(
            f"| {r['interactions']:,} | {r['spark_ingest_s']:.1f} | {r['spark_build_s']:.1f} | {r['spark_s']:.1f} | {n / r['spark_s']:,.0f} | "
            + (f"{pdt:.1f} | {n / pdt:,.0f} | {pdt / r['spark_s']:.2f} | {same} |" if pdt else "- | - | - | - |")
        )
    for job in ("ingest", "build"):
        names = list(dict.fromkeys(k for r in rows for k in r[f"{job}_steps"]))
        print(f"\nwhere Spark's {job} time goes (seconds per step; each step ends in an action)\n")
        print("| step | " + " | ".join(f"{r['interactions']:,}" for r in rows) + " |")
        print("|---|" + "---:|" * len(rows))
        for k in names:
            print(f"| {k} | " + " | ".join(f"{r[f'{job}_steps'].get(k, float('nan')):.1f}" for r in rows) + " |")
        print("| (outside the steps) | " + " | ".join(
            f"{r[f'spark_{job}_s'] - sum(r[f'{job}_steps'].values()):.1f}" for r in rows) + " |")
        print("| of the steps: quality gates | " + " | ".join(f"{r[f'{job}_gates_s']:.1f}" for r in rows) + " |")
    timed = [r for r in rows if r.get("pandas_steps")]
    if timed:
        print("\nwhere the pandas baseline's time goes (seconds per step)\n")
        print("| step | " + " | ".join(f"{r['interactions']:,}" for r in timed) + " |")
        print("|---|" + "---:|" * len(timed))
        for k in dict.fromkeys(k for r in timed for k in r["pandas_steps"]):
            print(f"| {k} | " + " | ".join(f"{r['pandas_steps'].get(k, float('nan')):.1f}" for r in timed) + " |")
    if len(rows) > 1:
        print("\ngrowth exponent b (time ~ size^b) between consecutive sizes:")
        for a, b in zip(rows, rows[1:]):
            ratio = math.log(b["lines"] / a["lines"])
            line = f"  {a['interactions']:,} -> {b['interactions']:,}: Spark b={math.log(b['spark_s'] / a['spark_s']) / ratio:.2f}"
            if a.get("pandas_s") and b.get("pandas_s"):
                line += f", pandas b={math.log(b['pandas_s'] / a['pandas_s']) / ratio:.2f}"
            print(line)


if __name__ == "__main__":
    main()

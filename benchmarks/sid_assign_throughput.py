"""SID assignment throughput: `gr2 tokenizer assign` on Spark vs the same work in one numpy process.

    .venv/bin/python benchmarks/sid_assign_throughput.py --sizes 100000 1000000 5000000

For each size: clustered synthetic item vectors (64 dims) are written to gold.item_embeddings (not
timed), an RQ-VAE (4 x 256) is fitted on 50k of them (not timed), then both paths assign SIDs to every
item: Spark (broadcast model, Arrow-batch encoding on executors, random last level per prefix group,
GE gate, Delta publish) and numpy (encode + de-collide in one process, no table). Prints items/s, the
ratio, and the growth exponent, plus an extrapolation of Spark's rate to 1B items on N executors, and
where Spark's time goes: the seconds of each step of `gr2 tokenizer assign` (each ends in an action).
`--spark-only` skips the numpy path (for sizes whose one-process run is known).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

import spark_stages  # noqa: E402
from sid_uniqueness import synthetic_embeddings  # noqa: E402

from gr2.config import load_config  # noqa: E402
from gr2.platform.spark import get_spark  # noqa: E402
from gr2.tokenizer import collisions, jobs, rqvae  # noqa: E402


def prepare(spark, cfg, n: int, dim: int = 64):
    """Untimed set-up in cfg's lake: `n` clustered synthetic item vectors as silver.items and
    gold.item_embeddings (encoder "bench"), and an RQ-VAE (4 x 256) fitted on 50k of them for 10 epochs
    as tokenizer version "bench". -> (vectors, model, its config)."""
    lake = cfg.lake_path
    x = synthetic_embeddings(n, dim)
    ids = [f"i{i:09d}" for i in range(n)]
    pdf = pd.DataFrame({"item_id": ids, "vector": list(x), "encoder": "bench", "dim": dim})
    spark.createDataFrame(pdf[["item_id"]]).write.format("delta").mode("overwrite").save(str(lake / "silver" / "items"))
    spark.createDataFrame(pdf).write.format("delta").mode("overwrite").partitionBy("encoder").save(str(lake / "gold" / "item_embeddings"))
    del pdf
    fit_x = x[np.random.default_rng(0).choice(n, min(n, 50_000), replace=False)]
    rq_cfg = jobs.rqvae_config(cfg, dim)
    model, history = rqvae.train_rqvae(fit_x, rq_cfg, epochs=10, batch_size=512, log_every=0)
    jobs.save_model(jobs.models_dir(cfg) / "bench", model, history, "bench", "bench")
    return x, model, rq_cfg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--work", default="benchmarks/out/sid_assign")
    ap.add_argument("--spark-only", action="store_true", help="time Spark's path only")
    ap.add_argument("--stages", action="store_true", help="also print each step's Spark stages (tasks, task-seconds, "
                    "shuffle bytes) from the Spark UI's REST API (turns the UI on; benchmarks/spark_stages.py)")
    args = ap.parse_args()
    rows = []
    spark = None
    for n in args.sizes:
        root = Path(args.work).resolve() / f"n{n}"
        shutil.rmtree(root, ignore_errors=True)
        cfg = load_config(overrides=["spark.driver_memory=10g", "spark.shuffle_partitions=16", "tokenizer.embedding.encoder=bench"],
                          lake=str(root / "lake"))
        if args.stages:
            cfg.spark.conf["spark.ui.enabled"] = "true"
        spark = spark or get_spark(cfg.spark)
        x, model, rq_cfg = prepare(spark, cfg, n)
        first_job = spark_stages.last_job(spark) if args.stages else None
        t0 = time.perf_counter()
        summary = jobs.assign(spark, cfg, "bench")
        spark_s = time.perf_counter() - t0
        if args.stages:
            print(f"\n{n:,} items: the steps' Spark stages ({os.cpu_count()} cores)\n")
            spark_stages.print_steps(summary["timings"], spark_stages.stages_by_step(spark, list(summary["timings"]), first_job), os.cpu_count())
        print(json.dumps({"items": n, "spark_s": spark_s, "spark_unique": summary["final_unique_fraction"],
                          "timings": summary["timings"]}), flush=True)
        if args.spark_only:
            rows.append({"items": n, "spark_s": spark_s, "numpy_s": float("nan"), "spark_unique": summary["final_unique_fraction"],
                         "numpy_unique": float("nan"), "extra_level": summary["extra_level"], "max_levels": 0,
                         "timings": summary["timings"]})
            continue
        t0 = time.perf_counter()
        codes = rqvae.encode_codes(model, torch.from_numpy(x)).numpy()
        new, _, overflow = collisions.redraw_last_level(codes, rq_cfg.codes, seed=0)
        final = collisions.fallback_codes(new, collisions.overflow_mask(new, overflow), rq_cfg.codes)
        numpy_s = time.perf_counter() - t0
        row = {"items": n, "spark_s": spark_s, "numpy_s": numpy_s, "spark_unique": summary["final_unique_fraction"],
               "numpy_unique": len({tuple(c) for c in final}) / n,
               "extra_level": summary["extra_level"], "max_levels": max(map(len, final)), "timings": summary["timings"]}
        rows.append(row)
        print(json.dumps(row), flush=True)
    cores = os.cpu_count()
    print(f"\nmachine: {cores} cores\n")
    print("| items | Spark assign s | Spark items/s | numpy s | numpy items/s | numpy/Spark time | unique after (Spark / numpy) "
          "| items given extra levels | longest SID |")
    print("|---:|---:|---:|---:|---:|---:|---|---:|---:|")
    for r in rows:
        print(f"| {r['items']:,} | {r['spark_s']:.1f} | {r['items'] / r['spark_s']:,.0f} | {r['numpy_s']:.1f} | "
              f"{r['items'] / r['numpy_s']:,.0f} | {r['numpy_s'] / r['spark_s']:.2f} | {r['spark_unique']:.4%} / {r['numpy_unique']:.4%} | "
              f"{r['extra_level']:,} | {r['max_levels']} |")
    steps = list(dict.fromkeys(k for r in rows for k in r["timings"]))
    print("\nwhere Spark's time goes (seconds per step of `gr2 tokenizer assign`; the rest is loading the model)\n")
    print("| items | " + " | ".join(steps) + " | total |")
    print("|---:|" + "---:|" * (len(steps) + 1))
    for r in rows:
        cells = " | ".join(f"{r['timings'][k]:.1f}" if k in r["timings"] else "-" for k in steps)
        print(f"| {r['items']:,} | {cells} | {r['spark_s']:.1f} |")
    for a, b in zip(rows, rows[1:]):
        r = math.log(b["items"] / a["items"])
        print(f"growth {a['items']:,} -> {b['items']:,}: Spark b={math.log(b['spark_s'] / a['spark_s']) / r:.2f}, "
              f"numpy b={math.log(b['numpy_s'] / a['numpy_s']) / r:.2f}")
    last = rows[-1]
    per_core = last["items"] / last["spark_s"] / cores
    for executors in (64, 256):
        print(f"extrapolation: 1B items on {executors} executor cores at {per_core:,.0f} items/s/core "
              f"(linear scaling assumed) ~ {1e9 / (per_core * executors) / 60:.0f} min")


if __name__ == "__main__":
    main()

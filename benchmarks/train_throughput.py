"""Training throughput of the demo model: DeepSpeed ZeRO stages next to plain torch DDP, same run.

    .venv/bin/python benchmarks/train_throughput.py --lake lake --workers 2 --steps 60

Needs a lake with the ETL and tokenizer done (e.g. after `make demo`). Each variant runs `gr2 train
midtrain`'s job for the same number of optimizer steps on the same packed examples with N Ray Train
workers, and reads tokens/s (per worker and total) and peak resident memory per worker from the run's
metrics.csv (the first logged steps, which include start-up, are left out of the rate).
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gr2.config import load_config  # noqa: E402
from gr2.training import jobs  # noqa: E402

VARIANTS = [("torch DDP", ["train.engine=ddp"]), ("DeepSpeed ZeRO-0", ["train.deepspeed.zero_stage=0"]),
            ("DeepSpeed ZeRO-2", ["train.deepspeed.zero_stage=2"]), ("DeepSpeed ZeRO-3", ["train.deepspeed.zero_stage=3"])]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lake", required=True)
    ap.add_argument("--config", default=None)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--set", action="append", default=[], help="extra config overrides (e.g. train.model.hidden=256)")
    args = ap.parse_args()
    rows = []
    for name, extra in VARIANTS:
        cfg = load_config(args.config, [f"train.num_workers={args.workers}", f"train.cpus_per_worker={max(0.5, (os.cpu_count() or 2) / args.workers - 0.5)}",
                                        f"train.midtrain.max_steps={args.steps}", "train.midtrain.epochs=100",
                                        f"train.checkpoint_every={args.steps}", *args.set, *extra], lake=args.lake)
        t0 = time.perf_counter()
        s = jobs.midtrain(cfg)
        wall = time.perf_counter() - t0
        m = list(csv.DictReader(Path(s["metrics_csv"]).open()))
        steady = m[len(m) // 4:] or m
        tps = sum(float(r["tokens_per_s"]) for r in steady) / len(steady)
        rows.append({"variant": name, "tokens_per_s_worker": tps, "tokens_per_s": tps * args.workers,
                     "peak_mb": max(float(r["peak_mem_mb"]) for r in m), "loss": float(m[-1]["loss"]), "wall": wall,
                     "params": s["base"]["parameters"]})
        print(rows[-1], flush=True)
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} cores; {args.workers} Ray Train workers; "
          f"{args.steps} optimizer steps; model {rows[0]['params']:,} parameters\n")
    print("| engine | tokens/s per worker | tokens/s total | peak RSS per worker MB | final loss | job wall s |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['variant']} | {r['tokens_per_s_worker']:,.0f} | {r['tokens_per_s']:,.0f} | {r['peak_mb']:,.0f} | "
              f"{r['loss']:.3f} | {r['wall']:.0f} |")


if __name__ == "__main__":
    main()

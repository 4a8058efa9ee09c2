"""The fixed cost of a training stage: what mid-training and SFT spend before and around their steps.

    .venv/bin/python benchmarks/stage_overhead.py            # mid-training and SFT, 2 steps each
    .venv/bin/python benchmarks/stage_overhead.py --users 600

On the tests' small lake (tests/training_lake.py: 48 items, `--users` users) with a 1-layer model, the
steps cost next to nothing, so each stage's sub-steps (gr2's own step timings, printed as they finish)
show the overhead every run pays whatever its size: Ray start-up, reading the Delta tables with Ray
Data and building and packing the examples, starting the Ray Train worker group and DeepSpeed,
checkpointing and saving the model. The table at the end gives each stage's total. The first stage also
pays `ray.init`. Run it alone: another job on the same cores changes every figure.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

SMALL = ["train.model.vocab_size=400", "train.model.hidden=48", "train.model.layers=1", "train.model.heads=2",
         "train.checkpoint_every=1000", "train.cpus_per_worker=1", "train.midtrain.batch_size=8",
         "train.midtrain.max_steps=2", "train.sft.max_steps=2", "train.sft.batch_size=4", "traces.max_slates=200"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=200, help="users of the small lake (5 slates each)")
    args = ap.parse_args()

    from training_lake import make_training_lake

    from gr2.config import SparkConfig, load_config
    from gr2.platform.progress import Steps
    from gr2.platform.spark import get_spark
    from gr2.training import jobs, traces

    work = Path(tempfile.mkdtemp(prefix="gr2-stage-overhead-"))
    try:
        lake = make_training_lake(work / "lake", users=args.users)
        mt_cfg = load_config(overrides=SMALL + ["train.max_len=128"], lake=str(lake))
        sft_cfg = load_config(overrides=SMALL + ["train.max_len=1600"], lake=str(lake))
        spark = get_spark(SparkConfig(master="local[2]", shuffle_partitions=4, driver_memory="2g"))  # before Ray
        traces.run(spark, sft_cfg)
        totals = []
        for name, fn, cfg in (("midtrain", jobs.midtrain, mt_cfg), ("sft", jobs.sft, sft_cfg)):
            t0 = time.perf_counter()
            s = fn(cfg, Steps(title=f"{name} (2 steps)"))
            totals.append((name, time.perf_counter() - t0, s["rows"], sum(s["examples"].values())))
        print(f"\n{platform.processor() or platform.machine()}, {time.strftime('%Y-%m-%d')}, {args.users} users")
        print(f"{'stage':<10} {'seconds':>8} {'examples':>9} {'rows':>6}")
        for name, sec, rows, n in totals:
            print(f"{name:<10} {sec:>8.1f} {n:>9,} {rows:>6,}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

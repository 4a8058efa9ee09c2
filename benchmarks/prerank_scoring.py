"""The pre-ranker's scoring alone: microseconds an example for `prerank.score_batch`, on one core.

    .venv/bin/python benchmarks/prerank_scoring.py --items 5000 50000 --examples 10000 --reps 5

The ETL's pre-rank step (`gold.score_examples`, and the same function in benchmarks/pandas_etl.py)
spends most of its time here: every training and test example gets K candidates voted by its
`window` most recent items, each with up to `neighbors` co-occurrence neighbours. A synthetic index
with the ETL's shape (every item `--neighbors` neighbours with tied weights, popularity by a Zipf law,
histories of up to 20 items drawn the same way) is scored in batches of `--examples` (the Arrow
batch the Spark step receives), and the minimum over `--reps` runs is printed, next to the
per-example loop (`score_candidates` + `place_target`, the rule the batch path must equal) on a sample.
Run it from two checkouts to compare versions.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gr2.etl import prerank  # noqa: E402


def synthetic(items: int, neighbors: int, examples: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    ids = np.array([f"item{i:08d}" for i in range(items)], dtype=object)
    offsets = np.arange(0, (items + 1) * neighbors, neighbors, dtype=np.int64)
    pop = rng.zipf(1.2, size=items * neighbors * 2) % items  # popular items are everyone's neighbours
    neigh = np.empty(items * neighbors, dtype=np.int32)
    for i in range(items):  # distinct neighbours per item, none the item itself
        row = np.unique(pop[i * neighbors * 2:(i + 1) * neighbors * 2])
        row = row[row != i][:neighbors]
        if len(row) < neighbors:
            extra = rng.choice(np.setdiff1d(np.arange(items), np.append(row, i)), neighbors - len(row), replace=False)
            row = np.concatenate([row, extra])
        neigh[i * neighbors:(i + 1) * neighbors] = row
    weights = (rng.integers(1, 40, items * neighbors) / 400).astype(np.float32)  # few values: many ties
    index = prerank.NeighborIndex(ids, offsets, neigh, weights, rng.permutation(items).astype(np.int32))
    draw = rng.zipf(1.2, size=(examples, 20)) % items
    histories = [ids[row[: rng.integers(1, 21)]].tolist() for row in draw]
    targets = ids[rng.zipf(1.2, size=examples) % items].tolist()
    return index, histories, targets


def loop(histories, targets, index, k, window, decay, exclude, policy) -> None:
    lookup = index.index
    for history, target in zip(histories, targets):
        h = [lookup[x] for x in history if x in lookup]
        cands, scores, all_scores = prerank.score_candidates(h, index, k, window, decay, exclude)
        prerank.place_target(cands, scores, lookup.get(target, -1), all_scores, policy)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, nargs="+", default=[5000, 50000])
    ap.add_argument("--neighbors", type=int, default=100)
    ap.add_argument("--examples", type=int, default=10000, help="examples a batch (the Arrow batch of the Spark step)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--loop-sample", type=int, default=1000, help="examples the per-example loop is timed on")
    args = ap.parse_args()

    print(f"machine: {platform.node()} ({platform.machine()}); numpy {np.__version__}; one process, one core\n")
    print("| items | neighbours | batch | score_batch us/example (min of reps) | per-example loop us/example | speed-up |")
    print("|---:|---:|---:|---:|---:|---:|")
    for items in args.items:
        index, histories, targets = synthetic(items, args.neighbors, args.examples)
        settings = dict(k=10, window=3, decay=0.6, exclude_history=True, policy="insert")
        prerank.score_batch(histories[:10], targets[:10], index, **settings)  # builds the id lookup once
        best = float("inf")
        for _ in range(args.reps):
            t0 = time.perf_counter()
            prerank.score_batch(histories, targets, index, **settings)
            best = min(best, time.perf_counter() - t0)
        n = min(args.loop_sample, len(histories))
        t0 = time.perf_counter()
        loop(histories[:n], targets[:n], index, 10, 3, 0.6, True, "insert")
        per_loop = (time.perf_counter() - t0) / n * 1e6
        per_batch = best / len(histories) * 1e6
        print(f"| {items:,} | {args.neighbors} | {len(histories):,} | {per_batch:.1f} | {per_loop:.1f} | {per_loop / per_batch:.1f}x |",
              flush=True)


if __name__ == "__main__":
    main()

"""The pre-ranker's scoring alone: microseconds an example for `prerank.score_batch`, on one core.

    .venv/bin/python benchmarks/prerank_scoring.py --items 5000 50000 --examples 10000 --reps 5

The ETL's pre-rank step (`gold.score_examples`, and the same function in benchmarks/pandas_etl.py)
spends most of its time here: every training and test example gets K candidates voted by its
`window` most recent items, each with up to `neighbors` co-occurrence neighbours. A synthetic index
with the ETL's shape (every item `--neighbors` neighbours with tied weights, popularity by a Zipf law,
histories of up to 20 items drawn with a Zipf law) is scored in batches of `--examples` (the Arrow
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
    """(index, histories, targets): every item up to `neighbors` distinct neighbours, about half of them
    from a pool of popular items (so the voters of one history share candidates, as in real data), and
    histories of 1-20 items drawn with a Zipf law."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    ids = np.array([f"item{i:08d}" for i in range(items)], dtype=object)
    pool = max(10, items // 10)
    draws = np.concatenate([rng.integers(0, pool, (items, neighbors)), rng.integers(0, items, (items, 2 * neighbors))], axis=1)
    rows = []
    for i in range(items):
        row = pd.unique(draws[i])  # first-seen order
        rows.append(row[row != i][:neighbors])
    offsets = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
    neigh = np.concatenate(rows).astype(np.int32)
    weights = (rng.integers(1, 40, len(neigh)) / 400).astype(np.float32)  # few values: many ties
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

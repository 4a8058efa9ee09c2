"""Which ranking rule over what the student's prompt shows is worth teaching, next to the incoming order?

    .venv/bin/python benchmarks/shown_rules.py -c configs/beauty.yaml --lake LAKE [--split test]

The student sees each candidate's pre-rank (its slate number) and a sequence model's rank ("seq #2").
A 135M student redoes a rule only if each of its decisions is one it can make: copying the slate's
order, or looking up "the candidate with seq #k" (measured in docs/training.md: it copies and looks up,
but did not learn to sort by a product). This scores rules of both kinds on every slate of a split with
the lake's all-users sequence model (the ranks `gr2 eval` shows), so a teacher's rule is chosen by
what it is worth: R@1, R@5 and NDCG@5 and the paired difference of NDCG@5 from the incoming order with
a bootstrap 95% interval. Deltalake reads and the saved sequence model; no Spark, no LM. Seconds.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gr2.config import load_config  # noqa: E402
from gr2.eval.diagnostics import paired_bootstrap_diff  # noqa: E402
from gr2.models import evidence as ev  # noqa: E402
from gr2.models.slates import rerank_rows  # noqa: E402
from gr2.rerank.catalog import load_catalog  # noqa: E402
from gr2.rerank.metrics import per_slate_values, slate_metrics  # noqa: E402
from gr2.rerank.slate import sequence_rank  # noqa: E402
from gr2.training.teachers import partition_order, shown_order  # noqa: E402


def lift(seq_ranks: list[int], k: int) -> list[int]:
    """The candidates with seq #1..#k first (in that order), then the rest in slate order: k lookups and a
    copy that skips them."""
    top = [p for r in range(k) for p, s in enumerate(seq_ranks) if s == r]
    return top + [p for p in range(len(seq_ranks)) if p not in top]


def lift_within(seq_ranks: list[int], k: int, m: int) -> list[int]:
    """Like lift, but only the slate's first m candidates may be lifted (the pre-ranker's top stays near the top)."""
    top = [p for r in range(len(seq_ranks)) for p, s in enumerate(seq_ranks) if s == r and p < m][:k]
    return top + [p for p in range(len(seq_ranks)) if p not in top]


def keep_first_then_lift(seq_ranks: list[int], k: int) -> list[int]:
    """The slate's #1 kept first, then seq #1..#k, then the rest in slate order."""
    rest = [p for p in lift(seq_ranks, k) if p != 0]
    return [0] + rest


def interleave(seq_ranks: list[int]) -> list[int]:
    """Slate #1, seq #1, slate #2, seq #2, ... each candidate once."""
    by_seq = sorted(range(len(seq_ranks)), key=lambda p: seq_ranks[p])
    out: list[int] = []
    for a, b in zip(range(len(seq_ranks)), by_seq):
        for p in (a, b):
            if p not in out:
                out.append(p)
    return out


RULES = {
    "incoming order (copy the slate)": lambda r: list(range(len(r))),
    "sequence model's order": lambda r: sorted(range(len(r)), key=lambda p: r[p]),
    "pre-rank x seq, lowest first (the shown rule)": shown_order,
    "pre-rank + seq, lowest first": lambda r: sorted(range(len(r)), key=lambda p: (p + r[p], p)),
    "seq #1 first, then the slate": lambda r: lift(r, 1),
    "seq #1, #2 first, then the slate": lambda r: lift(r, 2),
    "seq #1, #2, #3 first, then the slate": lambda r: lift(r, 3),
    "seq #1-#2 first in slate order, then the slate": lambda r: partition_order(r, 2),
    "seq #1-#3 first in slate order, then the slate": lambda r: partition_order(r, 3),
    "seq #1-#4 first in slate order, then the slate": lambda r: partition_order(r, 4),
    "slate #1, then seq #1, #2, then the slate": lambda r: keep_first_then_lift(r, 2),
    "slate #1, then seq #1, #2, #3, then the slate": lambda r: keep_first_then_lift(r, 3),
    "best seq among the slate's top 5 first, then the slate": lambda r: lift_within(r, 1, 5),
    "best 2 by seq among the slate's top 5 first, then the slate": lambda r: lift_within(r, 2, 5),
    "slate and seq interleaved": interleave,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-c", "--config", default=None)
    ap.add_argument("--lake", required=True)
    ap.add_argument("--split", default="test")
    ap.add_argument("--boot", type=int, default=2000, help="bootstrap resamples of the paired differences")
    args = ap.parse_args()
    t0 = time.perf_counter()
    cfg = load_config(args.config, [], args.lake)
    catalog, _ = load_catalog(cfg.lake_path)
    built = rerank_rows(cfg.lake_path, catalog, args.split, 0, cfg.train.seed, cfg.train.prompt.history)  # every slate
    by_id = {r["slate_id"]: r for r, _ in built}
    at: dict[str, list[int]] = {name: [] for name in RULES}
    for s in ev.annotate_rows(ev.load(cfg.lake_path), built, args.split):
        ranks = [sequence_rank(c.note) for c in s.candidates]
        t = [c.item_id for c in s.candidates].index(by_id[s.slate_id]["target"])
        for name, rule in RULES.items():
            at[name].append(rule(ranks).index(t))
    n = len(at["incoming order (copy the slate)"])
    base = per_slate_values(at["incoming order (copy the slate)"], "NDCG@5")
    print(f"### Rules over the prompt's pre-rank and seq rank ({args.split}, {n:,} slates; {platform.node()}, "
          f"{time.strftime('%Y-%m-%d')}, {time.perf_counter() - t0:.0f} s)\n")
    print("| rule | R@1 | R@5 | NDCG@5 | NDCG@5 - incoming [95% CI] |\n|---|---:|---:|---:|---:|")
    for name, pos in at.items():
        m = slate_metrics(pos)
        d, lo, hi = paired_bootstrap_diff(base, per_slate_values(pos, "NDCG@5"), n_boot=args.boot, seed=0)
        print(f"| {name} | {m['R@1']:.3f} | {m['R@5']:.3f} | {m['NDCG@5']:.3f} | {d:+.3f} [{lo:+.3f}, {hi:+.3f}] |")


if __name__ == "__main__":
    main()

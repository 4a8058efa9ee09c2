"""Naive vs conditional format reward: the order-copy hack and GR2's fix.

    .venv/bin/python benchmarks/reward_ablation.py --config configs/beauty.yaml --lake /work/lakes/beauty \
        --steps 8 --slates 200 --set train.max_len=1536

Part 1, the reward landscape (no training): the mean reward each reward function pays fixed policies on
the lake's test slates: copy the input order, a random permutation, the teacher-free oracle (target
first), and an invalid answer. The naive reward pays a copy its full format bonus on every slate; the
conditional one pays it only where the target was already first, so copying stops being a free lunch.

Part 2, training: DAPO from the same SFT model twice, identical but for train.dapo.reward (naive | conditional),
then both policies answer the same test slates: valid-answer share, order-copy rate (output == input
order), R@1, R@5, NDCG@5. Prints Markdown tables (paste into docs/benchmarks.md with the machine).
Part 2 needs `gr2 train sft` to have run on the lake; `--landscape-only` skips it.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gr2.config import load_config  # noqa: E402
from gr2.eval import (
    diagnostics,  # noqa: E402
    heldout,  # noqa: E402
)
from gr2.models.slates import rerank_cases  # noqa: E402
from gr2.platform.run_store import latest_model  # noqa: E402
from gr2.rerank.catalog import load_catalog  # noqa: E402
from gr2.training import rewards, rl  # noqa: E402

POLICIES = ("copy input order", "random permutation", "oracle (target first)", "target moved down 1", "invalid answer")


def policy_order(name: str, k: int, target: int, rng: random.Random):
    order = list(range(k))
    if name == "copy input order":
        return order
    if name == "random permutation":
        rng.shuffle(order)
        return order
    if name == "oracle (target first)":
        return [target] + [i for i in order if i != target]
    if name == "target moved down 1":
        if target < k - 1:
            order[target], order[target + 1] = order[target + 1], order[target]
        return order
    return None  # invalid


def landscape(cases, alpha: float, seed: int, invalid_penalty: float) -> list[dict]:
    rows = []
    for name in POLICIES:
        rng = random.Random(seed)
        totals = {"naive": [], "conditional": []}
        for _, labels in cases:
            order = policy_order(name, len(labels), labels.index(1), rng)
            for kind in totals:
                totals[kind].append(rewards.get_reward(kind)(order, labels, alpha=alpha, invalid_penalty=invalid_penalty).total)
        rows.append({"policy": name, **{k: sum(v) / len(v) for k, v in totals.items()}})
    return rows


def evaluate(cfg, model_dir: Path, slates: int, max_new_tokens: int, constrained: bool, reuse: bool = False) -> dict:
    saved = model_dir.parent / f"rerank_test{'_constrained' if constrained else ''}.json"
    if reuse and saved.exists():  # what evaluate_rerank wrote for this model on the same slates and mode
        r = json.loads(saved.read_text())
        if r["slates"] == len(_cases(cfg, slates)) and r["constrained"] == constrained:
            print(f"(reusing {saved})")
            return {"valid": r["valid_share"], "copy": diagnostics.order_copy_rate(r["outputs"]), **r["model"]}
    r = heldout.evaluate_rerank(cfg, model_dir=model_dir, split="test", max_slates=slates, max_new_tokens=max_new_tokens,
                             constrained=constrained)
    orders = r["outputs"]
    return {"valid": r["valid_share"], "copy": diagnostics.order_copy_rate(orders), **r["model"]}


def _cases(cfg, slates: int) -> list:
    """The seeded test slates evaluate_rerank answers (those with one target)."""
    catalog, _ = load_catalog(cfg.lake_path)
    return [c for c in rerank_cases(cfg.lake_path, catalog, "test", slates, cfg.train.seed, cfg.train.prompt.history)
            if 1 in c[1]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=None)
    ap.add_argument("--lake", required=True)
    ap.add_argument("--steps", type=int, default=8, help="DAPO steps per variant")
    ap.add_argument("--slates", type=int, default=200, help="test slates answered by each policy")
    ap.add_argument("--max-new-tokens", type=int, default=512)
    ap.add_argument("--landscape-only", action="store_true")
    ap.add_argument("--free", action="store_true", help="answer freely (default: ranking decoded among the candidates, "
                    "which small models need to give valid answers at all)")
    ap.add_argument("--reuse-start", action="store_true", help="take the SFT model's row from the answers it saved for "
                    "the same number of test slates and mode (rerank_test.json beside it; same --max-new-tokens assumed)")
    ap.add_argument("--set", action="append", default=[], help="extra config overrides")
    args = ap.parse_args()
    cfg = load_config(args.config, args.set, args.lake)
    catalog, _ = load_catalog(cfg.lake_path)
    cases = [(s, lab) for s, lab in rerank_cases(cfg.lake_path, catalog, "test", 0, cfg.train.seed) if sum(lab) == 1]
    alpha = cfg.train.dapo.alpha
    print(f"machine: {platform.node()} ({platform.machine()}, {__import__('os').cpu_count()} CPUs); lake {cfg.lake_path}")
    print(f"\n### Reward landscape: mean reward per fixed policy on {len(cases):,} test slates (alpha {alpha}, "
          f"invalid answers {cfg.train.dapo.invalid_penalty:+g})\n")
    print("| policy | naive reward | conditional reward |\n|---|---:|---:|")
    for r in landscape(cases, alpha, cfg.train.seed, cfg.train.dapo.invalid_penalty):
        print(f"| {r['policy']} | {r['naive']:+.4f} | {r['conditional']:+.4f} |")
    first = sum(lab.index(1) == 0 for _, lab in cases) / len(cases)
    print(f"\n(target already first in the input order on {first:.1%} of slates)")
    if args.landscape_only:
        return
    sft_dir = latest_model(cfg, "sft")
    constrained = not args.free
    results = [("SFT (start of both)", evaluate(cfg, sft_dir, args.slates, args.max_new_tokens, constrained, args.reuse_start),
                0.0, None)]
    for name, reward in (("DAPO, naive format reward", "naive"), ("DAPO, conditional format reward", "conditional")):
        vcfg = load_config(args.config, args.set + [f"train.dapo.reward={reward}",
                                                    f"train.dapo.max_steps={args.steps}"], args.lake)
        t0 = time.perf_counter()
        s = rl.run(vcfg)
        secs = time.perf_counter() - t0
        results.append((name, evaluate(vcfg, Path(s["model_dir"]), args.slates, args.max_new_tokens, constrained), secs, s))
    # The rollouts themselves, step by step (metrics.csv): the order-copy rate of sampled answers moves before a
    # greedy answer does, so this is where a drift toward copying shows first.
    print("\n### Rollouts per DAPO step (each variant's metrics.csv)\n")
    print("| variant | step | reward | valid | order copies | promotion | entropy | kept groups |\n|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, _, _, s in results[1:]:
        with open(s["metrics_csv"]) as f:
            for row in csv.DictReader(f):
                print(f"| {name.split(', ')[1]} | {row['step']} | {float(row['reward']):+.3f} | {float(row['valid_rate']):.1%} | "
                      f"{float(row['order_copy_rate']):.1%} | {float(row['promotion']):+.3f} | {float(row['entropy']):.3f} | "
                      f"{float(row['kept_group_ratio']):.0%} |")
    mode = "free answers" if args.free else "ranking decoded among the candidates"
    print(f"\n### DAPO {args.steps} steps from the same SFT model, {args.slates} test slates ({mode})\n")
    print("| policy | train s | last reward | valid | order copies | R@1 | R@5 | NDCG@5 |\n|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, r, secs, s in results:
        last = (s or {}).get("last") or {}
        rew = f"{float(last['reward']):+.3f}" if last.get("reward") else ""
        print(f"| {name} | {secs:.0f} | {rew} | {r['valid']:.1%} | {r['copy']:.1%} | {r['R@1']:.4f} | {r['R@5']:.4f} | {r['NDCG@5']:.4f} |")


if __name__ == "__main__":
    main()

"""Naive vs conditional format reward: the order-copy hack and GR2's fix.

    .venv/bin/python benchmarks/reward_ablation.py --config configs/beauty.yaml --lake /work/lakes/beauty --free \
        --steps 60 --chunk 4 --eval-every 12 --minutes 100 --slates 150 --max-new-tokens 320 \
        --set train.dapo.constrained_rollouts=false --set train.dapo.temperature=1.5

Part 1, the reward landscape (no training): the mean reward each reward function pays fixed policies on
the lake's test slates: copy the input order, a random permutation, the teacher-free oracle (target
first), and an invalid answer. The naive reward pays a copy its full format bonus on every slate; the
conditional one pays it only where the target was already first, so copying stops being a free lunch.

Part 2, training: DAPO from the same SFT model twice, identical but for train.dapo.reward (naive | conditional),
then both policies answer the same test slates: valid-answer share, order-copy rate (output == input
order), R@1, R@5, NDCG@5. Prints Markdown tables (paste into docs/benchmarks.md with the machine).
Part 2 needs `gr2 train sft` to have run on the lake; `--landscape-only` skips it.

A drift takes long RL (a DAPO step is minutes on CPU), so part 2 spans sittings: the two variants train
in turns, `--chunk` steps each (train.dapo.pause_after), each its own resumable run of `--steps` steps, and
`--minutes` stops starting new turns. The same command continues where the last one stopped: the state
(each variant's run, steps done and greedy evaluations, every `--eval-every` steps) is kept in
<lake>/reports/reward_ablation/<settings>.json, and a finished variant is not trained again. The
rollouts' per-step rates are plotted beside it (PNG).
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

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # copy_propensity, beside this script

from gr2.config import load_config  # noqa: E402
from gr2.eval import (
    diagnostics,  # noqa: E402
    heldout,  # noqa: E402
)
from gr2.models.slates import rerank_cases  # noqa: E402
from gr2.platform.run_store import latest_model  # noqa: E402
from gr2.rerank.catalog import load_catalog  # noqa: E402
from gr2.rerank.metrics import paired_bootstrap_diff, per_slate_values  # noqa: E402
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
            return _row(r)
    return _row(heldout.evaluate_rerank(cfg, model_dir=model_dir, split="test", max_slates=slates,
                                        max_new_tokens=max_new_tokens, constrained=constrained))


def _row(r: dict) -> dict:
    """An evaluation's row, with its answers (None = invalid) for the paired comparisons."""
    return {"valid": r["valid_share"], "copy": diagnostics.order_copy_rate(r["outputs"]), **r["model"], "orders": r["outputs"]}


def per_slate(row: dict, cases: list) -> dict[str, np.ndarray]:
    """Per-slate values of an evaluation on `cases` (the seeded test slates it answered, in order): order
    copy (an invalid answer counts as none: it is not the hack), R@1, NDCG@5 (an invalid answer keeps the
    incoming order, as evaluate_rerank scores it)."""
    orders = row["orders"]
    if len(orders) != len(cases):
        raise ValueError(f"{len(orders)} answers for {len(cases)} slates: not the same evaluation")
    copy = np.array([o is not None and list(o) == list(range(len(o))) for o in orders], dtype=np.float64)
    pos = heldout.target_positions(orders, cases)
    return {"order copies": copy, "R@1": per_slate_values(pos, "R@1"), "NDCG@5": per_slate_values(pos, "NDCG@5")}


def _cases(cfg, slates: int) -> list:
    """The seeded test slates evaluate_rerank answers (those with one target)."""
    catalog, _ = load_catalog(cfg.lake_path)
    return [c for c in rerank_cases(cfg.lake_path, catalog, "test", slates, cfg.train.seed, cfg.train.prompt.history)
            if 1 in c[1]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=None)
    ap.add_argument("--lake", required=True)
    ap.add_argument("--steps", type=int, default=8, help="DAPO steps per variant (the length of each run's schedule)")
    ap.add_argument("--chunk", type=int, default=4, help="steps a variant trains in its turn before the other's")
    ap.add_argument("--eval-every", type=int, default=0, help="greedy evaluation of a variant every this many steps "
                    "(0 = only when it finishes)")
    ap.add_argument("--probe-every", type=int, default=0, help="read each variant's copy propensity every this many "
                    "steps (benchmarks/copy_propensity.py: no sampling; 0 = never)")
    ap.add_argument("--probe-slates", type=int, default=60, help="the first this many of the --slates the probe reads "
                    "(about 2.5 s a slate and model on 2 cores)")
    ap.add_argument("--minutes", type=float, default=0, help="start no new turn after this many minutes (0 = run to the "
                    "end); the same command continues")
    ap.add_argument("--slates", type=int, default=200, help="test slates answered by each policy")
    ap.add_argument("--max-new-tokens", type=int, default=512)
    ap.add_argument("--landscape-only", action="store_true")
    ap.add_argument("--report-only", action="store_true", help="print the tables of the state kept so far; train nothing")
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
    land = landscape(cases, alpha, cfg.train.seed, cfg.train.dapo.invalid_penalty)
    for r in land:
        print(f"| {r['policy']} | {r['naive']:+.4f} | {r['conditional']:+.4f} |")
    args.copy_reward = next({v: r[v] for v in VARIANTS} for r in land if r["policy"] == "copy input order")
    first = sum(lab.index(1) == 0 for _, lab in cases) / len(cases)
    print(f"\n(target already first in the input order on {first:.1%} of slates)")
    if args.landscape_only:
        return
    state_path = Path(cfg.lake_path) / "reports" / "reward_ablation" / f"{_settings_key(args)}.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {"args": vars(args), "variants": {}}
    constrained = not args.free
    if "orders" not in state.get("start", {}):  # (a state from before answers were kept: read them back)
        state["start"] = evaluate(cfg, latest_model(cfg, "sft"), args.slates, args.max_new_tokens, constrained,
                                  args.reuse_start or "start" in state)
        _save(state_path, state)
    if args.report_only:
        report(args, state, state_path)
        return
    if args.probe_every:  # the start, and variants paused at a probed step by a run that did not probe
        if "random" not in state["start"].get("probe", {}):  # (a probe from before the random-order control)
            state["start"]["probe"] = probe(cfg, latest_model(cfg, "sft"), args)
            _save(state_path, state)
        for rec in state["variants"].values():
            take_probe(cfg, rec, args, state, state_path)
    train_in_turns(args, state, state_path, constrained, deadline=time.time() + 60 * args.minutes if args.minutes else None)
    report(args, state, state_path)


VARIANTS = {"naive": "DAPO, naive format reward", "conditional": "DAPO, conditional format reward"}


def _settings_key(args) -> str:
    """One state file per experiment: what it trains and how it evaluates, not how long a sitting is."""
    import hashlib

    what = [args.config, args.steps, args.slates, args.max_new_tokens, args.free, sorted(args.set)]
    return hashlib.sha256(json.dumps(what).encode()).hexdigest()[:12]


def _save(path: Path, state: dict) -> None:
    from gr2.platform.files import write_text_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(state, indent=1, default=str))


def train_in_turns(args, state: dict, state_path: Path, constrained: bool, deadline: float | None) -> None:
    """`--chunk` steps of each unfinished variant in turn (the same slates in the same order for both),
    until both reach `--steps` or the next turn would start past `deadline`."""
    turn_s = 0.0
    while True:
        # the variant behind goes first, so a sitting that stops between turns leaves them level next time
        todo = sorted((v for v in VARIANTS if not state["variants"].get(v, {}).get("finished")),
                      key=lambda v: state["variants"].get(v, {}).get("steps_done", 0))
        if not todo:
            return
        for v in todo:
            if deadline and time.time() + turn_s > deadline:
                print(f"--minutes reached: stopping before {v}'s next turn; the same command continues", flush=True)
                return
            rec = state["variants"].setdefault(v, {"steps_done": 0, "evals": {}, "train_s": 0.0})
            pause = min(rec["steps_done"] + args.chunk, args.steps)
            vcfg = load_config(args.config, args.set + [f"train.dapo.reward={v}", f"train.dapo.max_steps={args.steps}",
                                                        f"train.dapo.pause_after={pause}", "train.dapo.checkpoint_every=1"],
                               args.lake)
            t0 = time.perf_counter()
            s = rl.run(vcfg, publish=False)  # a variant is not the lake's DAPO model
            turn_s = time.perf_counter() - t0
            rec.update(run=s["run"], steps_done=s["steps_done"], finished=not s["paused"], model_dir=s["model_dir"],
                       metrics_csv=s["metrics_csv"], train_s=rec["train_s"] + turn_s)
            print(f"{v}: step {s['steps_done']}/{args.steps} ({turn_s:.0f} s this turn)", flush=True)
            _save(state_path, state)
            if rec["finished"] or (args.eval_every and rec["steps_done"] % args.eval_every == 0):
                if str(rec["steps_done"]) not in rec["evals"]:
                    rec["evals"][str(rec["steps_done"])] = {
                        **evaluate(vcfg, Path(s["model_dir"]), args.slates, args.max_new_tokens, constrained),
                        "train_s": rec["train_s"]}
                    _save(state_path, state)
            take_probe(vcfg, rec, args, state, state_path)


def probe(cfg, model_dir: Path, args) -> dict[str, list]:
    """The copy propensity of `model_dir` on the evaluation's slates, reading the start model's reasoning."""
    from copy_propensity import propensity

    return propensity(cfg, Path(model_dir), latest_model(cfg, "sft"), args.slates, args.max_new_tokens, args.probe_slates)


def take_probe(cfg, rec: dict, args, state: dict, state_path: Path) -> None:
    """A variant's probe at its current step, once, where `--probe-every` asks for one or the run finished
    (its model folder holds that step's weights)."""
    if not args.probe_every or not (rec.get("finished") or rec["steps_done"] % args.probe_every == 0):
        return
    probes = rec.setdefault("probes", {})
    if str(rec["steps_done"]) not in probes and Path(rec.get("model_dir", "")).is_dir():
        probes[str(rec["steps_done"])] = probe(cfg, rec["model_dir"], args)
        _save(state_path, state)


def probe_report(state: dict) -> None:
    """The propensities by step, and the latest of each variant against SFT and against each other."""
    from copy_propensity import MEASURES, mean, measures, paired

    if "probe" not in state["start"]:
        return
    base = measures(state["start"]["probe"])
    print("\n### Copy propensity by step (every policy reads SFT's greedy reasoning; benchmarks/copy_propensity.py)\n")
    print("| policy | DAPO steps | " + " | ".join(MEASURES) + " |\n|---|---:|" + "---:|" * len(MEASURES))
    print("| SFT (start of both) | 0 | " + " | ".join(mean(base[m]) for m in MEASURES) + " |")
    latest = {}
    for v in VARIANTS:
        probes = {int(k): measures(p) for k, p in state["variants"].get(v, {}).get("probes", {}).items()}
        for step in sorted(probes):
            print(f"| {v} | {step} | " + " | ".join(mean(probes[step][m]) for m in MEASURES) + " |")
        latest[v] = probes
    pairs = [(f"{v} step {max(p)} - SFT", base, p[max(p)]) for v, p in latest.items() if p]
    common = set(latest.get("naive", {})) & set(latest.get("conditional", {}))
    if common:
        step = max(common)
        pairs.append((f"naive - conditional, step {step}", latest["conditional"][step], latest["naive"][step]))
    print("\n| paired difference (bootstrap 95%) | " + " | ".join(MEASURES) + " |\n|---|" + "---|" * len(MEASURES))
    for name, a, b in pairs:
        print(f"| {name} | " + " | ".join(paired(a[m], b[m]) for m in MEASURES) + " |")


def rollout_rows(rec: dict) -> list[dict]:
    if not rec.get("metrics_csv") or not Path(rec["metrics_csv"]).exists():
        return []
    with open(rec["metrics_csv"]) as f:
        return [r for r in csv.DictReader(f) if int(r["step"]) <= rec["steps_done"]]


def report(args, state: dict, state_path: Path) -> None:
    """The rollouts step by step (where a drift toward copying shows first: the order-copy rate of sampled
    answers moves before a greedy answer does), their plot, and the greedy evaluations."""
    rows = {v: rollout_rows(state["variants"].get(v, {})) for v in VARIANTS}
    print("\n### Rollouts per DAPO step (each variant's metrics.csv)\n")
    print("| variant | step | reward | valid | order copies | promotion | entropy | kept groups |\n|---|---:|---:|---:|---:|---:|---:|---:|")
    for v, rs in rows.items():
        for row in rs:
            print(f"| {v} | {row['step']} | {float(row['reward']):+.3f} | {float(row['valid_rate']):.1%} | "
                  f"{float(row['order_copy_rate']):.1%} | {float(row['promotion']):+.3f} | {float(row['entropy']):.3f} | "
                  f"{float(row['kept_group_ratio']):.0%} |")
    print("\n### Rollouts in blocks of steps (means)\n")
    print("| steps | naive valid | naive copies | conditional valid | conditional copies |\n|---|---:|---:|---:|---:|")
    most = max((len(r) for r in rows.values()), default=0)
    block = args.chunk
    for lo in range(0, most, block):
        cells = []
        for v in VARIANTS:
            part = rows[v][lo:lo + block]
            for key in ("valid_rate", "order_copy_rate"):
                cells.append(f"{sum(float(r[key]) for r in part) / len(part):.1%}" if part else "")
        print(f"| {lo + 1}-{lo + block} | " + " | ".join(cells) + " |")
    both = min(len(rows["naive"]), len(rows["conditional"]))
    if both >= 2:  # the two runs saw the same slates step by step: pair the steps
        half = both // 2
        a = [float(r["order_copy_rate"]) for r in rows["conditional"][half:both]]
        b = [float(r["order_copy_rate"]) for r in rows["naive"][half:both]]
        d, lo_, hi = paired_bootstrap_diff(np.array(a), np.array(b))
        print(f"\nRollouts' order copies over steps {half + 1}-{both}: naive {np.mean(b):.1%}, conditional {np.mean(a):.1%}; "
              f"naive - conditional {d:+.3f} [{lo_:+.3f}, {hi:+.3f}] (paired by step, bootstrap 95%)")
    copy_pull(rows, getattr(args, "copy_reward", None))
    plot(rows, state_path.with_suffix(".png"))
    mode = "free answers" if args.free else "ranking decoded among the candidates"
    print(f"\n### Greedy answers on {args.slates} test slates ({mode}), from the same SFT model\n")
    print("| policy | DAPO steps | train s | valid | order copies | R@1 | R@5 | NDCG@5 |\n|---|---:|---:|---:|---:|---:|---:|---:|")
    table = [("SFT (start of both)", 0, None, state["start"])]
    for v, name in VARIANTS.items():
        rec = state["variants"].get(v, {})
        table += [(name, int(step), r.get("train_s"), r) for step, r in sorted(rec.get("evals", {}).items(), key=lambda x: int(x[0]))]
    for name, step, secs, r in table:
        print(f"| {name} | {step} | {f'{secs:.0f}' if secs else ''} | {r['valid']:.1%} | {r['copy']:.1%} | {r['R@1']:.4f} | "
              f"{r['R@5']:.4f} | {r['NDCG@5']:.4f} |")
    paired(args, state)
    probe_report(state)
    print(f"\nstate: {state_path}\nplot: {state_path.with_suffix('.png')}")


def copy_pull(rows: dict, copy_reward: dict | None) -> None:
    """What a sampled order copy earns against the rollouts it is normalised with, per reward: the pull the
    hack needs. A copy is always valid, so against rollouts with invalid answers (-1) it is ahead under
    either reward; the naive reward's extra pull is only the bonus the conditional one withholds from a
    copy and pays the other valid answers (those that moved the target up or kept it first)."""
    if not copy_reward or not all(rows.values()):
        return
    print("\n### What an order copy earns against the rollouts (means over all steps; a copy's reward is the "
          "landscape's, over the test slates)\n")
    print("| variant | rollout reward | valid | valid answers paid the bonus | copy's reward | copy - rollout mean |")
    print("|---|---:|---:|---:|---:|---:|")
    for v, rs in rows.items():
        reward = float(np.mean([float(r["reward"]) for r in rs]))
        valid = float(np.mean([float(r["valid_rate"]) for r in rs]))
        paid = sum(float(r["format_counted"]) for r in rs) / max(sum(float(r["format"]) for r in rs), 1e-9)
        print(f"| {v} | {reward:+.3f} | {valid:.1%} | {paid:.1%} | {copy_reward[v]:+.3f} | {copy_reward[v] - reward:+.3f} |")


def paired(args, state: dict) -> None:
    """Each variant's latest evaluation against SFT, and naive against conditional at the step both
    reached, on the same slates: paired bootstrap 95% intervals of the differences."""
    if "orders" not in state["start"]:
        return  # an evaluation saved before answers were kept
    cases = _cases(load_config(args.config, args.set, args.lake), args.slates)
    base = per_slate(state["start"], cases)
    latest = {}
    for v in VARIANTS:
        evals = {int(k): r for k, r in state["variants"].get(v, {}).get("evals", {}).items() if "orders" in r}
        latest[v] = evals
    pairs = [(f"{v} step {max(e)} - SFT", base, per_slate(e[max(e)], cases)) for v, e in latest.items() if e]
    common = set(latest.get("naive", {})) & set(latest.get("conditional", {}))
    if common:
        step = max(common)
        pairs.append((f"naive - conditional, step {step}", per_slate(latest["conditional"][step], cases),
                      per_slate(latest["naive"][step], cases)))
    if not pairs:
        return
    print("\n### Paired differences on the same test slates (bootstrap 95% intervals)\n")
    print("| comparison | order copies | R@1 | NDCG@5 |\n|---|---|---|---|")
    for name, a, b in pairs:
        cells = [("{:+.3f} [{:+.3f}, {:+.3f}]").format(*paired_bootstrap_diff(a[m], b[m])) for m in ("order copies", "R@1", "NDCG@5")]
        print(f"| {name} | " + " | ".join(cells) + " |")


def plot(rows: dict, out: Path) -> None:
    """Valid share and order-copy rate of each step's rollouts, both variants on one time axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharex=True)
    for v, rs in rows.items():
        steps = [int(r["step"]) for r in rs]
        for ax, key in zip(axes, ("valid_rate", "order_copy_rate")):
            ax.plot(steps, [float(r[key]) for r in rs], marker=".", label=v)
    for ax, title in zip(axes, ("valid answers (share of rollouts)", "order copies (share of rollouts)")):
        ax.set_title(title)
        ax.set_xlabel("DAPO step")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)

if __name__ == "__main__":
    main()

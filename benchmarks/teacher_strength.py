"""How strong is the offline statistical teacher, next to the order it is asked to improve?

    .venv/bin/python benchmarks/teacher_strength.py --config configs/beauty.yaml --lake /work/lakes/beauty3 \
        --slates 2000 --incoming 0 0.5 1 2 4
    # with a sequential model's ranking as a further signal, each weight against each incoming weight
    .venv/bin/python benchmarks/teacher_strength.py -c configs/beauty.yaml --lake LAKE --incoming 1 2 3 --sequential 0 1 2 4

Distillation can only beat the incoming order if the teacher does. For each split this scores sampled
slates with the cross-fitted teacher of `gr2 traces` (built from the other user fold's training
sequences, never the slate's label) at temperature 0, for several weights of its "incoming" signal
(the slate's pre-ranked order), and prints R@1, R@5 and NDCG@5 next to the incoming order. A last
table gives the rejection-sampling acceptance rate per attempt at the configured temperature, which
sets how many teacher calls a trace costs. Reads the lake with deltalake; no Spark, no model.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gr2.config import load_config  # noqa: E402
from gr2.models import evidence as ev  # noqa: E402
from gr2.rerank.catalog import load_catalog  # noqa: E402
from gr2.rerank.metrics import slate_metrics  # noqa: E402
from gr2.rerank.slate import slate_of_row  # noqa: E402
from gr2.training import data  # noqa: E402
from gr2.training.traces import fit_sequential, fold, make_teachers  # noqa: E402

METRICS = ("R@1", "R@5", "NDCG@5")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-c", "--config", default=None)
    ap.add_argument("--lake", required=True)
    ap.add_argument("--slates", type=int, default=2000, help="slates sampled per split")
    ap.add_argument("--incoming", type=float, nargs="+", default=[0.0, 0.5, 1.0, 2.0, 4.0],
                    help="weights of the teacher's incoming-order signal to compare")
    ap.add_argument("--sequential", type=float, nargs="*", default=[],
                    help="weights of the teacher's sequential-model signal to compare, each with every --incoming "
                         "weight (fits the SASRec-style models of gr2/models/evidence.py: one per user fold and one "
                         "on all users, within traces.sequential_epochs / traces.sequential_seconds)")
    ap.add_argument("--refit", action="store_true", help="fit new sequential models even where the lake has some")
    ap.add_argument("--set", action="append", default=[], help="extra config overrides")
    args = ap.parse_args()
    overrides = list(args.set) + (["traces.weights.sequential=1"] if any(args.sequential) else [])
    cfg = load_config(args.config, overrides, args.lake)
    from deltalake import DeltaTable

    t0 = time.perf_counter()
    lake = Path(cfg.lake_path)
    catalog, _ = load_catalog(lake)
    slates = DeltaTable(str(data.table_path(lake, "gold.slates"))).to_pandas(
        columns=["slate_id", "user_id", "history", "candidates", "target", "split", "origin"])
    slates = slates[slates.origin == "prerank"]
    seqs = DeltaTable(str(data.table_path(lake, "gold.sequences"))).to_pandas(columns=["user_id", "items", "split"])
    seq_rows = list(zip(seqs["user_id"], seqs["items"], seqs["split"]))
    evidence = None
    if any(args.sequential):
        stored = lake / "models" / "sequential" / "LATEST"
        if stored.exists() and not args.refit:  # the models `gr2 traces` fitted and the prompts show
            evidence = ev.load(lake)
            print(f"sequential models: {evidence.run} (the lake's LATEST; --refit fits new ones)")
        else:
            evidence = fit_sequential(cfg, seq_rows, on_progress=print)
    teachers = make_teachers(cfg, seq_rows, catalog, evidence)
    print(f"lake {lake}: {len(slates):,} pre-ranked slates, teacher {teachers[0]!r} ({time.perf_counter() - t0:.0f} s)")

    rows, feats = [], {}
    for split in ("train", "valid", "test"):
        part = slates[slates.split == split]
        part = part.sample(n=min(args.slates, len(part)), random_state=cfg.train.seed)
        cases = []
        records = part.to_dict("records")
        built = [(r, s) for r in records if (s := slate_of_row(r, catalog, cfg.train.prompt.history)) is not None]
        # the sequence model's rank as a prompt shows it (evidence.py): training slates from the model of the
        # user's other fold, validation and test slates from the all-users model
        shown = ev.annotate_rows(evidence, built, split)
        for (r, _), s in zip(built, shown):
            evs = teachers[fold(r["user_id"])]._evidence(s.history, s.candidates)
            w0 = teachers[0].weights
            base = np.array([e.score - e.parts["incoming"] - e.parts["sequential"] for e in evs])
            unit = np.array([e.parts["incoming"] for e in evs]) / max(w0["incoming"], 1e-12)
            seq = np.array([e.parts["sequential"] for e in evs]) / max(w0["sequential"], 1e-12)
            cases.append((base, unit, seq, list(r["candidates"]).index(r["target"])))
        feats[split] = cases
        incoming = slate_metrics(p for *_, p in cases)
        rows.append((split, len(cases), "incoming order", incoming))
        if any(args.sequential):  # the sequence model's ranking alone (cross-fitted on train, all users otherwise)
            pos = [sorted(range(len(q)), key=lambda i: (-q[i], i)).index(t) for _, _, q, t in cases]
            rows.append((split, len(cases), "sequential model alone", slate_metrics(pos)))
        for ws in args.sequential or [0.0]:
            for w in args.incoming:
                pos = []
                for base, unit, seq, target in cases:
                    keys = base + w * unit + ws * seq
                    order = sorted(range(len(keys)), key=lambda i: (-keys[i], i))
                    pos.append(order.index(target))
                name = f"teacher, incoming weight {w:g}" + (f", sequential {ws:g}" if args.sequential else "")
                rows.append((split, len(cases), name, slate_metrics(pos)))

    print(f"\n### Statistical teacher at temperature 0 vs the incoming order ({platform.node()}, "
          f"{time.perf_counter() - t0:.0f} s)\n")
    print("| split | slates | order | " + " | ".join(METRICS) + " |")
    print("|---|---:|---|" + "---:|" * len(METRICS))
    for split, n, name, m in rows:
        print(f"| {split} | {n:,} | {name} | " + " | ".join(f"{m[k]:.3f}" for k in METRICS) + " |")

    temp = cfg.traces.temperature
    rng = np.random.default_rng(cfg.train.seed)
    print(f"\n### Acceptance per attempt on training slates (temperature {temp:g}, top-{cfg.traces.accept_top_k})\n")
    print("| incoming weight | accepted per attempt | attempts per accepted slate |")
    print("|---:|---:|---:|")
    ws = max(args.sequential or [0.0])
    print(f"(sequential weight {ws:g})\n" if args.sequential else "", end="")
    for w in args.incoming:
        hits = []
        for base, unit, seq, target in feats["train"]:
            keys = base + w * unit + ws * seq + temp * rng.gumbel(size=len(base))
            order = sorted(range(len(keys)), key=lambda i: (-keys[i], i))
            hits.append(order.index(target) < cfg.traces.accept_top_k)
        rate = float(np.mean(hits)) if hits else 0.0
        print(f"| {w:g} | {rate:.3f} | {1 / rate if rate else float('inf'):.1f} |")


if __name__ == "__main__":
    main()

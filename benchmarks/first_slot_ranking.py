"""Ranking mode, two decoders: slot by slot (K-1 passes) against one pass (the first slot's scores).

    .venv/bin/python benchmarks/first_slot_ranking.py --lake /work/lakes/demo --stage sft --slates 40

Runs the serving engine itself (gr2.serve.engine.Reranker, no HTTP) on seeded test slates of the lake,
once per decoder (`serve.ranking_decoder`), one request at a time, and prints a Markdown table: ms per
slate (median and p95), R@1/R@5/NDCG@5 next to the incoming order, and how often the one-pass order
agrees with the slot-by-slot one (same first item, same whole order), and how often each decoder
answers the incoming order unchanged.
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
from gr2.platform.precision import use_autocast  # noqa: E402
from gr2.rerank.catalog import load_catalog  # noqa: E402
from gr2.rerank.formats import RerankFormat  # noqa: E402
from gr2.rerank.metrics import slate_metrics  # noqa: E402
from gr2.serve import engine, launch  # noqa: E402
from gr2.serve.check import _slates  # noqa: E402

METRICS = ("R@1", "R@5", "NDCG@5")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-c", "--config", default=None)
    ap.add_argument("--lake", required=True)
    ap.add_argument("--stage", default=None, help="dapo or sft [default: serve.stage]")
    ap.add_argument("--run", default=None, help="a run id of the stage [default: its LATEST]")
    ap.add_argument("--slates", type=int, default=40)
    ap.add_argument("--set", action="append", default=[], help="extra config overrides")
    args = ap.parse_args()
    cfg = load_config(args.config, args.set, args.lake)
    stage = args.stage or cfg.serve.stage
    model_dir = launch.model_dir(cfg, stage, args.run)
    fmt = RerankFormat.of_model(model_dir, RerankFormat.from_config(cfg.train.prompt))
    items, _ = load_catalog(cfg.lake_path)
    cases = _slates(cfg, args.slates)
    reqs = [engine.RerankRequest(h, c, "ranking", False, 10**9) for h, c, _ in cases]
    targets = [c.index(t) for _, c, t in cases]
    autocast = use_autocast(cfg.train.autocast)
    print(f"{len(cases)} test slates of {cfg.lake_path}, {stage} model {model_dir.parent.name}, autocast {autocast}")

    orders, rows = {}, []
    for decoder in ("slots", "first"):
        rr = engine.Reranker(model_dir, engine.Catalog(items), fmt, cfg.serve.max_new_tokens, autocast, 1, ranking_decoder=decoder)
        rr.answer(reqs[:1])  # warm-up: first-call allocations out of the timing
        ms, out = [], []
        for r in reqs:
            t0 = time.perf_counter()
            (o,) = rr.answer([r])
            ms.append((time.perf_counter() - t0) * 1000)
            out.append(o.order)
        orders[decoder] = out
        pos = [o.index(t) for o, t in zip(out, targets)]
        rows.append((decoder, float(np.median(ms)), float(np.percentile(ms, 95)), slate_metrics(pos)))
        print(f"  {decoder}: median {np.median(ms):.0f} ms", flush=True)
    incoming = slate_metrics(targets)
    top = np.mean([a[0] == b[0] for a, b in zip(orders["slots"], orders["first"])])
    whole = np.mean([a == b for a, b in zip(orders["slots"], orders["first"])])

    print(f"\n### Ranking mode by decoder ({platform.node()}, {len(cases)} slates, one request at a time)\n")
    print("| decoder | median ms | p95 ms | " + " | ".join(METRICS) + " |")
    print("|---|---:|---:|" + "---:|" * len(METRICS))
    print("| incoming order | | | " + " | ".join(f"{incoming[k]:.3f}" for k in METRICS) + " |")
    for decoder, med, p95, m in rows:
        name = {"slots": "slot by slot (K-1 passes)", "first": "one pass (first slot's scores)"}[decoder]
        print(f"| {name} | {med:.0f} | {p95:.0f} | " + " | ".join(f"{m[k]:.3f}" for k in METRICS) + " |")
    copies = {d: np.mean([o == sorted(o) for o in out]) for d, out in orders.items()}
    print(f"\nOne pass against slot by slot: same first item {top:.1%}, same whole order {whole:.1%}. "
          f"Orders equal to the incoming one: slot by slot {copies['slots']:.1%}, one pass {copies['first']:.1%}.")


if __name__ == "__main__":
    main()

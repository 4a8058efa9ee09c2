"""Where a ranking request's time goes on HF: the prompt's prefill, three ways.

    .venv/bin/python benchmarks/prefill_paths.py -c configs/beauty.yaml --lake /work/lakes/beauty --slates 10

The one-pass ranking (`serve.ranking_decoder: first`) is one prefill of the prompt and one scoring step.
On seeded test slates of the lake, one at a time, this times the prefill of the serving prompt (a) with
fp32 weights under bf16 autocast and logits for every position (what `Prefix` ran before it asked for
the last position's only), (b) the same with `logits_to_keep=1`, (c) with the weights cast to bf16 once
and `logits_to_keep=1`; then the whole one-pass ranking with (b)'s and (c)'s weights, and whether (c)
ranks as (b) does. Prints a Markdown table of median ms with the share of this CPU's peak.
"""

from __future__ import annotations

import argparse
import copy
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gr2.config import load_config  # noqa: E402
from gr2.models.generation import with_bos
from gr2.models.ranking import first_slot_ranking  # noqa: E402
from gr2.platform.precision import cpu_autocast, use_autocast  # noqa: E402
from gr2.rerank.catalog import load_catalog  # noqa: E402
from gr2.rerank.formats import RerankFormat  # noqa: E402
from gr2.serve import engine, launch  # noqa: E402
from gr2.serve.check import _slates  # noqa: E402


def timed(fn, reps: int = 1) -> float:
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) * 1000 / reps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-c", "--config", default=None)
    ap.add_argument("--lake", required=True)
    ap.add_argument("--stage", default=None, help="dapo or sft [default: serve.stage]")
    ap.add_argument("--slates", type=int, default=10)
    ap.add_argument("--set", action="append", default=[], help="extra config overrides")
    args = ap.parse_args()
    cfg = load_config(args.config, args.set, args.lake)
    stage = args.stage or cfg.serve.stage
    model_dir = launch.model_dir(cfg, stage, None)
    fmt = RerankFormat.of_model(model_dir, RerankFormat.from_config(cfg.train.prompt))
    items, _ = load_catalog(cfg.lake_path)
    rr = engine.Reranker(model_dir, engine.Catalog(items), fmt, 16, use_autocast(cfg.train.autocast), 1,
                         ranking_decoder="first", lake=cfg.lake_path)
    texts = []
    for h, c, _ in _slates(cfg, args.slates):
        prompt, sids = rr._prompt(engine.RerankRequest(h, c, "ranking", False, 10**9))
        skeleton = fmt.answer("", sids, sids)
        texts.append((prompt + skeleton[: skeleton.index('"ranking"')] + '"ranking":[', sids))
    tok, fp32 = rr.tok, rr.model
    bf16 = copy.deepcopy(fp32).to(torch.bfloat16)
    ids = [torch.tensor([tok(with_bos(tok, t), add_special_tokens=False)["input_ids"]]) for t, _ in texts]
    n_tok = float(np.mean([i.shape[1] for i in ids]))
    body = 2 * sum(p.numel() for n, p in fp32.named_parameters() if "embed_tokens" not in n) * n_tok
    autocast = rr.autocast
    variants = {
        "fp32 weights, bf16 autocast, logits at every position": (fp32, autocast, {}),
        "fp32 weights, bf16 autocast, last position's logits": (fp32, autocast, {"logits_to_keep": 1}),
        "bf16 weights, last position's logits": (bf16, False, {"logits_to_keep": 1}),
    }
    rows = []
    with torch.inference_mode():
        for name, (model, ac, kw) in variants.items():
            with cpu_autocast(ac):
                model(input_ids=ids[0], use_cache=True, **kw)  # warm-up
                ms = [timed(lambda i=i: model(input_ids=i, use_cache=True, **kw)) for i in ids]
            rows.append((f"prefill: {name}", float(np.median(ms))))
            print(f"  {rows[-1][0]}: {rows[-1][1]:.0f} ms", flush=True)
        orders = {}
        for name, model, ac in (("fp32 weights, bf16 autocast", fp32, autocast), ("bf16 weights", bf16, False)):
            with cpu_autocast(ac):
                first_slot_ranking(model, tok, *texts[0], fmt=fmt)
                ms, out = [], []
                for t, sids in texts:
                    t0 = time.perf_counter()
                    out.append(first_slot_ranking(model, tok, t, sids, fmt=fmt))
                    ms.append((time.perf_counter() - t0) * 1000)
            orders[name] = out
            rows.append((f"one-pass ranking: {name}", float(np.median(ms))))
            print(f"  {rows[-1][0]}: {rows[-1][1]:.0f} ms", flush=True)
    same = np.mean([a == b for a, b in zip(*orders.values())])
    print(f"\n### HF prefill of the ranking prompt ({platform.node()}, {torch.get_num_threads()} threads, "
          f"{len(texts)} slates, {n_tok:.0f} tokens, {body / 1e9:.0f} GFLOP in the layers)\n")
    print("| path | median ms | GFLOP/s (layers only) |\n|---|---:|---:|")
    for name, ms in rows:
        print(f"| {name} | {ms:,.0f} | {body / ms / 1e6:.0f} |")
    print(f"\nbf16 weights rank as fp32 weights under autocast on {same:.0%} of slates.")


if __name__ == "__main__":
    main()

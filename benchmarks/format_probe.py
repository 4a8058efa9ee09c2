"""How should a pretrained student read a slate and write its answer? SFT the same base on the same
traces in each re-rank format, then answer held-out slates freely, and print one table.

For each variant `SID:CITE[:STYLE]` (SID tokens|text, CITE sid|slate, STYLE compact|paper) it runs the
real `gr2 train sft` job (Ray Train + DeepSpeed, `train.sft.init=base`: straight from the pretrained
base, so only the format differs) for --steps optimizer steps, then `evaluate_rerank` on --slates
validation slates (greedy, unconstrained) and reports prompt and answer lengths in the model's tokens,
training tokens/s, the valid-permutation share and R@1/R@5/NDCG@5 (an invalid answer keeps the
incoming order).

    .venv/bin/python benchmarks/format_probe.py -c configs/beauty.yaml --lake /work/lakes/beauty \
        --variants text:slate,text:sid,tokens:sid --steps 60 --slates 100
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gr2.config import load_config  # noqa: E402
from gr2.platform.progress import Steps, console  # noqa: E402
from gr2.rerank.slate import slate_of_row  # noqa: E402


def prompt_stats(cfg, model_dir: Path, n: int) -> dict:
    """Mean prompt and target-answer lengths in the model's tokens over `n` accepted training traces."""
    import numpy as np
    from deltalake import DeltaTable

    from gr2.models.lm import load_tokenizer
    from gr2.rerank.catalog import load_catalog  # noqa: E402
    from gr2.rerank.formats import RerankFormat
    from gr2.training import data, jobs

    fmt = RerankFormat.of_model(model_dir)
    tok = load_tokenizer(model_dir)
    catalog, _ = load_catalog(cfg.lake_path)
    traces = DeltaTable(str(data.table_path(cfg.lake_path, "gold.traces"))).to_pandas(
        columns=["slate_id", "response", "accepted"])
    traces = traces[traces["accepted"]].head(n)
    slates = DeltaTable(str(data.table_path(cfg.lake_path, "gold.slates"))).to_pandas(
        columns=["slate_id", "user_id", "history", "candidates", "target", "split"]).set_index("slate_id")
    p_len, a_len, r_len = [], [], []
    for sid, response in zip(traces["slate_id"], traces["response"]):
        s = slate_of_row({"slate_id": sid, **slates.loc[sid].to_dict()}, catalog, fmt.history)
        if s is None:
            continue
        e = jobs.sft_example(fmt.prompt(s.history, s.candidates, tok), response, [c.sid for c in s.candidates], 1, 1, fmt)
        if e is None:
            continue
        p_len.append(len(tok(e.prompt, add_special_tokens=False)["input_ids"]))
        a_len.append(len(tok(e.completion, add_special_tokens=False)["input_ids"]))
        r_len.append(len(tok(e.parts[1][0], add_special_tokens=False)["input_ids"]))
    return {"prompt_tokens": float(np.mean(p_len)), "answer_tokens": float(np.mean(a_len)),
            "ranking_tokens": float(np.mean(r_len))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-c", "--config", required=True)
    ap.add_argument("--lake", required=True)
    ap.add_argument("--set", action="append", default=[], help="extra config overrides for every variant")
    ap.add_argument("--variants", default="text:slate,text:sid,tokens:sid")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--slates", type=int, default=100)
    ap.add_argument("--max-new-tokens", type=int, default=320)
    ap.add_argument("--out", default=None, help="write the rows as JSON here too")
    args = ap.parse_args()
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

    from gr2.eval import heldout
    from gr2.training import jobs

    rows = []
    for variant in args.variants.split(","):
        sid, cite, *style = variant.split(":")
        overrides = args.set + [f"train.prompt.sid_format={sid}", f"train.prompt.cite={cite}", "train.sft.init=base",
                                f"train.sft.max_steps={args.steps}"] + ([f"train.prompt.style={style[0]}"] if style else [])
        cfg = load_config(args.config, overrides, args.lake)
        steps = Steps(title=f"variant {variant}")
        t0 = time.perf_counter()
        summary = jobs.sft(cfg, steps)
        train_s = time.perf_counter() - t0
        model_dir = Path(summary["model_dir"])
        with steps.step(f"free answers on {args.slates} validation slates") as live:
            t1 = time.perf_counter()
            ev = heldout.evaluate_rerank(cfg, model_dir, split="valid", max_slates=args.slates,
                                      max_new_tokens=args.max_new_tokens, batch_size=16,
                                      on_progress=lambda i, n: live.update(f"{i}/{n}"))
            eval_s = time.perf_counter() - t1
        last = summary.get("final", {}).get("last", {})
        row = {"variant": variant, "run": summary["run"], **prompt_stats(cfg, model_dir, 200), "train_s": train_s,
               "tokens_per_s": float(last.get("tokens_per_s") or 0), "final_loss": float(last.get("loss") or 0),
               "eval_s": eval_s, "valid": ev["valid_share"], "json": ev["json_share"],
               "r1": ev["model"]["R@1"], "r5": ev["model"]["R@5"], "ndcg5": ev["model"]["NDCG@5"],
               "incoming_r1": ev["incoming"]["R@1"], "incoming_r5": ev["incoming"]["R@5"],
               "incoming_ndcg5": ev["incoming"]["NDCG@5"]}
        rows.append(row)
        console.print(json.dumps(row))
    print(f"\n{args.steps} SFT steps per variant (batch {cfg.train.sft.batch_size}), {args.slates} validation slates, "
          f"greedy free answers; lake {args.lake}\n")
    print("| variant | prompt tok | answer tok (ranking) | train s | train tok/s | loss | eval s | valid | JSON | "
          "R@1 | R@5 | NDCG@5 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['variant']} | {r['prompt_tokens']:.0f} | {r['answer_tokens']:.0f} ({r['ranking_tokens']:.0f}) | "
              f"{r['train_s']:.0f} | {r['tokens_per_s']:.0f} | {r['final_loss']:.3f} | {r['eval_s']:.0f} | {r['valid']:.0%} | "
              f"{r['json']:.0%} | {r['r1']:.3f} | {r['r5']:.3f} | {r['ndcg5']:.3f} |")
    if rows:
        r = rows[0]
        print(f"| incoming order | | | | | | | | | {r['incoming_r1']:.3f} | {r['incoming_r5']:.3f} | {r['incoming_ndcg5']:.3f} |")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

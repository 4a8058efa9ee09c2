"""How far a policy leans toward copying the incoming order, read off its probabilities, not its samples.

    .venv/bin/python benchmarks/copy_propensity.py --config configs/beauty.yaml --lake /work/lakes/beauty \
        --slates 150 --max-new-tokens 320 --ablation <lake>/reports/reward_ablation/<settings>.json

The order-copy hack shows in greedy answers only once a policy has moved far: a greedy answer flips when
the copy overtakes the best other ranking, and the reward ablation's policies give SFT's answer on 95% of
slates after 12-24 DAPO steps. This measures the lean itself. Every policy reads the same text on the
same seeded test slates (the prompt and the reference model's own greedy reasoning, up to `"ranking":[`),
and its ranking head is scored as constrained decoding would sample it at temperature 1
(`gr2.models.ranking.ranking_logprobs`):

- P(first = incoming first): the probability of listing the pre-ranker's top item first (1/K for no lean);
- log P(copy): the log-probability of writing the incoming order whole (log 1/K! for no preference);
- log P(random order): that of a fixed random permutation of the slate (seeded by the slate), the
  control for spread: a policy whose rankings all grew likelier (more entropy, less sure of its own
  answer) raises log P(copy) without leaning toward copies;
- copy lean = log P(copy) - log P(random order): the lean itself, which spread alone leaves unchanged;
- log P(reference ranking): that of the ranking the reference model wrote (slates where it was valid).

Paired bootstrap 95% intervals against the reference model, and between the ablation's two variants.
The reference answers and each model's scores are kept under <lake>/reports/copy_propensity/ (a model
is scored again only when its weights change), so a paused ablation can be read again cheaply.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gr2.config import load_config  # noqa: E402
from gr2.eval.heldout import stage_model  # noqa: E402
from gr2.models.generation import with_bos  # noqa: E402
from gr2.models.ranking import Prefix, ranking_head, rerank_answers  # noqa: E402
from gr2.models.ranking import ranking_logprobs as slot_logprobs  # noqa: E402
from gr2.models.slates import rerank_cases  # noqa: E402
from gr2.platform.files import write_text_atomic  # noqa: E402
from gr2.platform.precision import cpu_autocast, use_autocast  # noqa: E402
from gr2.platform.run_store import latest_model  # noqa: E402
from gr2.rerank.catalog import load_catalog  # noqa: E402
from gr2.rerank.formats import RerankFormat  # noqa: E402
from gr2.rerank.metrics import paired_bootstrap_diff  # noqa: E402

MEASURES = ("P(first = incoming first)", "log P(copy)", "log P(random order)", "copy lean", "log P(reference ranking)")
VERSION = 2  # of what score_model computes (cached scores of another version are computed again)


def _key(*parts) -> str:
    return hashlib.sha256(json.dumps([str(p) for p in parts]).encode()).hexdigest()[:12]


def _weights_stamp(model_dir: Path) -> str:
    """What changes when a paused run trains on and rewrites its model folder."""
    return ";".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in sorted(model_dir.glob("*.safetensors")))


def reference_answers(cfg, model_dir: Path, slates: int, max_new_tokens: int, store: Path) -> tuple[list, dict]:
    """(cases, {slate_id: record}) of the reference model's greedy free answers, kept in `store` as they
    come so that a stopped run answers only the slates left."""
    fmt = RerankFormat.of_model(model_dir, RerankFormat.from_config(cfg.train.prompt))  # as stage_model reads it
    catalog, _ = load_catalog(cfg.lake_path)
    cases = [c for c in rerank_cases(cfg.lake_path, catalog, "test", slates, cfg.train.seed, fmt.history, fmt) if 1 in c[1]]
    done = json.loads(store.read_text()) if store.exists() else {}
    todo = len([c for c in cases if c[0].slate_id not in done])
    if todo:  # the model is loaded only when there is something to answer
        _, fmt, model, tok = stage_model(cfg, model_dir, "sft")
        print(f"reference answers: {todo} of {len(cases)} slates to answer with {model_dir}", flush=True)

        def keep(slate_id, record):
            done[slate_id] = record
            write_text_atomic(store, json.dumps(done))

        rerank_answers(model, tok, cases, max_new_tokens, ("free",), fmt=fmt, batch_size=8,
                       autocast=use_autocast(cfg.train.autocast), done=done, on_answer=keep)
    return cases, done


def score_model(cfg, model_dir: Path, cases: list, answers: dict, store: Path) -> dict[str, list]:
    """Per slate: the first slot's and the whole copy's log-probabilities, a seeded random order's, and
    the reference ranking's (nan where the reference answer was invalid), with this model reading the
    reference's reasoning."""
    if store.exists():
        return json.loads(store.read_text())
    _, fmt, model, tok = stage_model(cfg, model_dir, "sft")
    enc = lambda t: tok(t, add_special_tokens=False)["input_ids"]  # noqa: E731
    out: dict[str, list] = {"first": [], "copy": [], "random": [], "reference": []}
    t0 = time.perf_counter()
    with cpu_autocast(use_autocast(cfg.train.autocast)):
        for n, (slate, _) in enumerate(cases, 1):
            sids = [c.sid for c in slate.candidates]
            record = answers[slate.slate_id]
            base = Prefix(model, enc(with_bos(tok, fmt.prompt(slate.history, slate.candidates, tok) + ranking_head(record["text"]))))
            copy = slot_logprobs(model, tok, "", sids, list(range(len(sids))), fmt, prefix=base.fork())
            out["first"].append(math.exp(copy[0]))
            out["copy"].append(sum(copy))
            shuffled = random.Random(slate.slate_id).sample(range(len(sids)), len(sids))
            out["random"].append(sum(slot_logprobs(model, tok, "", sids, shuffled, fmt, prefix=base.fork())))
            own = record.get("free")
            out["reference"].append(sum(slot_logprobs(model, tok, "", sids, own, fmt, prefix=base)) if own else float("nan"))
            if n % 25 == 0 or n == len(cases):
                print(f"  {model_dir.parent.name}: {n}/{len(cases)} slates ({time.perf_counter() - t0:.0f} s)", flush=True)
    write_text_atomic(store, json.dumps(out))
    return out


def propensity(cfg, model_dir: Path, reference: Path, slates: int, max_new_tokens: int, limit: int = 0) -> dict[str, list]:
    """`score_model` of `model_dir` reading `reference`'s reasoning on the `slates` seeded test slates (the
    first `limit` of them, when given), both kept under the lake's reports."""
    store = Path(cfg.lake_path) / "reports" / "copy_propensity"
    ref_key = _key(reference, slates, max_new_tokens, cfg.train.seed)
    cases, answers = reference_answers(cfg, reference, slates, max_new_tokens, store / f"reference-{ref_key}.json")
    cases = cases[:limit] if limit else cases
    key = _key(ref_key, model_dir, _weights_stamp(model_dir), len(cases), VERSION)
    return score_model(cfg, model_dir, cases, answers, store / f"scores-{key}.json")


def measures(scores: dict[str, list]) -> dict[str, np.ndarray]:
    """The table's columns, per slate (nan for a measure the scores predate)."""
    copy = np.array(scores["copy"])
    rand = np.array(scores.get("random", [np.nan] * len(copy)), dtype=np.float64)
    return {MEASURES[0]: np.array(scores["first"]), MEASURES[1]: copy, MEASURES[2]: rand, MEASURES[3]: copy - rand,
            MEASURES[4]: np.array(scores["reference"], dtype=np.float64)}


def mean(x: np.ndarray) -> str:
    """The mean over the slates where the measure is defined ("" where it is nowhere)."""
    return f"{np.nanmean(x):.3f}" if np.isfinite(x).any() else ""


def paired(a: np.ndarray, b: np.ndarray) -> str:
    """b - a over the slates where both are defined, with its bootstrap 95% interval (the first slates of
    the longer, when one was read on more: the seeded slates come in the same order)."""
    n = min(len(a), len(b))
    a, b = a[:n], b[:n]
    both = ~(np.isnan(a) | np.isnan(b))
    if not both.any():
        return "no slate with both"
    d, lo, hi = paired_bootstrap_diff(a[both], b[both])
    return f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]"


def report(rows: dict[str, dict[str, np.ndarray]], k: int, pairs: list[tuple[str, str]]) -> None:
    print(f"\n### Copy propensity on {len(next(iter(rows.values()))[MEASURES[0]])} test slates "
          f"(no lean: P(first) {1 / k:.3f}, log P(copy) {-math.lgamma(k + 1):.2f})\n")
    print("| policy | " + " | ".join(MEASURES) + " |\n|---|" + "---:|" * len(MEASURES))
    for name, m in rows.items():
        print(f"| {name} | " + " | ".join(mean(m[x]) for x in MEASURES) + " |")
    print("\n| paired difference (bootstrap 95%) | " + " | ".join(MEASURES) + " |\n|---|" + "---|" * len(MEASURES))
    for a, b in pairs:
        print(f"| {b} - {a} | " + " | ".join(paired(rows[a][x], rows[b][x]) for x in MEASURES) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=None)
    ap.add_argument("--lake", required=True)
    ap.add_argument("--slates", type=int, default=150, help="seeded test slates (the reward ablation's, for the same number)")
    ap.add_argument("--max-new-tokens", type=int, default=320, help="for the reference model's greedy reasoning")
    ap.add_argument("--limit", type=int, default=0, help="score only the first this many of the slates (0 = all)")
    ap.add_argument("--reference", default=None, help="model folder whose reasoning every policy reads (default: the latest SFT)")
    ap.add_argument("--model", action="append", default=[], metavar="LABEL=DIR", help="a policy to score (repeatable)")
    ap.add_argument("--ablation", default=None, help="a reward_ablation state file: score its variants' current models")
    ap.add_argument("--set", action="append", default=[], help="config overrides")
    args = ap.parse_args()
    cfg = load_config(args.config, args.set, args.lake)
    reference = Path(args.reference or latest_model(cfg, "sft"))
    models = {f"reference ({reference.parent.name})": reference}
    models.update({label: Path(d) for label, d in (m.split("=", 1) for m in args.model)})
    variants = []
    if args.ablation:
        state = json.loads(Path(args.ablation).read_text())
        for v, rec in state["variants"].items():
            label = f"{v} reward, step {rec['steps_done']}"
            models[label] = Path(rec["model_dir"])
            variants.append(label)
    rows = {label: measures(propensity(cfg, d, reference, args.slates, args.max_new_tokens, args.limit))
            for label, d in models.items()}
    first = next(iter(models))
    pairs = [(first, label) for label in list(models)[1:]] + ([(variants[1], variants[0])] if len(variants) >= 2 else [])  # naive - conditional
    report(rows, cfg.data.k, pairs)


if __name__ == "__main__":
    main()

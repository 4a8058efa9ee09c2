"""Held-out checks of a trained LM stage, run after it trains (gr2 train eval-next, gr2 train sft --evaluate).

* `evaluate_next_item`: the mid-trained model's next item over the full catalog (SID-constrained beam
  search) next to popularity, with bootstrap intervals (`gr2 train eval-next`).
* `evaluate_rerank`: an SFT or DAPO model's greedy answers on held-out slates (`gr2 train sft --evaluate`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from gr2.config import Config
from gr2.models.lm import load_model
from gr2.models.slates import rerank_cases
from gr2.models.text import sequential
from gr2.platform.lake import Lake
from gr2.platform.run_store import latest_model
from gr2.rerank.catalog import load_catalog
from gr2.rerank.metrics import hit_at, ndcg_gain_at, slate_metrics


def next_item_cases(seqs: pd.DataFrame, catalog: dict, split: str, history_len: int, max_users: int, seed: int):
    """(history items, target item) per user of gold.sequences `seqs`: the user's first `split` position
    and what came before."""
    cases = []
    for items, splits in zip(seqs["items"], seqs["split"]):
        pos = next((i for i, s in enumerate(splits) if s == split), None)
        if pos is None or pos == 0 or items[pos] not in catalog:
            continue
        hist = [catalog[i] for i in items[:pos] if i in catalog][-history_len:]
        if hist:
            cases.append((hist, catalog[items[pos]]))
    if max_users and len(cases) > max_users:
        idx = np.random.default_rng(seed).choice(len(cases), max_users, replace=False)
        cases = [cases[i] for i in sorted(idx)]
    return cases


def popularity_ranking(seqs: pd.DataFrame, catalog: dict) -> list[str]:
    """SIDs of the catalog by training-split popularity in gold.sequences `seqs`, most popular first."""
    from collections import Counter

    counts = Counter(i for items, splits in zip(seqs["items"], seqs["split"]) for i, s in zip(items, splits) if s == "train")
    return [catalog[i].sid for i, _ in counts.most_common() if i in catalog]


def evaluate_next_item(cfg: Config, model_dir: Path | None = None, split: str = "test", max_users: int = 500,
                       ks: tuple[int, ...] = (5, 10), on_progress=None) -> dict:
    """Next-item Recall@k / NDCG@k over the full catalog: constrained beam search vs popularity."""
    from gr2.models.generation import SidTrie, beam_search_sids
    from gr2.platform.precision import cpu_autocast, use_autocast

    lake = cfg.lake_path
    model_dir, fmt, model, tok = stage_model(cfg, model_dir, "midtrain")
    catalog, shape = load_catalog(lake)
    trie = SidTrie(tok, [c.sid for c in catalog.values()], fmt)
    seqs = Lake(lake).read_pandas("gold.sequences", columns=["items", "split"])  # read once for both
    cases = next_item_cases(seqs, catalog, split, cfg.etl.history_len, max_users, cfg.train.seed)
    popular = popularity_ranking(seqs, catalog)[: max(ks)]
    beams = max(ks)
    hits = {f"{m}@{k}": [] for m in ("recall", "ndcg") for k in ks}
    pop = {f"{m}@{k}": [] for m in ("recall", "ndcg") for k in ks}
    on_cpu = next(model.parameters()).device.type == "cpu" and use_autocast(cfg.train.autocast)
    for n, (hist, target) in enumerate(cases):
        prompt = sequential(hist, None, fmt.show_sid).prompt + ("" if fmt.sid == "text" else " ")
        with cpu_autocast(on_cpu):  # bf16 matmuls where the CPU has the units, as in training
            ranked = beam_search_sids(model, tok, prompt, trie, beams, shape["levels"])
        for name, ranking in (("model", ranked), ("pop", popular)):
            store = hits if name == "model" else pop
            rank = ranking.index(target.sid) if target.sid in ranking else None
            for k in ks:
                store[f"recall@{k}"].append(hit_at(rank, k))
                store[f"ndcg@{k}"].append(ndcg_gain_at(rank, k))
        if on_progress:
            on_progress(n + 1, len(cases))
    result = {
        "model_dir": str(model_dir), "split": split, "users": len(cases), "catalog": len(catalog),
        "model": {k: float(np.mean(v)) if v else 0.0 for k, v in hits.items()},
        "popularity": {k: float(np.mean(v)) if v else 0.0 for k, v in pop.items()},
    }
    if cases:  # 95% bootstrap intervals over users, and the paired difference model - popularity
        from gr2.eval.diagnostics import bootstrap_ci, paired_bootstrap_diff

        seed = cfg.train.seed
        result["intervals"] = {name: {k: list(bootstrap_ci(np.array(v), seed=seed)[1:]) for k, v in store.items()}
                               for name, store in (("model", hits), ("popularity", pop))}
        result["difference"] = {k: list(paired_bootstrap_diff(np.array(pop[k]), np.array(hits[k]), seed=seed)) for k in hits}
    (model_dir.parent / f"next_item_{split}.json").write_text(json.dumps(result, indent=2))
    return result



def stage_model(cfg: Config, model_dir: Path | None, stage: str):
    """(folder, format it was trained in, model in eval mode, tokenizer) of `model_dir`, else the stage's LATEST."""
    from gr2.rerank.formats import RerankFormat

    model_dir = Path(model_dir or latest_model(cfg, stage))
    fmt = RerankFormat.of_model(model_dir, RerankFormat.from_config(cfg.train.prompt))
    model, tok = load_model(model_dir)
    model.eval()
    return model_dir, fmt, model, tok


def target_positions(orders: list, cases: list) -> list[int]:
    """Where each answer placed its slate's target (`cases`: (slate, labels) with one positive); an invalid
    answer (None) keeps the incoming order, as the service answers it."""
    return [(o if o is not None else list(range(len(labels)))).index(labels.index(1)) for o, (_, labels) in zip(orders, cases)]


def evaluate_rerank(cfg: Config, model_dir: Path | None = None, split: str = "valid", max_slates: int = 200,
                    max_new_tokens: int = 768, on_progress=None, constrained: bool = False, batch_size: int = 8) -> dict:
    """Greedy answers of a re-ranker on held-out slates: valid-JSON-permutation share, JSON-shape share
    and R@1/3/5, NDCG@3/5 (an invalid answer keeps the incoming order), next to the incoming order."""
    from gr2.models.ranking import answer_rerank
    from gr2.platform.precision import use_autocast

    lake = cfg.lake_path
    model_dir, fmt, model, tok = stage_model(cfg, model_dir, "sft")
    catalog, _ = load_catalog(lake)
    cases = [(s, labels) for s, labels in rerank_cases(lake, catalog, split, max_slates, cfg.train.seed, fmt.history, fmt)
             if 1 in labels]
    orders, shaped = answer_rerank(model, tok, cases, max_new_tokens, constrained, on_progress, fmt=fmt,
                                   batch_size=batch_size, autocast=use_autocast(cfg.train.autocast))
    before = [labels.index(1) for _, labels in cases]
    after = target_positions(orders, cases)
    n = max(1, len(cases))
    result = {"model_dir": str(model_dir), "split": split, "slates": len(cases), "constrained": constrained,
              "valid_share": sum(o is not None for o in orders) / n, "json_share": shaped / n,
              "incoming": slate_metrics(before), "model": slate_metrics(after), "outputs": orders}
    suffix = "_constrained" if constrained else ""
    (model_dir.parent / f"rerank_{split}{suffix}.json").write_text(json.dumps(result, indent=2))
    return result

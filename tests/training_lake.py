"""A small lake with exactly the tables the training stages read, written with the `deltalake` package
(real Delta tables, no Spark needed): 48 items in 4 categories with 3-level SIDs, users whose
sequences walk a category's items in order (so the next item is learnable), and K=4 slates."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from deltalake import write_deltalake

from gr2.platform.sids import sid_string

CATS = ["Skin", "Hair", "Nails", "Tools"]
VERSION = "vtest-3x4"


def make_training_lake(root: Path, users: int = 60, k: int = 4, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    items = [f"i{n:02d}" for n in range(48)]
    cat = {it: CATS[n // 12] for n, it in enumerate(items)}
    write_deltalake(str(root / "silver/items"), pd.DataFrame({
        "item_id": items, "title": [f"{cat[i]} product {i}" for i in items],
        "categories": [["Beauty", cat[i]] for i in items], "brand": [["Acme", "Zen"][n % 2] for n in range(48)],
    }))
    codes = [[n // 12, n % 12 // 4, n % 4] for n in range(48)]
    write_deltalake(str(root / "gold/sid_codebook"), pa.table({
        "item_id": items, "codes": pa.array(codes, pa.list_(pa.int32())), "sid": [sid_string(c) for c in codes],
        "tokenizer_version": [VERSION] * 48,
    }), partition_by=["tokenizer_version"])
    tok_dir = root / "models/tokenizer" / VERSION
    tok_dir.mkdir(parents=True)
    (tok_dir / "config.json").write_text(json.dumps({"version": VERSION, "rqvae": {"codes": 4, "levels": 3}}))
    (root / "models/tokenizer/LATEST").write_text(VERSION)
    seqs, slates = [], []
    for u in range(users):
        c = rng.integers(4)
        start = rng.integers(0, 6)
        seq = [items[c * 12 + (start + j) % 12] for j in range(7)]
        split = ["train"] * 5 + ["valid", "test"]
        seqs.append({"user_id": f"u{u}", "items": seq, "split": split, "n_items": 7})
        for pos in range(2, 7):
            target = seq[pos]
            others = [i for i in items if i != target and i not in seq[:pos]]
            cands = list(rng.choice(others, k - 1, replace=False))
            tp = int(rng.integers(k))
            cands.insert(tp, target)
            slates.append({"slate_id": f"u{u}:{pos}", "user_id": f"u{u}", "history": seq[:pos], "candidates": cands,
                           "target": target, "labels": [int(x == target) for x in cands], "target_position": tp,
                           "split": split[pos]})
    write_deltalake(str(root / "gold/sequences"), pd.DataFrame(seqs))
    write_deltalake(str(root / "gold/slates"), pd.DataFrame(slates))
    return root


def tiny_llama_serving_lake(root: Path, k: int = 4):
    """A training lake with a tiny random Llama saved as SFT's model (grouped KV heads and SmolLM2's rope
    theta, so converters read transformers 5's config as they would the real base) in the compact slate
    format, and re-rank requests of both modes on its test slates: (model dir, Catalog, format, requests).
    The engines' tests hold other runtimes to Hugging Face's answers on it."""
    import torch
    from transformers import AutoModelForCausalLM

    from gr2.config import load_config
    from gr2.rerank.catalog import load_catalog
    from gr2.rerank.formats import RerankFormat
    from gr2.serve import engine
    from gr2.serve.check import _slates
    from gr2.training import model as lm

    root = make_training_lake(root, k=k)
    texts = [f"Skin Hair Nails Tools product i{n:02d} a{n} b{n} c{n} ranking reasoning [1] [2] [3] [4]" for n in range(48)]
    model_dir = root / "models" / "sft" / "sft-test" / "model"
    tok = lm.train_bpe_tokenizer(texts * 4, 400)
    config = lm.small_config("llama", len(tok), 64, 2, 4, 1024, tok)
    config.num_key_value_heads = 2
    config.rope_parameters = {"rope_type": "default", "rope_theta": 100000.0}
    config.initializer_range = 0.1  # at the default 0.02 a random model repeats one token: nothing to compare
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    RerankFormat(sid="text", cite="slate", style="compact", history=3, title_words=4, chat_template=False).save(model_dir)
    cfg = load_config(overrides=[f"etl.k={k}"], lake=str(root))
    items, _ = load_catalog(root)
    reqs = [engine.RerankRequest(h, c, m, False, 60000) for m in ("ranking", "reasoning") for h, c, _ in _slates(cfg, 8)]
    return model_dir, engine.Catalog(items), RerankFormat.of_model(model_dir, RerankFormat()), reqs


def serving_engine(lake, **kw):
    """The serving engine (no Ray) on `tiny_llama_serving_lake`'s model: 24 new tokens, no autocast, batch
    4, the one-pass ranking decoder unless `kw` says otherwise (the one every engine runs)."""
    from gr2.serve import engine

    model_dir, catalog, fmt, _ = lake
    return engine.Reranker(model_dir, catalog, fmt, 24, False, 4, **{"ranking_decoder": "first", **kw})


def answers_of(rr, reqs):
    """Reasoning requests together (one batched generate, as the service batches them), ranking ones one by one."""
    return rr.answer([r for r in reqs if r.mode == "reasoning"]) + [a for r in reqs if r.mode == "ranking" for a in rr.answer([r])]


def assert_eval_answers_are_hfs(lake, engine_name: str, **kw) -> None:
    """`eval.engine: <engine_name>`: `rerank_answers` with that engine's generator (float32, greedy)
    writes the same free answers, and so the same orders, as Hugging Face generate on the same model."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from gr2.models.engines import load_generator
    from gr2.models.ranking import rerank_answers
    from gr2.models.slates import rerank_cases
    from gr2.rerank.catalog import load_catalog

    model_dir, _, fmt, _ = lake
    root = model_dir.parents[3]
    catalog, _ = load_catalog(root)
    cases = rerank_cases(root, catalog, "test", 6, 0, 3)
    model, tok = AutoModelForCausalLM.from_pretrained(model_dir), AutoTokenizer.from_pretrained(model_dir)
    hf = rerank_answers(model, tok, cases, 24, ("free",), fmt=fmt, batch_size=3, on_answer=None)
    records = {}
    gen = load_generator(engine_name, model_dir, tok, "float32", batch_size=3, **kw)
    other = rerank_answers(model, tok, cases, 24, ("free",), fmt=fmt, batch_size=3, generator=gen,
                           on_answer=lambda sid, r: records.__setitem__(sid, r))
    assert other == hf and len(records) == len(cases)
    assert len({r["text"] for r in records.values()}) > 1, "every answer was the same text: a weak comparison"

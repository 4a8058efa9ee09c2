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

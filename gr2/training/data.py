"""From Delta tables to training rows with Ray Data.

Large tables (gold.sequences, gold.slates, gold.traces) are read as Ray Datasets straight from the
Delta snapshot (`ray.data.read_delta`, no driver-side load) and turned into examples by the builders
of `examples.py` on Ray workers; the catalog (item -> SID, title, categories, brand) is the one small
table gathered on the driver, because every builder needs it to write items as text.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from gr2.models.text import Example, tokenize_example
from gr2.platform.keys import missing_table
from gr2.training.examples import pack


def table_path(lake: Path, table: str) -> Path:
    from gr2.platform.lake import TABLES

    return lake / TABLES[table]


def read_table(lake: Path, table: str):
    """A Ray Dataset over a Delta table at the version the lake's manifest publishes (`Lake.read_version`:
    never half of a run in progress or killed); a clear error when it is missing."""
    import ray.data

    from gr2.platform.lake import Lake

    p = table_path(lake, table)
    if not (p / "_delta_log").exists():
        raise FileNotFoundError(missing_table(table, lake))
    return ray.data.read_delta(str(p), version=Lake(lake).read_version(table))


@lru_cache(maxsize=4)
def _tokenizer(path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def packer(tokenizer_path: str, max_len: int):
    """A map_batches function: a batch of examples (task, prompt, completion, parts) -> packed rows."""

    def f(batch: dict) -> dict:
        tok = _tokenizer(tokenizer_path)
        exs = [
            Example(t, p, c, [(x["text"], float(x["weight"])) for x in parts] if parts is not None and len(parts) else None)
            for t, p, c, parts in zip(batch["task"], batch["prompt"], batch["completion"], batch["parts"])
        ]
        packed = pack([tokenize_example(tok, e) for e in exs], max_len, tok.pad_token_id)
        return {k: list(v) for k, v in packed.items()}

    return f


def example_row(ex: Example) -> dict:
    return {"task": ex.task, "prompt": ex.prompt, "completion": ex.completion,
            "parts": [{"text": t, "weight": w} for t, w in ex.parts] if ex.parts else []}


def keep_fraction(fraction: float, seed: int):
    """A row filter keeping about `fraction` of the examples, decided by a hash of the example text:
    deterministic, streaming, and free of the all-to-all steps a shuffle-then-limit would need."""
    import hashlib

    threshold = int(fraction * 2**32)

    def keep(row: dict) -> bool:
        h = hashlib.blake2b(f"{seed}|{row['prompt']}|{row['completion']}".encode(), digest_size=4).digest()
        return int.from_bytes(h, "big") < threshold

    return keep


def mixture_dataset(per_task: dict, counts: dict[str, int], available: dict[str, int], seed: int):
    """Union of each task's examples, sub-sampled to about its count, in one seeded random order."""
    parts = []
    for task, n in counts.items():
        if n <= 0:
            continue
        ds = per_task[task]
        if n < available[task]:
            ds = ds.filter(keep_fraction(n / available[task], seed))
        parts.append(ds)
    ds = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
    return ds.random_shuffle(seed=seed)


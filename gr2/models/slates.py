"""The held-out slates every re-ranker is asked: a seeded sample of a split's gold.slates, rendered for a
re-rank format (with each candidate's evidence note when the format shows one). Evaluation, the held-out
checks, the service check and the benchmarks ask the same slates for the same arguments.
"""

from __future__ import annotations

from pathlib import Path

from gr2.models import evidence as ev
from gr2.platform.lake import Lake


def rerank_cases(lake: Path, catalog: dict, split: str, max_slates: int, seed: int, history: int = 10, fmt=None):
    """(Slate, labels in input order) for slates of `split`, a seeded sample of `max_slates`
    (the same sample for the same arguments). When the re-rank format `fmt` shows evidence (evidence.py),
    each candidate carries its note."""
    return cases_of(rerank_rows(lake, catalog, split, max_slates, seed, history), lake, split, fmt)


def rerank_rows(lake: Path, catalog: dict, split: str, max_slates: int, seed: int, history: int = 10) -> list:
    """(gold.slates row, Slate) pairs of `rerank_cases`, read once: `cases_of` renders them for
    each format (evaluation asks the same slates of models trained with and without evidence)."""
    from gr2.rerank.slate import slate_of_row

    df = Lake(lake).read_pandas("gold.slates", columns=["slate_id", "user_id", "history", "candidates", "target", "labels", "split"])
    df = df[df["split"] == split]
    if max_slates and len(df) > max_slates:
        df = df.sample(n=max_slates, random_state=seed)
    return [(r, s) for r in df.to_dict("records") if (s := slate_of_row(r, catalog, history)) is not None]


def cases_of(rows: list, lake: Path, split: str, fmt=None) -> list:
    """(slate, labels) of `rerank_rows` pairs, each candidate with the evidence note `fmt` shows, if any."""
    slates = ev.annotate_rows(ev.for_format(fmt, lake) if fmt is not None else None, rows, split)
    return [(s, [int(x) for x in r["labels"]]) for (r, _), s in zip(rows, slates)]

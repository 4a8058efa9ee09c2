"""Training examples as text, and their tokenisation into packed, loss-masked sequences (pure).

Mid-training teaches the item language with three tasks (GR2 stage 1):
  item_alignment  SID -> title and categories, and title -> SID
  sequential      a user's history of SIDs -> the next SID
  persona         a user's history -> a short text of their dominant categories and brands
  candidate_listing  a slate's candidate SIDs, listed as the re-rank prompt lists them -> the same list
                  as an answer's "ranking" (copying: the skill a valid re-rank answer needs; off by default)
Each example is (prompt, completion): the loss falls on the completion only. SFT examples carry a
second weight class: reasoning tokens and ranking tokens are weighted separately (GR2 stage 2).
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from gr2.models.text import Example, history_text, sequential, show_wrapped
from gr2.rerank.catalog import CatalogItem

TASKS = ("item_alignment", "sequential", "persona", "candidate_listing")


def item_alignment(item: CatalogItem, show=show_wrapped) -> list[Example]:
    """`show` spells a SID as the model reads it (wrapped SID tokens by default; formats.RerankFormat.show_sid)."""
    cats = " > ".join(item.categories) or "unknown"
    about = f"{item.title}. Categories: {cats}." + (f" Brand: {item.brand}." if item.brand else "")
    return [
        Example("item_alignment", f"Item {show(item.sid)} is:", f" {about}"),
        Example("item_alignment", f"The ID of the item \"{item.title}\" is", f" {show(item.sid)}"),
    ]


def persona_text(history: list[CatalogItem], top: int = 3) -> str:
    """The user's dominant categories and brands, with counts, from their history alone."""
    cats = Counter(i.category for i in history if i.category)
    brands = Counter(i.brand for i in history if i.brand)
    parts = []
    if cats:
        parts.append("mostly " + ", ".join(f"{c} ({n})" for c, n in cats.most_common(top)))
    if brands:
        parts.append("favourite brands " + ", ".join(f"{b} ({n})" for b, n in brands.most_common(top)))
    return ("; ".join(parts) or "no clear preference") + "."


def persona(history: list[CatalogItem], show=show_wrapped) -> Example:
    return Example("persona", f"A user bought: {history_text(history, show)}. Their interests:", f" {persona_text(history)}")


def candidate_listing(candidates: list[CatalogItem]) -> Example:
    """Copy a slate's candidate list into an answer's ranking, both written exactly as the re-rank prompt
    and answer write them (gr2/rerank/prompt.py). A small model that never learned to copy writes popular SIDs
    where the candidates belong (benchmarks/copy_probe.py measures how fast it learns this)."""
    from gr2.rerank.prompt import candidate_listing_line, sid_list_json

    sids = [c.sid for c in candidates]
    return Example("candidate_listing", f"{candidate_listing_line(sids)}\nAs a ranking:", f' {{"ranking":{sid_list_json(sids)}}}')


def sequence_examples(items: list[CatalogItem], splits: list[str], history_len: int, min_history: int = 1,
                      show=show_wrapped) -> list[Example]:
    """Sequential examples from the training positions of one user (every position with enough history)
    plus one persona example over the user's training history. Validation/test items are never targets
    and never appear in a history, so mid-training cannot see the evaluation labels."""
    train = [it for it, s in zip(items, splits) if s == "train"]
    out = [sequential(train[max(0, i - history_len) : i], train[i], show) for i in range(min_history, len(train))]
    if train:
        out.append(persona(train[-history_len:], show))
    return out


# -- tokenisation and packing ------------------------------------------------------------------------


def pack(tokenized: list[tuple[list[int], list[float]]], max_len: int, pad_id: int) -> dict[str, np.ndarray]:
    """Greedy first-fit packing of examples into rows of max_len tokens.

    Returns input_ids, attention_mask, labels (-100 where the weight is 0 or padding), weights
    (aligned with labels), position_ids (restarting at 0 with each example, so a model given them
    without an attention mask attends within each example only: document masking), cut (per row: how
    many of its examples were longer than max_len) and longest (per row: the length of its longest
    example before any cut). A too-long
    example is cut from the left of its prompt so the completion survives; the caller decides whether
    that is acceptable (a mid-training history may lose its oldest items, an SFT slate may not lose
    its candidates) from the cut counts. Examples never straddle two rows.
    """
    rows: list[tuple[list[int], list[float], list[int]]] = []
    space: list[int] = []
    cuts: list[int] = []
    longest: list[int] = []
    for ids, w in tokenized:
        n_tokens = len(ids)
        was_cut = n_tokens > max_len
        if was_cut:
            ids, w = ids[-max_len:], w[-max_len:]
        for r, free in enumerate(space):
            if free >= len(ids):
                rows[r][0].extend(ids)
                rows[r][1].extend(w)
                rows[r][2].extend(range(len(ids)))
                space[r] -= len(ids)
                cuts[r] += was_cut
                longest[r] = max(longest[r], n_tokens)
                break
        else:
            rows.append((list(ids), list(w), list(range(len(ids)))))
            space.append(max_len - len(ids))
            cuts.append(int(was_cut))
            longest.append(n_tokens)
    n = len(rows)
    input_ids = np.full((n, max_len), pad_id, dtype=np.int64)
    attention = np.zeros((n, max_len), dtype=np.int64)
    labels = np.full((n, max_len), -100, dtype=np.int64)
    weights = np.zeros((n, max_len), dtype=np.float32)
    # Padding gets position 0 throughout: each pad token is then a sequence of its own (it has no loss).
    positions = np.zeros((n, max_len), dtype=np.int64)
    for r, (ids, w, pos) in enumerate(rows):
        k = len(ids)
        input_ids[r, :k] = ids
        positions[r, :k] = pos
        attention[r, :k] = 1
        wa = np.asarray(w, dtype=np.float32)
        labels[r, :k] = np.where(wa > 0, ids, -100)
        weights[r, :k] = wa
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels, "weights": weights,
            "position_ids": positions, "cut": np.asarray(cuts, dtype=np.int64), "longest": np.asarray(longest, dtype=np.int64)}


def mixture_counts(available: dict[str, int], weights: dict[str, float]) -> dict[str, int]:
    """Examples to draw per task so that shares follow `weights` while using as much data as possible:
    the scarcest task relative to its weight is used fully, the others are sub-sampled to match."""
    unknown = set(weights) - set(TASKS)
    if unknown:
        raise ValueError(f"unknown mid-training task(s) {sorted(unknown)}; known: {list(TASKS)}")
    active = {t: w for t, w in weights.items() if w > 0 and available.get(t, 0) > 0}
    if not active:
        raise ValueError("no mid-training examples: every task has weight 0 or no data")
    total_w = sum(active.values())
    scale = min(available[t] / (w / total_w) for t, w in active.items())
    return {t: (min(available[t], int(round(scale * active[t] / total_w))) if t in active else 0) for t in available}

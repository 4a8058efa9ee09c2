"""What a slate is: the user's history and the K candidates to re-rank, each item as the prompt shows it.

Traces, SFT, DAPO, evaluation and serving all build slates of these types, so an item is shown the same
way wherever a model reads it. The label (`Slate.target_sid`) travels with the slate but never into a
prompt: whoever scores the answer (rejection sampling, rewards, evaluation) reads it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ItemText:
    """An item as the prompt shows it. ``category`` is the most specific category, or ""."""

    item_id: str
    sid: str
    title: str
    category: str = ""
    # Evidence shown beside a candidate when the format asks for it (`train.prompt.evidence`, evidence.py),
    # e.g. "seq #2"; never part of the canonical prompt the teacher and gold.traces see.
    note: str = ""


def item_text(c) -> ItemText:
    """A catalog item (anything with item_id, sid, title and category) as the prompt shows it."""
    return ItemText(c.item_id, c.sid, c.title, c.category)


def sequence_note(rank: int) -> str:
    """A candidate's evidence note from its 0-based place in a sequence model's order: "seq #1" for the first."""
    return f"seq #{rank + 1}"


def sequence_rank(note: str) -> int | None:
    """The 0-based place a `sequence_note` states, or None when the note states none."""
    m = re.fullmatch(r"seq #([1-9][0-9]*)", note or "")
    return int(m.group(1)) - 1 if m else None


@dataclass(frozen=True)
class Slate:
    """A slate to re-rank: ``history`` oldest first, ``candidates`` in the order given (normally the
    pre-ranker's), which an answer's positions refer to. ``target_sid`` (the label) stays with the sampler
    or scorer; prompts are built from history and candidates only."""

    slate_id: str
    history: Sequence[ItemText]
    candidates: Sequence[ItemText]
    target_sid: str


def slate_of_row(row, catalog: dict, history: int) -> Slate | None:
    """A gold.slates row as a slate to prompt with: its most recent `history` items (`train.prompt.history`;
    the teacher reads the same history the student will, so a trace never cites an item the student's
    prompt does not show) and its candidates in their incoming order; None when the target or a candidate
    has no SID under the current tokenizer (`catalog`: item id -> catalog item)."""
    if row["target"] not in catalog or any(i not in catalog for i in row["candidates"]):
        return None
    hist = [item_text(catalog[i]) for i in row["history"] if i in catalog][-history:] if history else []
    return Slate(row["slate_id"], hist, [item_text(catalog[i]) for i in row["candidates"]], catalog[row["target"]].sid)

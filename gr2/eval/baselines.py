"""Non-LLM re-rankers: the yardsticks an LLM re-ranker has to beat.

Every ranker scores the K candidates of one slate and returns its output order as indices into
``candidates``, best first (the same convention as :mod:`gr2.eval.diagnostics`):

- :class:`IncomingOrder` keeps the pre-ranker's order (what serving does without a re-ranker),
- :class:`Popularity` sorts by how often an item occurs in the training split,
- :class:`SASRec`, a self-attentive sequential recommender trained on the training split (defined in
  gr2/models/sasrec.py, since the prompts' evidence notes are its ranks too).

Sorting is stable everywhere: ties, and unknown items (score -inf), keep their incoming order.
Pure python/torch, single process, deterministic on the CPU given a seed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from typing import Protocol

from gr2.models.sasrec import SASRec, order_by_scores


class Ranker(Protocol):
    name: str

    def fit(self, train_sequences: list[list[str]]) -> "Ranker": ...

    def rank(self, history: list[str], candidates: list[str]) -> list[int]: ...


def rank_slates(ranker: Ranker, slates: Iterable[dict]) -> tuple[list[list[int]], list[int]]:
    """Rank slates (dicts with ``history``, ``candidates``, ``target``): the output orders and the
    target's 0-based output position per slate (-1 when the target is not a candidate)."""
    slates = list(slates)
    if hasattr(ranker, "rank_many"):
        orders = ranker.rank_many([list(s["history"]) for s in slates], [list(s["candidates"]) for s in slates])
    else:
        orders = [ranker.rank(list(s["history"]), list(s["candidates"])) for s in slates]
    positions = []
    for s, order in zip(slates, orders):
        cands = list(s["candidates"])
        t = cands.index(s["target"]) if s["target"] in cands else None
        positions.append(order.index(t) if t is not None else -1)
    return orders, positions


class IncomingOrder:
    """Identity: the candidates stay in the order they came in."""

    name = "incoming"

    def fit(self, train_sequences: list[list[str]]) -> "IncomingOrder":
        return self

    def rank(self, history: list[str], candidates: list[str]) -> list[int]:
        return list(range(len(candidates)))


class Popularity:
    """Most frequent items of the training split first; ties (and unseen items) keep the incoming order."""

    name = "popularity"

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def fit(self, train_sequences: list[list[str]]) -> "Popularity":
        self.counts = Counter(item for seq in train_sequences for item in seq)
        return self

    def rank(self, history: list[str], candidates: list[str]) -> list[int]:
        return order_by_scores([self.counts.get(c, 0) for c in candidates])


BASELINES: dict[str, Callable[[], Ranker]] = {
    "incoming": IncomingOrder,
    "popularity": Popularity,
    "sasrec": SASRec,
}

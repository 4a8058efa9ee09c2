"""Output orders: a re-ranked slate as input indices, and whether an order is a whole permutation.

An output order is a list of 0-based indices into the candidates as they were shown: ``order[j]`` is the
input index of the candidate placed at output position ``j``. Rewards, evaluation's diagnostics and
serving all read answers in this form; None stands for an answer that did not parse.
"""

from __future__ import annotations

from collections.abc import Sequence

from gr2.platform.sids import canonical_sid
from gr2.rerank.prompt import strip_sid_markers

Order = Sequence[int] | None


def ranking_positions(ranking: Sequence[str], candidate_sids: Sequence[str]) -> list[int]:
    """Output order as 0-based indices into the candidates: ``out[j]`` is the input index of the item
    placed at position j (this module's convention). ValueError on a SID that is not a candidate."""
    index = {canonical_sid(s): i for i, s in enumerate(candidate_sids)}
    out = []
    for s in ranking:
        key = canonical_sid(strip_sid_markers(s))
        if key not in index:
            raise ValueError(f"SID {key} is not one of the {len(index)} candidates")
        out.append(index[key])
    return out


def is_permutation(order: Order, k: int | None = None) -> bool:
    """True when ``order`` holds each of 0..k-1 exactly once (``k`` defaults to the order's length);
    None and an empty order are not permutations."""
    if order is None or len(order) == 0:
        return False
    k = len(order) if k is None else k
    return len(order) == k and sorted(order) == list(range(k))

"""GR2 conditional verifiable rewards for re-ranking slates (arXiv 2602.07774).

The policy reads a slate of K candidates in pre-ranker order and answers with a
permutation. The reward is checked, not learned:

* rank promotion ``(input_rank - output_rank) / K`` credits moving the target up;
* a format bonus ``alpha`` credits an answer that parses to an exact permutation.

A naive format bonus is hackable: copying the input order always parses, so the
policy can bank ``alpha`` without ranking anything. GR2 makes the bonus
*conditional*: it counts only when the answer made ranking progress (or the input
was already optimal and was kept). Multi-positive slates use per-slate AUC in place
of rank promotion, with the same gate against order copies.

All positions are 0-based. An output order is a list of indices into the input
candidates: ``order[j]`` is the input index of the candidate placed at output
position ``j``.

Two kinds of function live here. The building blocks (rank_promotion, format_reward,
the two format gates, auc_reward, total_reward, total_reward_multi, score_response)
are plain functions, each with the arguments its rule needs. A trainer calls only a
*response reward*: one signature (an answer's order and the slate's labels, see
ResponseReward), looked up by name in REWARDS. To add one, write a function of that
signature under ``@register_reward("name")``; ``train.dapo.reward: name`` then
selects it, with no other edit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from gr2.rerank.permutations import Order, is_permutation

DEFAULT_ALPHA = 0.2
# The reward of an answer that is not a valid permutation: below every valid answer (promotion > -1, AUC >= 0),
# so an unsure policy gains nothing by breaking its format. The config's train.dapo.invalid_penalty default
# is the same (a test checks); 0 would pay an invalid answer more than a valid one that demotes the target.
DEFAULT_INVALID_PENALTY = -1.0


@dataclass(frozen=True)
class RewardBreakdown:
    """One response's reward. ``format`` is the raw format reward (1.0/0.0);
    ``format_counted`` says whether the gate let it into ``total``; ``promotion``
    is the ranking term (rank promotion or AUC)."""

    total: float
    promotion: float
    format: float
    format_counted: bool


def _check_rank(name: str, rank: int, k: int) -> None:
    if not 0 <= rank < k:
        raise ValueError(f"{name}={rank} is outside a slate of size K={k}")


def rank_promotion(input_rank: int, output_rank: int, k: int) -> float:
    """``(input_rank - output_rank) / K``: positive when the target moved up, in (-1, 1)."""
    if k <= 0:
        raise ValueError(f"slate size K must be positive, got {k}")
    _check_rank("input_rank", input_rank, k)
    _check_rank("output_rank", output_rank, k)
    return (input_rank - output_rank) / k


def format_reward(valid: bool) -> float:
    """1.0 when the response parsed to an exact permutation of the slate, else 0.0."""
    return 1.0 if valid else 0.0


def conditional_format_reward(valid: bool, input_rank: int, output_rank: int) -> float:
    """Format reward that counts only with progress: the target moved up, or it was
    first and stayed first. Keeping the target in place elsewhere (e.g. an order
    copy) or pushing it down earns nothing, which removes the copy-the-input hack."""
    if not valid:
        return 0.0
    return 1.0 if output_rank < input_rank or input_rank == output_rank == 0 else 0.0


def auc_reward(output_order_labels: Sequence[float]) -> float:
    """Per-slate AUC of an output order: the share of (positive, negative) pairs
    with the positive placed above the negative. Labels > 0 are positives.

    When every label is equal (no pair to order) the AUC is undefined; we return
    0.5, the value of a random order, so such slates give no signal either way."""
    pos_seen = 0
    correct = 0
    for label in output_order_labels:
        if label > 0:
            pos_seen += 1
        else:
            correct += pos_seen  # every positive above this negative is a correct pair
    n_pos = pos_seen
    n_neg = len(output_order_labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return 0.5
    return correct / (n_pos * n_neg)


def _is_optimal(labels: Sequence[float]) -> bool:
    """All positives before all negatives (trivially true when labels are all equal)."""
    flags = [lab > 0 for lab in labels]
    return flags == sorted(flags, reverse=True)


def conditional_auc_format_reward(
    valid: bool,
    input_labels_in_input_order: Sequence[float],
    output_labels: Sequence[float],
    output_positions: Sequence[int] | None = None,
) -> float:
    """Multi-positive format reward: withheld when the answer copies the input order
    and that order is not already optimal (all positives first).

    A copy is the identity permutation when ``output_positions`` is given; without
    it we compare label sequences, which also catches reorders that only shuffle
    items of equal label (no ranking progress either)."""
    if not valid:
        return 0.0
    if output_positions is not None:
        copied = list(output_positions) == list(range(len(output_positions)))
    else:
        copied = list(output_labels) == list(input_labels_in_input_order)
    if copied and not _is_optimal(input_labels_in_input_order):
        return 0.0
    return 1.0


def total_reward(
    response_valid: bool,
    input_rank: int,
    output_rank: int | None,
    k: int,
    alpha: float = DEFAULT_ALPHA,
    conditional: bool = True,
    invalid_penalty: float = DEFAULT_INVALID_PENALTY,
) -> RewardBreakdown:
    """Single-positive reward: ``promotion + alpha * format`` (format gated when
    ``conditional``). An invalid response gets no promotion credit (there is no
    ranking to score, as in GR2) and no bonus: ``total = invalid_penalty`` (-1 by
    default, below every valid answer: see DEFAULT_INVALID_PENALTY)."""
    if not response_valid or output_rank is None:
        return RewardBreakdown(total=float(invalid_penalty), promotion=0.0, format=0.0, format_counted=False)
    promotion = rank_promotion(input_rank, output_rank, k)
    fmt = format_reward(True)
    counted = bool(conditional_format_reward(True, input_rank, output_rank)) if conditional else True
    return RewardBreakdown(promotion + (alpha * fmt if counted else 0.0), promotion, fmt, counted)


def total_reward_multi(
    response_valid: bool,
    input_labels: Sequence[float],
    output_labels: Sequence[float] | None,
    alpha: float = DEFAULT_ALPHA,
    conditional: bool = True,
    invalid_penalty: float = DEFAULT_INVALID_PENALTY,
    output_positions: Sequence[int] | None = None,
) -> RewardBreakdown:
    """Multi-positive reward: ``AUC(output) + alpha * format``, the format bonus gated
    by :func:`conditional_auc_format_reward` when ``conditional``. Invalid responses
    are treated as in :func:`total_reward` (no AUC credit, total = invalid_penalty)."""
    if not response_valid or output_labels is None:
        return RewardBreakdown(total=float(invalid_penalty), promotion=0.0, format=0.0, format_counted=False)
    auc = auc_reward(output_labels)
    fmt = format_reward(True)
    if conditional:
        counted = bool(conditional_auc_format_reward(True, input_labels, output_labels, output_positions))
    else:
        counted = True
    return RewardBreakdown(auc + (alpha * fmt if counted else 0.0), auc, fmt, counted)


def score_response(
    parsed_ranking_positions: Sequence[int] | None,
    labels_in_input_order: Sequence[float],
    alpha: float = DEFAULT_ALPHA,
    conditional: bool = True,
    invalid_penalty: float = DEFAULT_INVALID_PENALTY,
) -> RewardBreakdown:
    """Score one parsed answer against the slate labels.

    ``parsed_ranking_positions`` is the output order (input indices) or None when
    the answer did not parse; anything that is not an exact permutation is invalid.
    One positive label -> rank promotion; otherwise -> AUC (a slate with no or only
    positives scores AUC 0.5 and carries no ranking signal)."""
    labels = list(labels_in_input_order)
    k = len(labels)
    if k == 0:
        raise ValueError("empty slate")
    valid = is_permutation(parsed_ranking_positions, k)
    positives = [i for i, lab in enumerate(labels) if lab > 0]
    if len(positives) == 1:
        input_rank = positives[0]
        output_rank = list(parsed_ranking_positions).index(input_rank) if valid else None
        return total_reward(valid, input_rank, output_rank, k, alpha, conditional, invalid_penalty)
    output_labels = [labels[i] for i in parsed_ranking_positions] if valid else None
    return total_reward_multi(
        valid, labels, output_labels, alpha, conditional, invalid_penalty,
        output_positions=parsed_ranking_positions if valid else None,
    )


# -- the trainer-facing rewards: looked up by name (train.dapo.reward), one signature ----------------------


class ResponseReward(Protocol):
    """What a trainer calls on every answer: its output order (None when it did not parse) and the slate's
    labels in input order, with the format weight and the invalid answer's reward as keywords."""

    def __call__(self, order: Order, labels: Sequence[float], *, alpha: float = DEFAULT_ALPHA,
                 invalid_penalty: float = DEFAULT_INVALID_PENALTY) -> RewardBreakdown: ...


# Filled by @register_reward below (as verl registers its policy losses); the config's train.dapo.reward
# names one of these, and the CLI checks that it does when it loads the config (gr2.config imports nothing
# of gr2, so the schema cannot list them itself).
REWARDS: dict[str, ResponseReward] = {}


def register_reward(name: str) -> Callable[[ResponseReward], ResponseReward]:
    """Decorator: make a response reward usable as ``train.dapo.reward: <name>``. A name is taken once."""

    def add(fn: ResponseReward) -> ResponseReward:
        if name in REWARDS:
            raise ValueError(f"reward {name!r} is already registered ({REWARDS[name].__qualname__})")
        REWARDS[name] = fn
        return fn

    return add


def get_reward(name: str) -> ResponseReward:
    """The response reward registered under ``name``; an unknown name lists the known ones."""
    try:
        return REWARDS[name]
    except KeyError:
        raise ValueError(f"unknown reward {name!r}; known: {', '.join(sorted(REWARDS))}") from None


@register_reward("conditional")
def conditional_reward(order: Order, labels: Sequence[float], *, alpha: float = DEFAULT_ALPHA,
                       invalid_penalty: float = DEFAULT_INVALID_PENALTY) -> RewardBreakdown:
    """GR2's reward: the format bonus counts only with ranking progress, so copying the input pays nothing."""
    return score_response(order, labels, alpha, conditional=True, invalid_penalty=invalid_penalty)


@register_reward("naive")
def naive_reward(order: Order, labels: Sequence[float], *, alpha: float = DEFAULT_ALPHA,
                 invalid_penalty: float = DEFAULT_INVALID_PENALTY) -> RewardBreakdown:
    """The hackable baseline: the format bonus counts for every valid answer, an order copy included."""
    return score_response(order, labels, alpha, conditional=False, invalid_penalty=invalid_penalty)

"""The offline statistical teacher: a stand-in for an LLM teacher, built from training data only.

It scores a slate's candidates with co-occurrence, category transitions, brand affinity, popularity, the
incoming order and (optionally) a sequential model, samples a ranking, and explains it with the figures
(the text is written by reasoning.py). It is not an LLM and is named so; it lets the pipeline run and be
tested end to end without an endpoint, and its traces cite real figures.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gr2.rerank.prompt import format_response
from gr2.rerank.slate import ItemText, sequence_rank
from gr2.training.teachers.base import TeacherRequest
from gr2.training.teachers.reasoning import CandidateEvidence, partition_order, shown_order, write_reasoning


@dataclass(frozen=True)
class ItemMeta:
    """Catalogue facts the statistical teacher uses. ``categories`` run from broad to specific."""

    title: str = ""
    categories: tuple[str, ...] = ()
    brand: str = ""


def _meta(info: Any) -> ItemMeta:
    """An ItemMeta from a dict, an ItemMeta/ItemText-like object, or None."""
    if info is None:
        return ItemMeta()
    get = info.get if isinstance(info, Mapping) else (lambda k, d=None: getattr(info, k, d))
    cats = get("categories", None)
    if cats is None:
        cat = get("category", "")
        cats = (cat,) if cat else ()
    elif isinstance(cats, str):
        cats = (cats,)
    return ItemMeta(title=str(get("title", "") or ""), categories=tuple(str(c) for c in cats if c),
                    brand=str(get("brand", "") or "").strip())


# "incoming" is the upstream ranker's order, which the prompt shows too: a teacher that ignored it would be
# weaker than the order it is asked to improve (measured in benchmarks/teacher_strength.py).
# "sequential" is a sequential recommender's ranking of the slate (a SASRec-style model fitted on the same
# training sequences, passed in as `sequential`); 0 = no such model is trained.
DEFAULT_WEIGHTS = {"cooc": 1.0, "cat_next": 1.0, "cat_share": 0.5, "brand": 0.5, "popularity": 0.3, "incoming": 2.0,
                   "sequential": 0.0}

# A sequential scorer: (history item ids, candidate item ids) -> one score per candidate, higher is better.
SequentialScorer = Callable[[Sequence[str], Sequence[str]], Sequence[float]]


# How a statistical teacher explains its ranking: "full" cites every figure behind the top candidates, "brief"
# the strongest one in three lines, "shown" only what the student's prompt shows (pre-rank and seq rank).
# "partition" the sequence model's top picks first, then the rest, each in slate order (no sort in it).
REASONING_STYLES = ("full", "brief", "shown", "partition")
SHOWN_SIGNALS = ("incoming", "sequential")
# A style's tag in the teacher's name. "shown2": the decision step lists the sorted products (2026-12-06);
# traces of the first "shown" form (the decision named only the first candidate) stay another teacher's, so
# a rerun samples every slate again instead of skipping those the old form accepted.
# "partkey": the partition rule with keyed steps ("[8] 4 in #3 [8]", then "in #3 [8]"), 2026-12-06. Earlier
# wordings: "-part" picked the lifted candidates straight from the prompt, "-partflag" flagged each candidate
# in/out and then listed the "in" ones (a search its students did not learn; docs/training.md).
_STYLE_TAG = {"full": "", "brief": "-brief", "shown": "-shown2", "partition": "-partkey"}


def _check_shown_weights(weights: Mapping[str, float]) -> None:
    """"shown" reasoning states the ranking as pre-rank x seq rank, lowest first: that is the teacher's
    ranking only when those two signals are weighed alike and nothing else is (the log discounts add)."""
    others = {k: v for k, v in weights.items() if k not in SHOWN_SIGNALS and v}
    if others or not weights["incoming"] or weights["incoming"] != weights["sequential"]:
        raise ValueError(
            "traces.reasoning 'shown' explains the ranking as pre-rank x sequence-model rank, so it needs "
            "traces.weights.incoming == traces.weights.sequential > 0 and every other weight 0 "
            f"(got {dict(weights)})")


def _check_partition_weights(weights: Mapping[str, float]) -> None:
    """"partition" reasoning reads only the sequence model's ranks and the slate's order: it needs the
    sequence model (weights.sequential > 0) and nothing else weighed, so the teacher's name says what it is."""
    others = {k: v for k, v in weights.items() if k not in SHOWN_SIGNALS and v}
    if others or not weights["sequential"]:
        raise ValueError(
            "traces.reasoning 'partition' ranks by the sequence model's top picks and the slate's order only, so it "
            f"needs traces.weights.sequential > 0 and every weight but incoming 0 (got {dict(weights)})")


def weights_tag(weights: Mapping[str, float]) -> str:
    """"" for the default weights, else "-w" + a short hash of them: traces sampled with other weights are
    another teacher's in gold.traces (a rerun with new weights must not skip slates the old ones accepted)."""
    full = {**DEFAULT_WEIGHTS, **weights}
    if full == DEFAULT_WEIGHTS:
        return ""
    return "-w" + hashlib.sha256(json.dumps(sorted(full.items())).encode()).hexdigest()[:6]


class StatisticalTeacher:
    """Scores candidates with training-data statistics, samples a ranking, explains it with the figures.

    Signals (each from ``train_sequences`` / ``items`` only, never from a slate's label):
    * co-occurrence: in how many training sessions the candidate follows a history item within
      ``window`` steps, recency-weighted over the last ``recent`` history items;
    * category transition: P(candidate's leaf category | last history item's leaf category), smoothed
      toward the category's overall share;
    * category share and brand affinity: the share of this user's history in the candidate's
      category / with its brand;
    * popularity: log interactions, scaled to [0, 1];
    * incoming order: the candidate's place in the slate as given (the upstream ranker's order, shown in
      the prompt too), 1 for the first falling to about 0 for the last;
    * sequential model (optional, ``sequential``): the candidate's place in a sequential recommender's
      ranking of the slate from the history the prompt shows, with the same discount as the incoming
      order. It carries what co-occurrence counts cannot: order, and items never seen right after.

    The ranking sorts ``score + temperature * Gumbel`` (a Plackett-Luce sample), seeded by the request.
    Caveat: when slates are cut from the same sequences, a slate's own target transition is counted;
    build it from sequences that exclude the targets you sample traces for where that matters.
    """

    name = "statistical-cooccurrence"

    def __init__(
        self,
        train_sequences: Sequence[Sequence[str]],
        items: Mapping[str, Any],
        window: int = 3,
        recent: int = 5,
        weights: Mapping[str, float] | None = None,
        smoothing: float = 1.0,
        detail: int | None = None,
        sequential: SequentialScorer | None = None,
        reasoning: str = "full",
        partition_top: int = 3,
    ):
        if detail is not None and detail < 1:
            raise ValueError(f"detail must be >= 1 or None, got {detail}")
        self.detail = detail  # candidates explained one by one (the top of the ranking); None = all
        self.reasoning = reasoning
        if self.reasoning not in REASONING_STYLES:
            raise ValueError(f"reasoning must be one of {REASONING_STYLES}, got {self.reasoning!r}")
        self.brief = self.reasoning == "brief"  # three one-line steps instead of the full explanation
        if window < 1 or recent < 1:
            raise ValueError(f"window and recent must be >= 1, got window={window}, recent={recent}")
        unknown = set(weights or {}) - set(DEFAULT_WEIGHTS)
        if unknown:
            raise ValueError(f"unknown weight(s) {sorted(unknown)}; known: {sorted(DEFAULT_WEIGHTS)}")
        self.window, self.recent, self.smoothing = window, recent, smoothing
        self.weights = {**DEFAULT_WEIGHTS, **(weights or {})}
        if self.weights["sequential"] and sequential is None:
            raise ValueError("weights['sequential'] > 0 needs a sequential scorer (traces.weights.sequential: "
                             "`gr2 traces` fits one on the teacher's training sequences)")
        self.sequential = sequential if self.weights["sequential"] else None
        if self.reasoning == "shown":
            _check_shown_weights(self.weights)
        if self.reasoning == "partition":
            _check_partition_weights(self.weights)
        if not isinstance(partition_top, int) or partition_top < 0:
            raise ValueError(f"partition_top must be an int >= 0 (0 keeps the slate's order), got {partition_top!r}; "
                             "`auto` is resolved by `gr2 traces` (gr2/training/rule_choice.py) before a teacher is built")
        self.partition_top = partition_top
        self.name = self.name_for(self.reasoning, self.weights, partition_top)
        self._meta = {str(k): _meta(v) for k, v in items.items()}
        self._pop: Counter[str] = Counter()
        self._follow: dict[str, Counter[str]] = defaultdict(Counter)
        self._cat_next: dict[str, Counter[str]] = defaultdict(Counter)
        self._cat_total: Counter[str] = Counter()
        for seq in train_sequences:
            seq = [str(x) for x in seq]
            self._pop.update(seq)
            pairs = {(seq[i], seq[j]) for j in range(len(seq)) for i in range(max(0, j - window), j)
                     if seq[i] != seq[j]}
            for a, b in pairs:  # a set: counts sessions, not repeats within one
                self._follow[a][b] += 1
            cats = [self._leaf(x) for x in seq]
            self._cat_total.update(c for c in cats if c)
            for a, b in zip(cats, cats[1:]):
                if a and b:
                    self._cat_next[a][b] += 1
        self._max_pop = max(self._pop.values(), default=0)
        self._cat_n = sum(self._cat_total.values())
        self._cat_out = {c: sum(row.values()) for c, row in self._cat_next.items()}

    @classmethod
    def name_for(cls, reasoning: str | bool, weights: Mapping[str, float], partition_top: int = 3) -> str:
        """The name gold.traces keeps this teacher's traces under: a reasoning style (True = "brief"), a
        sequential signal (its traces cite a model the others never saw) and other weights each make another
        teacher, whose traces SFT never mixes with these (and a rerun with new weights samples every slate
        again)."""
        style = "brief" if reasoning is True else ("full" if reasoning is False else reasoning)
        full = {**DEFAULT_WEIGHTS, **weights}
        tag = _STYLE_TAG[style] + (str(partition_top) if style == "partition" else "")
        return cls.name + tag + ("-seq" if full["sequential"] else "") + weights_tag(full)

    def __repr__(self) -> str:
        return (f"StatisticalTeacher(items={len(self._meta)}, window={self.window}, "
                f"recent={self.recent}, weights={self.weights})")

    # -- statistics ---------------------------------------------------------------------------------

    def _leaf(self, item_id: str, fallback: str = "") -> str:
        meta = self._meta.get(item_id)
        return meta.categories[-1] if meta and meta.categories else fallback

    def _brand(self, item_id: str) -> str:
        meta = self._meta.get(item_id)
        return meta.brand if meta else ""

    def _p_cat_next(self, prev: str, nxt: str) -> float:
        if not nxt or not self._cat_n:
            return 0.0
        prior = self._cat_total[nxt] / self._cat_n
        row = self._cat_next.get(prev, Counter()) if prev else Counter()
        return (row[nxt] + self.smoothing * prior) / (self._cat_out.get(prev, 0) + self.smoothing)

    def _evidence(self, history: Sequence[ItemText], candidates: Sequence[ItemText]) -> list[CandidateEvidence]:
        hist_cats = [self._leaf(h.item_id, h.category) for h in history]
        hist_brands = [self._brand(h.item_id) for h in history]
        last_cat = hist_cats[-1] if hist_cats else ""
        recent = list(history[-self.recent:])
        out = []
        k = len(candidates)
        seq_rank = self._sequential_ranks(history, candidates)
        for pos, c in enumerate(candidates):
            ev = CandidateEvidence(item=c, category=self._leaf(c.item_id, c.category), brand=self._brand(c.item_id),
                           position=pos, seq_rank=seq_rank[pos])
            for dist, h in enumerate(reversed(recent)):
                n = self._follow.get(h.item_id, Counter())[c.item_id]
                ev.cooc += n / (1 + dist)
                if n > ev.best_count:
                    ev.best_prev, ev.best_count, ev.best_back = h, n, dist
            ev.cat_next = self._p_cat_next(last_cat, ev.category) if history else 0.0
            ev.cat_share = hist_cats.count(ev.category) / len(history) if history and ev.category else 0.0
            ev.brand_count = hist_brands.count(ev.brand) if ev.brand else 0
            ev.pop_count = self._pop[c.item_id]
            w = self.weights
            ev.parts = {
                "cooc": w["cooc"] * math.log1p(ev.cooc),
                "cat_next": w["cat_next"] * ev.cat_next,
                "cat_share": w["cat_share"] * ev.cat_share,
                "brand": w["brand"] * (ev.brand_count / len(history) if history else 0.0),
                "popularity": w["popularity"] * (math.log1p(ev.pop_count) / math.log1p(self._max_pop)
                                                 if self._max_pop else 0.0),
                # 1 for the first place, falling like a log discount to about 0 for the last
                "incoming": w["incoming"] * (1 - math.log1p(pos) / math.log1p(k)),
                "sequential": w["sequential"] * (1 - math.log1p(ev.seq_rank) / math.log1p(k)) if ev.seq_rank >= 0 else 0.0,
            }
            ev.score = sum(ev.parts.values())
            out.append(ev)
        return out

    def _sequential_ranks(self, history: Sequence[ItemText], candidates: Sequence[ItemText]) -> list[int]:
        """Each candidate's 0-based place in the sequential model's ranking (stable: ties keep the incoming
        order); all -1 without a model or without a history."""
        if self.sequential is None:
            return [-1] * len(candidates)
        noted = [sequence_rank(c.note) for c in candidates]
        if all(r is not None for r in noted):  # the rank the student's prompt shows (evidence.py), from the full history
            return noted
        if not history:
            return [-1] * len(candidates)
        scores = [float(x) for x in self.sequential([h.item_id for h in history], [c.item_id for c in candidates])]
        order = sorted(range(len(scores)), key=lambda i: (-(scores[i] if scores[i] == scores[i] else -math.inf), i))
        rank = [0] * len(scores)
        for r, i in enumerate(order):
            rank[i] = r
        return rank

    # -- answering ----------------------------------------------------------------------------------

    def generate(self, requests: list[TeacherRequest]) -> list[str | Exception]:
        out: list[str | Exception] = []
        for req in requests:
            try:
                out.append(self.answer(req))
            except Exception as exc:  # one bad slate must not sink the batch
                out.append(exc)
        return out

    def answer(self, req: TeacherRequest) -> str:
        """The answer text for one request (``format_response`` JSON)."""
        if req.slate is None:
            raise ValueError(f"{self.name} reads the structured slate: request {req.slate_id!r} has slate=None")
        history, candidates = list(req.slate.history), list(req.slate.candidates)
        if not candidates:
            raise ValueError(f"slate {req.slate_id!r} has no candidates")
        evs = self._evidence(history, candidates)
        scores = np.array([e.score for e in evs])
        if self.reasoning == "shown":  # the exact rule the reasoning states, in integers (no float ties)
            order = shown_order([e.seq_rank for e in evs])
        elif self.reasoning == "partition":
            order = partition_order([e.seq_rank for e in evs], self.partition_top)
        else:
            keys = scores
            if req.temperature > 0:
                rng = np.random.default_rng(req.seed)
                keys = scores + req.temperature * rng.gumbel(size=len(evs))
            order = sorted(range(len(evs)), key=lambda i: (-keys[i], i))
        ranked = [evs[i] for i in order]
        reasoning = self._reasoning(history, evs, ranked)
        return format_response(reasoning, [e.item.sid for e in ranked])

    def _reasoning(self, history: Sequence[ItemText], evs: list[CandidateEvidence],
                   ranked: list[CandidateEvidence]) -> str:
        return write_reasoning(self.reasoning, history, evs, ranked, self._leaf, self._brand, self.detail,
                               self.partition_top)

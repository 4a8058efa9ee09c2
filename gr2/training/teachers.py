"""Teachers that write reasoning traces for re-rank slates (the GR2 rejection-sampling stage).

A teacher answers prompts from :mod:`gr2.rerank.prompt` in its answer format. The interface is a
batch (``generate(requests) -> results``) so a remote teacher can run requests concurrently, and a
failed request is a result (an Exception), not a crash of the whole batch.

* :class:`OpenAITeacher` - any OpenAI-compatible chat endpoint (OpenAI, vLLM, SGLang, Ollama, ...).
* :class:`StatisticalTeacher` - an offline stand-in built from training data only (co-occurrence,
  category transitions, brand affinity, popularity). It is not an LLM and is named so; it lets the
  pipeline run and be tested end to end without an endpoint, and its traces cite real figures.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Protocol, runtime_checkable

import numpy as np

from gr2.platform.sids import canonical_sid
from gr2.rerank.prompt import format_response
from gr2.rerank.slate import ItemText, sequence_rank


@dataclass(frozen=True)
class SlateContext:
    """The structured slate behind a prompt, for teachers that do not read text. Never the label."""

    history: Sequence[ItemText]
    candidates: Sequence[ItemText]


@dataclass(frozen=True)
class TeacherRequest:
    """One prompt to answer. ``seed`` makes sampling reproducible where the teacher supports it."""

    slate_id: str
    attempt: int
    messages: list[dict]
    temperature: float
    seed: int
    slate: SlateContext | None = None


@runtime_checkable
class Teacher(Protocol):
    """Answers a batch of requests; result i is the answer text of request i or the Exception it hit."""

    name: str

    def generate(self, requests: list[TeacherRequest]) -> list[str | Exception]: ...


class TeacherError(Exception):
    """A request that failed for good. ``status`` is the HTTP status when there was one; ``tries`` how
    many calls were made. The message never contains the API key."""

    def __init__(self, message: str, status: int | None = None, retryable: bool = False, tries: int = 1):
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.tries = tries


# --------------------------------------------------------------------------------------------------
# Offline statistical teacher
# --------------------------------------------------------------------------------------------------


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
REASONING_STYLES = ("full", "brief", "shown")
SHOWN_SIGNALS = ("incoming", "sequential")
# A style's tag in the teacher's name. "shown2": the decision step lists the sorted products (2026-12-06);
# traces of the first "shown" form (the decision named only the first candidate) stay another teacher's, so
# a rerun samples every slate again instead of skipping those the old form accepted.
_STYLE_TAG = {"full": "", "brief": "-brief", "shown": "-shown2"}


def _check_shown_weights(weights: Mapping[str, float]) -> None:
    """"shown" reasoning states the ranking as pre-rank x seq rank, lowest first: that is the teacher's
    ranking only when those two signals are weighed alike and nothing else is (the log discounts add)."""
    others = {k: v for k, v in weights.items() if k not in SHOWN_SIGNALS and v}
    if others or not weights["incoming"] or weights["incoming"] != weights["sequential"]:
        raise ValueError(
            "traces.reasoning 'shown' explains the ranking as pre-rank x sequence-model rank, so it needs "
            "traces.weights.incoming == traces.weights.sequential > 0 and every other weight 0 "
            f"(got {dict(weights)})")


def shown_order(seq_ranks: Sequence[int]) -> list[int]:
    """The "shown" rule: 0-based slate positions, lowest (position + 1) x (seq rank + 1) first, ties in slate
    order; a seq rank below 0 (no sequence model) counts as 1, so the pre-rank alone decides."""
    product = [_rank_product(i, r) for i, r in enumerate(seq_ranks)]
    return sorted(range(len(product)), key=lambda i: (product[i], i))


def _rank_product(position: int, seq_rank: int) -> int:
    return (position + 1) * (seq_rank + 1 if seq_rank >= 0 else 1)


def _shown_product(e: _Evidence) -> int:
    return _rank_product(e.position, e.seq_rank)


def weights_tag(weights: Mapping[str, float]) -> str:
    """"" for the default weights, else "-w" + a short hash of them: traces sampled with other weights are
    another teacher's in gold.traces (a rerun with new weights must not skip slates the old ones accepted)."""
    full = {**DEFAULT_WEIGHTS, **weights}
    if full == DEFAULT_WEIGHTS:
        return ""
    return "-w" + hashlib.sha256(json.dumps(sorted(full.items())).encode()).hexdigest()[:6]


@dataclass
class _Evidence:
    item: ItemText
    category: str
    brand: str
    cooc: float = 0.0  # recency-weighted sessions in which it follows a history item
    best_prev: ItemText | None = None
    best_count: int = 0
    best_back: int = 0  # how many items before the latest the best_prev item is
    cat_next: float = 0.0
    cat_share: float = 0.0
    brand_count: int = 0
    pop_count: int = 0
    position: int = 0  # 0-based place in the incoming (pre-ranked) order
    seq_rank: int = -1  # 0-based place in the sequential model's ranking of the slate; -1 = no model
    parts: dict[str, float] = field(default_factory=dict)
    score: float = 0.0


def _title(item: ItemText, limit: int = 80) -> str:
    text = " ".join(str(item.title or "").split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _back(dist: int) -> str:
    return "the latest item" if dist == 0 else f"{dist} item{'s' if dist > 1 else ''} before the latest"


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
        self.name = self.name_for(self.reasoning, self.weights)
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
    def name_for(cls, reasoning: str | bool, weights: Mapping[str, float]) -> str:
        """The name gold.traces keeps this teacher's traces under: a reasoning style (True = "brief"), a
        sequential signal (its traces cite a model the others never saw) and other weights each make another
        teacher, whose traces SFT never mixes with these (and a rerun with new weights samples every slate
        again)."""
        style = "brief" if reasoning is True else ("full" if reasoning is False else reasoning)
        full = {**DEFAULT_WEIGHTS, **weights}
        return cls.name + _STYLE_TAG[style] + ("-seq" if full["sequential"] else "") + weights_tag(full)

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

    def _evidence(self, history: Sequence[ItemText], candidates: Sequence[ItemText]) -> list[_Evidence]:
        hist_cats = [self._leaf(h.item_id, h.category) for h in history]
        hist_brands = [self._brand(h.item_id) for h in history]
        last_cat = hist_cats[-1] if hist_cats else ""
        recent = list(history[-self.recent:])
        out = []
        k = len(candidates)
        seq_rank = self._sequential_ranks(history, candidates)
        for pos, c in enumerate(candidates):
            ev = _Evidence(item=c, category=self._leaf(c.item_id, c.category), brand=self._brand(c.item_id),
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
        else:
            keys = scores
            if req.temperature > 0:
                rng = np.random.default_rng(req.seed)
                keys = scores + req.temperature * rng.gumbel(size=len(evs))
            order = sorted(range(len(evs)), key=lambda i: (-keys[i], i))
        ranked = [evs[i] for i in order]
        reasoning = self._reasoning(history, evs, ranked)
        return format_response(reasoning, [e.item.sid for e in ranked])

    @staticmethod
    def _main_evidence(e: _Evidence) -> str:
        """A candidate's strongest signal, with its figure."""
        if e.score <= 0:
            return "little evidence"
        top = max(e.parts, key=e.parts.get)
        if top == "cooc" and e.best_prev is not None:
            return f"follows {canonical_sid(e.best_prev.sid)} in {e.best_count} sessions"
        if top == "cat_next":
            return f"P({e.category} next) = {e.cat_next:.2f}"
        if top == "cat_share":
            return f"{100 * e.cat_share:.0f}% of history in {e.category}"
        if top == "brand":
            return f"brand {e.brand}"
        if top == "incoming":
            return f"pre-ranked #{e.position + 1}"
        if top == "sequential":
            return f"sequence model #{e.seq_rank + 1}"
        return f"{e.pop_count} training interactions"

    def _brief_reasoning(self, history: Sequence[ItemText], ranked: list[_Evidence]) -> str:
        """The same three steps in about 60 tokens (the paper's traces are about 130): the user's recent item
        and main categories, the strongest signal of the top candidates, the decision. A student that
        writes this before every answer spends its generation budget on the ranking, not on prose."""
        sid = lambda it: canonical_sid(it.sid)  # noqa: E731
        cite = lambda e: f"[{e.position + 1}] {sid(e.item)}"  # noqa: E731
        if history:
            last = history[-1]
            cats = Counter(self._leaf(h.item_id, h.category) for h in history)
            cats.pop("", None)
            leaf = self._leaf(last.item_id, last.category)
            step1 = f"1. Interests: latest {sid(last)}" + (f" ({leaf})" if leaf else "")
            if cats:
                step1 += "; " + ", ".join(f"{c} {100 * k / len(history):.0f}%" for c, k in cats.most_common(2))
            step1 += "."
        else:
            step1 = "1. Interests: a new user; category and popularity decide."
        top = ranked[: max(1, min(2, self.detail or 2))]

        def facts(e: _Evidence) -> str:  # the strongest signal, then the ranks the prompt shows
            main = self._main_evidence(e)
            shown = [f"pre-ranked #{e.position + 1}"] + ([f"sequence model #{e.seq_rank + 1}"] if e.seq_rank >= 0 else [])
            return ", ".join([main] + [f for f in shown if f != main]) + "."

        step2 = "2. " + " ".join(f"{cite(e)}: {facts(e)}" for e in top)
        step3 = f"3. Decision: {cite(ranked[0])} first, the rest by evidence."
        return "\n".join([step1, step2, step3])

    def _shown_reasoning(self, history: Sequence[ItemText], evs: list[_Evidence], ranked: list[_Evidence]) -> str:
        """Every step from what the student's prompt shows, nothing else: the history's main categories,
        each candidate's pre-rank x sequence-model rank in slate order, and the decision. A student can
        redo this arithmetic from its own prompt, where a figure counted in training data it never sees
        ("follows X in 10 sessions") can only be imitated (docs/training.md)."""
        cats = Counter(self._leaf(h.item_id, h.category) for h in history)
        cats.pop("", None)
        step1 = ("1. Interests: " + ", ".join(f"{c} {100 * k / len(history):.0f}%" for c, k in cats.most_common(2)) + "."
                 if cats else "1. Interests: no history; the ranks decide.")
        # in slate order, so the first factor is the candidate's number: "3x2=6" is candidate [3]
        step2 = "2. Pre-rank x seq: " + ", ".join(
            f"{e.position + 1}x{e.seq_rank + 1}={_shown_product(e)}" if e.seq_rank >= 0 else f"{e.position + 1}"
            for e in evs) + "."
        # The sort written out, each candidate with its product: the first SFT student of this style wrote
        # right products (99% of them) and then copied the slate's order into its ranking (docs/training.md);
        # here each next entry is the smallest product left in step 2, and the ranking copies step 3.
        step3 = "3. Decision, lowest first: " + ", ".join(f"[{e.position + 1}] {_shown_product(e)}" for e in ranked) + "."
        return "\n".join([step1, step2, step3])

    def _reasoning(self, history: Sequence[ItemText], evs: list[_Evidence], ranked: list[_Evidence]) -> str:
        if self.reasoning == "shown":
            return self._shown_reasoning(history, evs, ranked)
        if self.brief:
            return self._brief_reasoning(history, ranked)
        sid = lambda it: canonical_sid(it.sid)  # noqa: E731
        # A candidate is cited with its slate number, as the prompt lists it ("[3] <a_..>..."): the
        # number is a unique anchor to copy the SID from, where SIDs alone share prefixes (a student
        # that copies by prefix writes look-alike SIDs that are not in the slate).
        cite = lambda e: f"[{e.position + 1}] {sid(e.item)}"  # noqa: E731
        n = len(history)
        # 1. user interests
        if history:
            cats = Counter(self._leaf(h.item_id, h.category) for h in history)
            cats.pop("", None)
            shares = [f"{100 * k / n:.0f}% in {c}" for c, k in cats.most_common(3)]
            last = history[-1]
            step1 = f"1. User interests: {n} history items; the most recent is {sid(last)} \"{_title(last)}\""
            step1 += (f" ({self._leaf(last.item_id, last.category)})." if self._leaf(last.item_id, last.category)
                      else ".")
            if shares:
                step1 += " " + "; ".join(shares).replace("% in", "% of this user's history is in", 1) + "."
            brands = Counter(b for b in (self._brand(h.item_id) for h in history) if b)
            if brands:
                b, k = brands.most_common(1)[0]
                step1 += f" Most frequent brand: {b} ({k} of {n} items)."
        else:
            step1 = "1. User interests: no history, so only category and item popularity can guide the order."
        # 2. each candidate
        lines = ["2. Candidates:"]
        shown = {id(e) for e in ranked[: self.detail]} if self.detail else {id(e) for e in evs}
        for e in evs:
            if id(e) not in shown:
                continue
            facts = []
            if e.best_prev is not None:
                facts.append(f"follows {sid(e.best_prev)} ({_back(e.best_back)}) in {e.best_count} training "
                             f"session{'s' if e.best_count != 1 else ''}")
            elif history:
                facts.append("never follows a recent history item in training sessions")
            if e.category and history:
                last_cat = self._leaf(history[-1].item_id, history[-1].category) or "unknown"
                facts.append(f"P({e.category} next | {last_cat}) = {e.cat_next:.2f}")
                facts.append(f"{100 * e.cat_share:.0f}% of history in {e.category}")
            if e.brand and e.brand_count:
                facts.append(f"brand {e.brand} in {e.brand_count} of {n} history items")
            facts.append(f"{e.pop_count} training interactions")
            facts.append(f"pre-ranked #{e.position + 1}")
            if e.seq_rank >= 0:
                facts.append(f"sequence model #{e.seq_rank + 1}")
            lines.append(f"- {cite(e)} \"{_title(e.item)}\": " + "; ".join(facts) + f"; score {e.score:.2f}.")
        # 3. decision: each item's strongest signal, with its figure; say so where sampling overrode scores
        main_evidence = self._main_evidence

        rest = [e for e in ranked if id(e) not in shown]
        if rest:
            best_rest = max(e.score for e in rest)
            # Sampling can rank a weaker item above stronger ones; then the rest is not "weaker".
            kind = "weaker evidence" if best_rest <= min(e.score for e in ranked if id(e) in shown) else "evidence"
            lines.append(f"- the other {len(rest)} candidates show {kind} (best score {best_rest:.2f}).")
        decision = []
        for pos, e in enumerate(ranked):
            if id(e) not in shown:
                continue
            note = ""
            higher = [o for o in ranked[pos + 1:] if o.score > e.score]
            if higher:
                best = max(higher, key=lambda o: o.score)
                gap = best.score - e.score
                note = (f"; a close call over {cite(best)}" if gap < 0.25
                        else f"; a speculative pick over {cite(best)} ({best.score:.2f})")
            head = "first" if pos == 0 else "then"
            decision.append(f"{head} {cite(e)} (score {e.score:.2f}: {main_evidence(e)}{note})")
        if rest:
            decision.append("then " + ", ".join(cite(e) for e in rest))
        step3 = "3. Decision: " + ", ".join(decision) + "."
        return "\n".join([step1, "\n".join(lines), step3])


# --------------------------------------------------------------------------------------------------
# OpenAI-compatible remote teacher
# --------------------------------------------------------------------------------------------------

PLACEHOLDER_KEY = "EMPTY"  # what keyless local servers (vLLM, Ollama) accept
_RETRY_STATUS = {408, 409, 429}


def _retry_after(headers: Any, cap: float) -> float | None:
    """Seconds the server asked us to wait (retry-after-ms, Retry-After seconds or HTTP date)."""
    if headers is None:
        return None
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return min(cap, max(0.0, float(ms) / 1000))
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return min(cap, max(0.0, float(value)))
        except ValueError:
            when = parsedate_to_datetime(value)
            return min(cap, max(0.0, when.timestamp() - time.time()))
    except (TypeError, ValueError, OverflowError):
        return None


class OpenAITeacher:
    """A teacher behind any OpenAI-compatible ``/v1/chat/completions`` endpoint.

    The key is read from the environment variable named ``api_key_env`` and kept only inside the
    client: it is not an attribute, not in ``repr``, and scrubbed from error messages. When the
    variable is unset the placeholder "EMPTY" is sent (fine for keyless local servers; a server that
    needs a key answers 401, reported with the variable's name).

    The openai client's own retries are off (``max_retries=0``): this class retries 408/409/429/5xx,
    timeouts and connection errors up to ``max_retries`` times with exponential backoff and jitter,
    waiting what Retry-After says on 429 when given (at most ``max(backoff_max_s, 1)`` seconds); other statuses (400, 401, 403, 404, 422) fail
    at once. Requests of a batch run on ``concurrency`` threads.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 8,
        timeout_s: float = 120.0,
        max_retries: int = 5,
        backoff_s: float = 1.0,
        backoff_max_s: float = 60.0,
        max_tokens: int = 2048,
        send_seed: bool = True,
        name: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        import openai

        if concurrency < 1 or max_retries < 0 or timeout_s <= 0 or backoff_s < 0:
            raise ValueError("need concurrency >= 1, max_retries >= 0, timeout_s > 0, backoff_s >= 0")
        self.base_url, self.model, self.api_key_env = base_url, model, api_key_env
        self.concurrency, self.timeout_s, self.max_retries = concurrency, timeout_s, max_retries
        self.backoff_s, self.backoff_max_s, self.max_tokens = backoff_s, backoff_max_s, max_tokens
        self.send_seed = send_seed
        self.name = name or f"openai:{model}"
        self._sleep = sleep
        self._rng = random.Random()
        key = os.environ.get(api_key_env) or ""
        self._key_set = bool(key)
        self._secrets = [key] if key else []
        self._client = openai.OpenAI(base_url=base_url, api_key=key or PLACEHOLDER_KEY,
                                     timeout=timeout_s, max_retries=0)

    def __repr__(self) -> str:
        return (f"OpenAITeacher(name={self.name!r}, base_url={self.base_url!r}, model={self.model!r}, "
                f"api_key_env={self.api_key_env!r}, concurrency={self.concurrency}, "
                f"max_retries={self.max_retries})")

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> OpenAITeacher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _scrub(self, text: str, limit: int = 500) -> str:
        for s in self._secrets:
            text = text.replace(s, "***")
        return text if len(text) <= limit else text[:limit] + "..."

    def _delay(self, retry: int, server_wait: float | None) -> float:
        if server_wait is not None:
            return server_wait
        base = min(self.backoff_max_s, self.backoff_s * 2**retry)
        return base * self._rng.uniform(0.5, 1.5)

    def _call(self, req: TeacherRequest) -> str | Exception:
        import openai

        where = f"{self.name} at {self.base_url} (slate {req.slate_id!r}, attempt {req.attempt})"
        kwargs: dict[str, Any] = dict(model=self.model, messages=req.messages, temperature=req.temperature,
                                      max_tokens=self.max_tokens)
        if self.send_seed:
            kwargs["seed"] = req.seed
        tries = 0
        while True:
            tries += 1
            status: int | None = None
            wait: float | None = None
            try:
                resp = self._client.chat.completions.create(**kwargs)
            except openai.APIStatusError as exc:
                status = exc.status_code
                retryable = status in _RETRY_STATUS or status >= 500
                detail = f"HTTP {status}: {exc.message}"
                if status == 429:
                    wait = _retry_after(exc.response.headers, cap=max(self.backoff_max_s, 1.0))
                if status == 401:
                    detail += (f" - check the API key in ${self.api_key_env}" if self._key_set else
                               f" - ${self.api_key_env} is not set; this endpoint needs a key")
            except openai.APITimeoutError:
                retryable, detail = True, f"timed out after {self.timeout_s:g}s"
            except openai.APIConnectionError as exc:
                retryable, detail = True, f"connection error: {exc.message}"
            except Exception as exc:  # a malformed reply or a bug: report it, do not retry
                retryable, detail = False, f"{type(exc).__name__}: {exc}"
            else:
                choice = resp.choices[0] if resp.choices else None
                content = choice.message.content if choice is not None else None
                if content:
                    return content
                reason = choice.finish_reason if choice is not None else "no choices"
                return TeacherError(f"{where}: empty completion (finish_reason={reason})", tries=tries)
            if not retryable or tries > self.max_retries:
                gave_up = f" (gave up after {tries} tries)" if retryable else ""
                return TeacherError(self._scrub(f"{where}: {detail}{gave_up}"), status=status,
                                    retryable=retryable, tries=tries)
            self._sleep(self._delay(tries - 1, wait))

    def generate(self, requests: list[TeacherRequest]) -> list[str | Exception]:
        if not requests:
            return []
        if self.concurrency == 1 or len(requests) == 1:
            return [self._call(r) for r in requests]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(requests)),
                                thread_name_prefix="teacher") as pool:
            return list(pool.map(self._call, requests))

"""The statistical teacher's reasoning text: three numbered steps (the user's interests, the candidates'
figures, the decision) in one of four styles.

* "full": every figure behind the candidates explained (all of them, or the top ``detail``);
* "brief": the strongest figure of the top candidates, about 60 tokens;
* "shown": only what the student's prompt shows (pre-rank x sequence-model rank), so a student can redo it;
* "partition": the sequence model's top picks first, then the rest, each in slate order: no sort at all.

The texts are training data: SFT students copy them, and gold.traces keeps them under the teacher's name.
Any change to a string here changes what a rerun writes, so it needs a new teacher name (_STYLE_TAG in
statistical.py); tests/test_teachers.py and tests/test_evidence.py pin their exact form.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from gr2.platform.sids import canonical_sid
from gr2.rerank.slate import ItemText

# Catalogue look-ups the teacher passes in: an item's leaf category (or the fallback), its brand ("" if none).
LeafOf = Callable[[str, str], str]
BrandOf = Callable[[str], str]


@dataclass
class CandidateEvidence:
    """What the statistical teacher found for one candidate: the figures its reasoning cites and its score."""

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


def shown_order(seq_ranks: Sequence[int]) -> list[int]:
    """The "shown" rule: 0-based slate positions, lowest (position + 1) x (seq rank + 1) first, ties in slate
    order; a seq rank below 0 (no sequence model) counts as 1, so the pre-rank alone decides."""
    product = [_rank_product(i, r) for i, r in enumerate(seq_ranks)]
    return sorted(range(len(product)), key=lambda i: (product[i], i))


def partition_order(seq_ranks: Sequence[int], top: int) -> list[int]:
    """The "partition" rule: 0-based slate positions, the candidates with seq #1..#top first, then the rest,
    each group in slate order (top 0: the slate's order). No sort: a filter and two copies, what a small student does reliably (it
    learned to copy and look up, not to sort: docs/training.md). A seq rank below 0 is never lifted."""
    lifted = [p for p, r in enumerate(seq_ranks) if 0 <= r < top]
    return lifted + [p for p in range(len(seq_ranks)) if p not in lifted]


def _rank_product(position: int, seq_rank: int) -> int:
    return (position + 1) * (seq_rank + 1 if seq_rank >= 0 else 1)


def _shown_product(e: CandidateEvidence) -> int:
    return _rank_product(e.position, e.seq_rank)


def _title(item: ItemText, limit: int = 80) -> str:
    text = " ".join(str(item.title or "").split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _back(dist: int) -> str:
    return "the latest item" if dist == 0 else f"{dist} item{'s' if dist > 1 else ''} before the latest"


def _sid(item: ItemText) -> str:
    return canonical_sid(item.sid)


def _cite(e: CandidateEvidence) -> str:
    # A candidate is cited with its slate number, as the prompt lists it ("[3] <a_..>..."): the number is
    # a unique anchor to copy the SID from, where SIDs alone share prefixes (a student that copies by
    # prefix writes look-alike SIDs that are not in the slate).
    return f"[{e.position + 1}] {_sid(e.item)}"


def main_evidence(e: CandidateEvidence) -> str:
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


def write_reasoning(style: str, history: Sequence[ItemText], evs: list[CandidateEvidence],
                    ranked: list[CandidateEvidence], leaf: LeafOf, brand: BrandOf, detail: int | None,
                    partition_top: int = 3) -> str:
    """The reasoning of one answer: ``evs`` in slate order, ``ranked`` in the answer's order."""
    if style == "shown":
        return shown_reasoning(history, evs, ranked, leaf)
    if style == "partition":
        return partition_reasoning(history, evs, ranked, leaf, partition_top)
    if style == "brief":
        return brief_reasoning(history, ranked, leaf, detail)
    return full_reasoning(history, evs, ranked, leaf, brand, detail)


def brief_reasoning(history: Sequence[ItemText], ranked: list[CandidateEvidence], leaf: LeafOf, detail: int | None) -> str:
    """The same three steps in about 60 tokens (the paper's traces are about 130): the user's recent item
    and main categories, the strongest signal of the top candidates, the decision. A student that
    writes this before every answer spends its generation budget on the ranking, not on prose."""
    if history:
        last = history[-1]
        cats = Counter(leaf(h.item_id, h.category) for h in history)
        cats.pop("", None)
        last_leaf = leaf(last.item_id, last.category)
        step1 = f"1. Interests: latest {_sid(last)}" + (f" ({last_leaf})" if last_leaf else "")
        if cats:
            step1 += "; " + ", ".join(f"{c} {100 * k / len(history):.0f}%" for c, k in cats.most_common(2))
        step1 += "."
    else:
        step1 = "1. Interests: a new user; category and popularity decide."
    top = ranked[: max(1, min(2, detail or 2))]

    def facts(e: CandidateEvidence) -> str:  # the strongest signal, then the ranks the prompt shows
        main = main_evidence(e)
        shown = [f"pre-ranked #{e.position + 1}"] + ([f"sequence model #{e.seq_rank + 1}"] if e.seq_rank >= 0 else [])
        return ", ".join([main] + [f for f in shown if f != main]) + "."

    step2 = "2. " + " ".join(f"{_cite(e)}: {facts(e)}" for e in top)
    step3 = f"3. Decision: {_cite(ranked[0])} first, the rest by evidence."
    return "\n".join([step1, step2, step3])


def _interests(history: Sequence[ItemText], leaf: LeafOf) -> str:
    cats = Counter(leaf(h.item_id, h.category) for h in history)
    cats.pop("", None)
    return ("1. Interests: " + ", ".join(f"{c} {100 * k / len(history):.0f}%" for c, k in cats.most_common(2)) + "."
            if cats else "1. Interests: no history; the ranks decide.")


def partition_reasoning(history: Sequence[ItemText], evs: list[CandidateEvidence], ranked: list[CandidateEvidence],
                        leaf: LeafOf, top: int) -> str:
    """The "partition" rule in the student's own steps, each a copy, a local test or a keyed look-up, never
    a search: step 2 goes down the slate and writes each candidate's seq rank, "in" (seq #1..#top) or "out",
    that group's running count, and the candidate again ("[8] 4 in #3 [8]"); step 3 looks each entry up by
    its key ("in #3" -> [8]): the first "in" ones, then the "out" ones.

    Why this shape (docs/training.md): students of the earlier wordings wrote 99% of the per-candidate flags
    right and then copied the slate's order, because picking "the next candidate flagged in" is a search
    over the list. Looking a value up by the key just before it, as the prompt's "[j] ... seq #r" lines
    already are, is what they did reliably."""
    if top == 0:  # `partition_top: auto` found no N worth lifting on this data set (rule_choice.py)
        return "\n".join([_interests(history, leaf),
                           "2. On this data set the seq ranks do not beat the slate's order: keep it.",
                           "3. Decision, the slate's order: " + ", ".join(f"[{e.position + 1}]" for e in ranked) + "."])
    counts = {"in": 0, "out": 0}
    entries, keys = [], {}
    for e in evs:
        group = "in" if 0 <= e.seq_rank < top else "out"
        counts[group] += 1
        key = f"{group} #{counts[group]}"
        keys[id(e)] = key
        rank = str(e.seq_rank + 1) if e.seq_rank >= 0 else "-"
        entries.append(f"[{e.position + 1}] {rank} {key} [{e.position + 1}]")
    step2 = f"2. Seq #1-#{top} in, the rest out: " + ", ".join(entries) + "."
    step3 = "3. Decision, in first, then out: " + ", ".join(f"{keys[id(e)]} [{e.position + 1}]" for e in ranked) + "."
    return "\n".join([_interests(history, leaf), step2, step3])


def shown_reasoning(history: Sequence[ItemText], evs: list[CandidateEvidence], ranked: list[CandidateEvidence],
                    leaf: LeafOf) -> str:
    """Every step from what the student's prompt shows, nothing else: the history's main categories,
    each candidate's pre-rank x sequence-model rank in slate order, and the decision. A student can
    redo this arithmetic from its own prompt, where a figure counted in training data it never sees
    ("follows X in 10 sessions") can only be imitated (docs/training.md)."""
    step1 = _interests(history, leaf)
    # in slate order, so the first factor is the candidate's number: "3x2=6" is candidate [3]
    step2 = "2. Pre-rank x seq: " + ", ".join(
        f"{e.position + 1}x{e.seq_rank + 1}={_shown_product(e)}" if e.seq_rank >= 0 else f"{e.position + 1}"
        for e in evs) + "."
    # The sort written out, each candidate with its product: the first SFT student of this style wrote
    # right products (99% of them) and then copied the slate's order into its ranking (docs/training.md);
    # here each next entry is the smallest product left in step 2, and the ranking copies step 3.
    step3 = "3. Decision, lowest first: " + ", ".join(f"[{e.position + 1}] {_shown_product(e)}" for e in ranked) + "."
    return "\n".join([step1, step2, step3])


def full_reasoning(history: Sequence[ItemText], evs: list[CandidateEvidence], ranked: list[CandidateEvidence],
                   leaf: LeafOf, brand: BrandOf, detail: int | None) -> str:
    """Every figure behind the candidates explained one by one (the top ``detail`` of the ranking, or all),
    then the decision with each pick's strongest signal."""
    shown = {id(e) for e in ranked[:detail]} if detail else {id(e) for e in evs}
    step1 = _full_interests(history, leaf, brand)
    lines = ["2. Candidates:"] + [_full_candidate(e, history, leaf) for e in evs if id(e) in shown]
    rest = [e for e in ranked if id(e) not in shown]
    if rest:
        best_rest = max(e.score for e in rest)
        # Sampling can rank a weaker item above stronger ones; then the rest is not "weaker".
        kind = "weaker evidence" if best_rest <= min(e.score for e in ranked if id(e) in shown) else "evidence"
        lines.append(f"- the other {len(rest)} candidates show {kind} (best score {best_rest:.2f}).")
    step3 = _full_decision(ranked, shown, rest)
    return "\n".join([step1, "\n".join(lines), step3])


def _full_interests(history: Sequence[ItemText], leaf: LeafOf, brand: BrandOf) -> str:
    """Step 1 of the full style: the history's size, latest item, main categories and brand."""
    if not history:
        return "1. User interests: no history, so only category and item popularity can guide the order."
    n = len(history)
    cats = Counter(leaf(h.item_id, h.category) for h in history)
    cats.pop("", None)
    shares = [f"{100 * k / n:.0f}% in {c}" for c, k in cats.most_common(3)]
    last = history[-1]
    step1 = f"1. User interests: {n} history items; the most recent is {_sid(last)} \"{_title(last)}\""
    step1 += f" ({leaf(last.item_id, last.category)})." if leaf(last.item_id, last.category) else "."
    if shares:
        step1 += " " + "; ".join(shares).replace("% in", "% of this user's history is in", 1) + "."
    brands = Counter(b for b in (brand(h.item_id) for h in history) if b)
    if brands:
        b, k = brands.most_common(1)[0]
        step1 += f" Most frequent brand: {b} ({k} of {n} items)."
    return step1


def _full_candidate(e: CandidateEvidence, history: Sequence[ItemText], leaf: LeafOf) -> str:
    """Step 2 of the full style, one candidate's line: every figure behind its score."""
    facts = []
    if e.best_prev is not None:
        facts.append(f"follows {_sid(e.best_prev)} ({_back(e.best_back)}) in {e.best_count} training "
                     f"session{'s' if e.best_count != 1 else ''}")
    elif history:
        facts.append("never follows a recent history item in training sessions")
    if e.category and history:
        last_cat = leaf(history[-1].item_id, history[-1].category) or "unknown"
        facts.append(f"P({e.category} next | {last_cat}) = {e.cat_next:.2f}")
        facts.append(f"{100 * e.cat_share:.0f}% of history in {e.category}")
    if e.brand and e.brand_count:
        facts.append(f"brand {e.brand} in {e.brand_count} of {len(history)} history items")
    facts.append(f"{e.pop_count} training interactions")
    facts.append(f"pre-ranked #{e.position + 1}")
    if e.seq_rank >= 0:
        facts.append(f"sequence model #{e.seq_rank + 1}")
    return f"- {_cite(e)} \"{_title(e.item)}\": " + "; ".join(facts) + f"; score {e.score:.2f}."


def _full_decision(ranked: list[CandidateEvidence], shown: set[int], rest: list[CandidateEvidence]) -> str:
    """Step 3 of the full style: each explained item's strongest signal, with its figure; it says so where
    sampling ranked an item above a stronger one."""
    decision = []
    for pos, e in enumerate(ranked):
        if id(e) not in shown:
            continue
        note = ""
        higher = [o for o in ranked[pos + 1:] if o.score > e.score]
        if higher:
            best = max(higher, key=lambda o: o.score)
            gap = best.score - e.score
            note = (f"; a close call over {_cite(best)}" if gap < 0.25
                    else f"; a speculative pick over {_cite(best)} ({best.score:.2f})")
        head = "first" if pos == 0 else "then"
        decision.append(f"{head} {_cite(e)} (score {e.score:.2f}: {main_evidence(e)}{note})")
    if rest:
        decision.append("then " + ", ".join(_cite(e) for e in rest))
    return "3. Decision: " + ", ".join(decision) + "."

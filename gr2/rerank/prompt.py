"""The re-rank prompt format and its parser: the one place that owns both sides of the contract.

Teachers (rejection sampling), SFT data, RL rollouts and evaluation all render slates and read answers
through this module, so a change in wording or answer format cannot drift between them.

Prompt (GR2, arXiv 2602.07774): a system message with the role, then one user message with the task,
an optional domain-knowledge priming paragraph, the user's history (oldest first) and the K candidates
(in the order given, normally the pre-ranker's), each line a wrapped SID + title + category, then the
same SIDs as one JSON list written the way the answer's ranking is, and the answer instructions: cite
items by SID, reason in numbered steps, answer ONLY with JSON.

Answer: ``{"reasoning":"...","ranking":["<a_1><b_2><c_3><d_4>",...]}``. The canonical form written by
:func:`format_response` is compact JSON with *unwrapped* SIDs (the markers add nothing inside a JSON
string); :func:`parse_response` accepts wrapped SIDs as well.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from gr2.platform.sids import SID_BEGIN, SID_END, canonical_sid, wrap
from gr2.rerank.slate import ItemText

TITLE_MAX_CHARS = 200  # long marketplace titles would crowd out the history; the SID carries identity

SYSTEM_PROMPT = (
    "You are a recommendation re-ranker. Given a user's interaction history and a slate of candidate "
    "items, you reason about the user's interests and re-rank the candidates from most to least likely "
    "to be the user's next interaction. Items are identified by semantic IDs (SIDs) written between "
    f"{SID_BEGIN} and {SID_END}. You always answer with a single JSON object and nothing else."
)


@dataclass(frozen=True)
class ParsedResponse:
    """The outcome of reading one answer. ``ok`` iff ``ranking`` is an exact permutation of the
    candidates; then ``ranking`` holds unwrapped canonical SIDs, best first, else it is None and
    ``error`` says what is wrong."""

    ok: bool
    ranking: list[str] | None
    reasoning: str | None
    error: str | None


def _clean(text: str, limit: int | None = None) -> str:
    """One line of text: collapse whitespace (a newline in a title would break the item list)."""
    text = " ".join(str(text or "").split())
    if limit is not None and len(text) > limit:
        text = text[: limit - 3].rstrip() + "..."
    return text


def sid_list_json(sids: Sequence[str]) -> str:
    """SIDs as the answer's "ranking" writes them: a compact JSON list of unwrapped canonical SIDs."""
    return json.dumps([canonical_sid(s) for s in sids], separators=(",", ":"))


def candidate_listing_line(sids: Sequence[str]) -> str:
    """The prompt's line that repeats the candidates as one list written like the answer's ranking."""
    return f"Candidate SIDs in this order: {sid_list_json(sids)}"


def _item_line(item: ItemText) -> str:
    parts = [wrap(canonical_sid(item.sid)), f'title: "{_clean(item.title, TITLE_MAX_CHARS)}"']
    if _clean(item.category):
        parts.append(f"category: {_clean(item.category)}")
    return " | ".join(parts)


def build_rerank_messages(
    history: Sequence[ItemText], candidates: Sequence[ItemText], knowledge: str | None = None
) -> list[dict]:
    """Chat messages (system + user) asking to re-rank ``candidates`` for the user behind ``history``.

    ``history`` is oldest first. ``candidates`` are shown in the given order, which the answer's
    positions refer to; the caller decides that order and must not let it reveal the label.
    ValueError on an empty slate, a malformed SID or duplicate candidate SIDs (a ranking of
    indistinguishable candidates cannot be read back).
    """
    if not candidates:
        raise ValueError("a re-rank prompt needs at least one candidate")
    sids = [canonical_sid(c.sid) for c in candidates]
    dupes = sorted(s for s, n in Counter(sids).items() if n > 1)
    if dupes:
        raise ValueError(f"candidate SIDs must be unique, duplicated: {', '.join(dupes)}")
    k = len(candidates)

    sections = [f"Task: re-rank the {k} candidate items below for this user, from the most to the least "
                "likely next interaction."]
    if knowledge and knowledge.strip():
        sections.append("Domain knowledge:\n" + knowledge.strip())
    if history:
        lines = [f"{i}. {_item_line(it)}" for i, it in enumerate(history, 1)]
        sections.append(f"User history ({len(history)} items, oldest first):\n" + "\n".join(lines))
    else:
        sections.append("User history: (none - a new user)")
    lines = [f"[{i}] {_item_line(it)}" for i, it in enumerate(candidates, 1)]
    # The same SIDs once more, written exactly as the answer's "ranking" writes them: a model can then
    # build its answer by copying from one contiguous list instead of hopping between item lines.
    sections.append(f"Candidates ({k} items):\n" + "\n".join(lines) + "\n" + candidate_listing_line(sids))
    sections.append(
        "Instructions:\n"
        "Cite items by their SID. Reason in these steps:\n"
        "1. User interests: what the history says about the user's interests, recent intent and preferences.\n"
        "2. Candidates: how each candidate relates to those interests and to the recent items.\n"
        "3. Decision: the final order and why.\n"
        "Answer ONLY with a JSON object, no other text:\n"
        '{"reasoning": "<steps 1-3>", "ranking": ["<a_..><b_..>...", ...]}\n'
        f'"ranking" must list all {k} candidate SIDs exactly once, best first, written without the '
        f"{SID_BEGIN}/{SID_END} markers."
    )
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": "\n\n".join(sections)},
    ]


def render_rerank_prompt(messages: Sequence[dict], add_generation_prompt: bool = True) -> str:
    """Chat messages as one plain-text prompt, for models without a chat template.

    Format: each message is ``"### <Role>:\\n<content>\\n\\n"`` (Role capitalised: System, User,
    Assistant); with ``add_generation_prompt`` a final ``"### Assistant:\\n"`` follows, so the model's
    continuation is the answer. SFT text is ``render_rerank_prompt(msgs) + format_response(...)``.
    """
    out = []
    for m in messages:
        role = str(m.get("role", "")).strip()
        if not role:
            raise ValueError(f"message without a role: {m!r}")
        out.append(f"### {role.capitalize()}:\n{m.get('content', '')}\n\n")
    if add_generation_prompt:
        out.append("### Assistant:\n")
    return "".join(out)


def format_response(reasoning: str, ranking: Sequence[str]) -> str:
    """The canonical answer: compact JSON, SIDs unwrapped. ValueError on a malformed SID."""
    return json.dumps(
        {"reasoning": reasoning, "ranking": [canonical_sid(s) for s in ranking]},
        ensure_ascii=False,
        separators=(",", ":"),
    )


_DECODER = json.JSONDecoder()


def _find_answer(text: str) -> tuple[dict | None, bool]:
    """The last top-level JSON object that has a "ranking" key; also whether any object was found.

    Scans every '{' with a raw decoder, so fences, prose before/after and several objects are fine.
    An object with "ranking" is taken whole (its inner braces are skipped); one without is searched
    inside, so ``{"answer": {"ranking": [...]}}`` still works.
    """
    found: dict | None = None
    any_object = False
    pos = text.find("{")
    while pos != -1:
        try:
            obj, end = _DECODER.raw_decode(text, pos)
        except json.JSONDecodeError:
            obj, end = None, pos + 1
        if isinstance(obj, dict):
            any_object = True
            if "ranking" in obj:
                found = obj
                pos = text.find("{", end)
                continue
        pos = text.find("{", pos + 1)
    return found, any_object


def answer_shape(text: str, k: int) -> bool:
    """True when the text holds a JSON answer whose "ranking" is a list of k strings: the format was
    followed, whether or not the SIDs are the right ones (a diagnostic next to `parse_response`)."""
    found, _ = _find_answer(text)
    ranking = found.get("ranking") if found else None
    return isinstance(ranking, list) and len(ranking) == k and all(isinstance(x, str) for x in ranking)


def strip_sid_markers(entry: str) -> str:
    """An answer's SID entry without the <|sid_begin|>/<|sid_end|> markers it may carry (either or both)."""
    s = entry.strip()
    if s.startswith(SID_BEGIN):
        s = s[len(SID_BEGIN):]
    if s.endswith(SID_END):
        s = s[: -len(SID_END)]
    return s.strip()


def _fail(error: str, reasoning: str | None = None) -> ParsedResponse:
    return ParsedResponse(ok=False, ranking=None, reasoning=reasoning, error=error)


def _short(items: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def parse_response(text: str, candidate_sids: Sequence[str]) -> ParsedResponse:
    """Read an answer against the slate's candidate SIDs (wrapped or not).

    ``ok`` only when "ranking" is a permutation of exactly these candidates; otherwise ``error``
    names every problem found ("missing 2 candidates: ...", "duplicate ...", "unknown SID ...",
    "no JSON object ...", "ranking is not a list ..."), joined by "; ".
    ValueError (a caller bug, not an answer problem) on malformed or duplicate candidate SIDs.
    """
    cands = [canonical_sid(s) for s in candidate_sids]
    if len(set(cands)) != len(cands):
        raise ValueError("candidate SIDs must be unique")
    if not isinstance(text, str):
        return _fail(f"response is not text (got {type(text).__name__})")

    obj, any_object = _find_answer(text)
    if obj is None:
        return _fail('JSON object has no "ranking" key' if any_object else "no JSON object in response")
    reasoning = obj.get("reasoning")
    if reasoning is not None and not isinstance(reasoning, str):
        reasoning = json.dumps(reasoning, ensure_ascii=False)
    ranking = obj["ranking"]
    if not isinstance(ranking, list):
        return _fail(f"ranking is not a list (got {type(ranking).__name__})", reasoning)

    problems: list[str] = []
    sids: list[str] = []
    for i, entry in enumerate(ranking):
        if not isinstance(entry, str):
            problems.append(f"ranking entry {i + 1} is not a string: {entry!r}")
            continue
        raw = strip_sid_markers(entry)
        try:
            sids.append(canonical_sid(raw))
        except ValueError:
            problems.append(f"malformed SID {entry!r} at ranking entry {i + 1}")
    known = set(cands)
    counts = Counter(sids)
    unknown = [s for s in counts if s not in known]
    dupes = [s for s in counts if s in known and counts[s] > 1]
    missing = [s for s in cands if s not in counts]
    if len(ranking) != len(cands):
        n = len(ranking)
        problems.insert(0, f"ranking has {n} entr{'y' if n == 1 else 'ies'}, expected {len(cands)}")
    if missing:
        problems.append(f"missing {len(missing)} candidate{'s' if len(missing) > 1 else ''}: {_short(missing)}")
    for s in dupes:
        problems.append(f"duplicate SID {s} ({counts[s]} times)")
    if unknown:
        problems.append(f"unknown SID{'s' if len(unknown) > 1 else ''} (not a candidate): {_short(unknown)}")
    if problems:
        return _fail("; ".join(problems), reasoning)
    return ParsedResponse(ok=True, ranking=sids, reasoning=reasoning, error=None)

"""How a student model sees a slate and writes its answer: the re-rank format, as one typed object.

Teachers, gold.traces and every metric speak the canonical contract of `prompt.py` (the paper's:
SIDs as `<a_12><b_200>...` tokens, rankings as SID lists). A student may be trained on another surface
form of the same content, chosen by measurement (docs/training.md):

- `sid`: `tokens` writes a SID as new vocabulary tokens between `<|sid_begin|>` and `<|sid_end|>` (the
  paper); `text` writes it in the model's existing vocabulary (`a12 b200 c7 d31`), which a pretrained
  model reads and copies from its first step, where 1,024 new embeddings start with no meaning.
- `cite`: `sid` ranks by SIDs (the paper); `slate` ranks by the candidates' slate numbers
  (`"ranking":[3,1,2,...]`): a short, unique key per candidate that no look-alike SID can blur.
- `style`: `paper` is the full GR2 prompt; `compact` keeps its content (role and task, history and
  candidates with SID + title + category, items cited, three reasoning steps, a JSON answer) in a
  fraction of the tokens: short titles, a capped history, one line per item.
- `evidence`: `sequential` shows a sequence model's rank beside each candidate ("seq #2",
  gr2/models/evidence.py), compact style only; `none` shows the paper's content alone.
- the model's own chat template renders the messages when its tokenizer has one.

A format converts a canonical teacher answer into the student's target text (`answer`), and reads a
student's answer back into a canonical ranking (`parse`), so traces, SFT, DAPO, evaluation and serving
share one definition. It is saved beside every SFT/DAPO model (`rerank_format.json`) and read from there
at evaluation, so a model is always asked in the form it was trained on.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from gr2.platform.sids import canonical_sid, level_prefix, parse_sid, sid_string, wrap
from gr2.rerank import prompt as p
from gr2.rerank.slate import ItemText

FORMAT_FILE = "rerank_format.json"
_CANONICAL_SID = re.compile(r"(?:<\|sid_begin\|>)?((?:<[a-z]_(?:0|[1-9][0-9]*)>)+)(?:<\|sid_end\|>)?")
_TEXT_SID = re.compile(r"[a-z](?:0|[1-9][0-9]*)(?: [a-z](?:0|[1-9][0-9]*))*")
_CITED = re.compile(r"\[(\d+)\] (?:<\|sid_begin\|>)?(?:<[a-z]_(?:0|[1-9][0-9]*)>)+(?:<\|sid_end\|>)?")


@dataclass(frozen=True)
class RerankFormat:
    sid: str = "tokens"  # tokens | text
    cite: str = "sid"  # sid | slate
    style: str = "paper"  # paper | compact
    history: int = 10  # most recent history items shown
    title_words: int = 0  # compact style: words of a title kept (0 = the paper's character cap)
    chat_template: bool = True  # render with the tokenizer's chat template when it has one
    evidence: str = "none"  # none | sequential: what each candidate line carries beside its item

    def __post_init__(self):
        for key, allowed in (("sid", ("tokens", "text")), ("cite", ("sid", "slate")), ("style", ("paper", "compact")),
                             ("evidence", ("none", "sequential"))):
            if getattr(self, key) not in allowed:
                raise ValueError(f"re-rank format: {key} must be one of {allowed}, got {getattr(self, key)!r}")
        if self.evidence != "none" and self.style != "compact":
            raise ValueError(f"re-rank format: evidence={self.evidence!r} is shown by the compact style only "
                             "(train.prompt.style: compact)")

    # -- identity ---------------------------------------------------------------------------------

    @property
    def is_paper(self) -> bool:
        return self.sid == "tokens" and self.cite == "sid" and self.style == "paper"

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_config(cls, pc) -> RerankFormat:
        return cls(sid=pc.sid_format, cite=pc.cite, style=pc.style, history=pc.history, title_words=pc.title_words,
                   chat_template=pc.chat_template, evidence=pc.evidence)

    def save(self, model_dir: Path) -> None:
        (Path(model_dir) / FORMAT_FILE).write_text(self.to_json())

    @classmethod
    def of_model(cls, model_dir: Path, fallback: RerankFormat | None = None) -> RerankFormat:
        """The format a model was trained on (saved beside it), else `fallback` (the config's)."""
        f = Path(model_dir) / FORMAT_FILE
        if f.exists():
            return cls(**json.loads(f.read_text()))
        return fallback or cls()

    # -- SIDs ---------------------------------------------------------------------------------------

    def show_sid(self, sid: str) -> str:
        """A SID as the model reads it in a prompt."""
        codes = parse_sid(sid.strip())
        if self.sid == "text":
            return text_sid(codes)
        return wrap(sid_string(codes))

    def answer_sid(self, sid: str) -> str:
        """A SID as the model writes it inside the answer's "ranking" (unwrapped, as the paper does)."""
        codes = parse_sid(sid.strip())
        return text_sid(codes) if self.sid == "text" else sid_string(codes)

    # -- prompt -------------------------------------------------------------------------------------

    def messages(self, history: Sequence[ItemText], candidates: Sequence[ItemText]) -> list[dict]:
        history = list(history)[-self.history:] if self.history else []
        if self.is_paper:
            return p.build_rerank_messages(history, candidates)
        return self._compact_messages(history, candidates) if self.style == "compact" else self._paper_like(history, candidates)

    def _title(self, title: str) -> str:
        text = p._clean(title, p.TITLE_MAX_CHARS)
        if self.title_words and len(text.split()) > self.title_words:
            text = " ".join(text.split()[: self.title_words]) + "..."
        return text

    def _line(self, item: ItemText) -> str:
        cat = p._clean(item.category)
        return f"{self.show_sid(item.sid)} {self._title(item.title)}" + (f" ({cat})" if cat else "")

    def _compact_messages(self, history, candidates) -> list[dict]:
        k = len(candidates)
        _unique_candidates(candidates)
        hist = "\n".join(self._line(h) for h in history) or "(none: a new user)"
        cands = "\n".join(f"[{i}] {self._line(c)}" + self._evidence(c) for i, c in enumerate(candidates, 1))
        if self.cite == "slate":
            rank_spec = f'"ranking": [all {k} candidate numbers, best first]'
            cite_how = "citing candidates as [n]"
        else:
            example = self.answer_sid(candidates[0].sid)
            rank_spec = f'"ranking": [all {k} candidate SIDs like "{example}", best first]'
            cite_how = "citing items by SID"
        legend = ", as pre-ranked (seq #n: a sequence model's rank of the candidate)" if self.evidence == "sequential" else ""
        user = (f"Re-rank the {k} candidates for this user, most likely next interaction first.\n"
                f"History, oldest first:\n{hist}\nCandidates{legend}:\n{cands}\n"
                f"Reason in 3 short steps (1. interests, 2. candidates, 3. decision), {cite_how}. "
                f'Answer with JSON only: {{"reasoning": "...", {rank_spec}}}')
        system = "You are a recommendation re-ranker. You answer with one JSON object and nothing else."
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    def _evidence(self, item: ItemText) -> str:
        if self.evidence == "none":
            return ""
        if not item.note:  # a prompt that promises evidence and shows none would teach the model to ignore it
            raise ValueError(f"re-rank format with evidence={self.evidence!r}: candidate {item.item_id!r} carries no "
                             "evidence note (annotate slates with gr2.models.evidence first)")
        return f" | {item.note}"

    def _paper_like(self, history, candidates) -> list[dict]:
        """The paper's prompt, with this format's SID spelling and citation rule swapped in."""
        msgs = p.build_rerank_messages(history, candidates)
        user = msgs[1]["content"]
        user = _CANONICAL_SID.sub(lambda m: self.show_sid(m.group(1)), user)
        if self.cite == "slate":
            k = len(candidates)
            user = user.replace("Cite items by their SID.", "Cite candidates by their number [n].")
            user = re.sub(r'"ranking": \[.*\]\}\n.*$', f'"ranking": [3, 1, ...]}}\n"ranking" must list all {k} candidate '
                          "numbers exactly once, best first.", user, flags=re.S)
        return [msgs[0], {"role": "user", "content": user}]

    def prompt(self, history, candidates, tokenizer=None) -> str:
        """The prompt text up to where the answer starts."""
        msgs = self.messages(history, candidates)
        if self.chat_template and tokenizer is not None and getattr(tokenizer, "chat_template", None):
            return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        return p.render_rerank_prompt(msgs)

    # -- answers ------------------------------------------------------------------------------------

    def reasoning(self, teacher_reasoning: str, candidate_sids: Sequence[str]) -> str:
        """A canonical teacher's reasoning in this format's spelling: "[3] <sid>" becomes "[3]" when
        candidates are cited by number, and every other SID is written as the prompt writes it."""
        text = teacher_reasoning or ""
        if self.cite == "slate":
            text = _CITED.sub(lambda m: f"[{m.group(1)}]", text)
        if self.sid == "text":
            text = _CANONICAL_SID.sub(lambda m: text_sid(parse_sid(m.group(1))), text)
        return text

    def answer(self, reasoning: str, ranking: Sequence[str], candidate_sids: Sequence[str]) -> str:
        """The target text: compact JSON with the reasoning and the ranking (SIDs or slate numbers)."""
        if self.is_paper:
            return p.format_response(reasoning, ranking)
        index = {canonical_sid(s): i for i, s in enumerate(candidate_sids)}
        canon = [sid_string(parse_sid(s)) for s in ranking]
        if self.cite == "slate":
            entries: list = [index[s] + 1 for s in canon]
        else:
            entries = [self.answer_sid(s) for s in canon]
        return json.dumps({"reasoning": self.reasoning(reasoning, candidate_sids), "ranking": entries},
                          ensure_ascii=False, separators=(",", ":"))

    def ranking_marker(self) -> str:
        """Where the ranking part of an answer starts (SFT weights it apart; constrained decoding fills it)."""
        return ',"ranking":'

    def parse(self, text: str, candidate_sids: Sequence[str]) -> p.ParsedResponse:
        """A student's answer as a canonical ParsedResponse (ok only for an exact permutation)."""
        if self.is_paper:
            return p.parse_response(text, candidate_sids)
        found, any_object = p._find_answer(text) if isinstance(text, str) else (None, False)
        if found is None:
            return p.parse_response(text, candidate_sids)  # the same messages for "no JSON" and friends
        ranking = found.get("ranking")
        if isinstance(ranking, list):
            ranking = [self._entry_to_sid(e, candidate_sids) for e in ranking]
        canon = {**found, "ranking": ranking}
        return p.parse_response(json.dumps(canon, ensure_ascii=False), candidate_sids)

    def answer_shape(self, text: str, k: int) -> bool:
        """The answer's JSON shape was followed (a ranking of k entries of this format's kind), whether or
        not the entries are the right ones: a diagnostic next to `parse`."""
        if self.cite == "sid":
            return p.answer_shape(text, k)
        found, _ = p._find_answer(text) if isinstance(text, str) else (None, False)
        ranking = found.get("ranking") if found else None
        return (isinstance(ranking, list) and len(ranking) == k
                and all(isinstance(x, int) and not isinstance(x, bool) for x in ranking))

    def _entry_to_sid(self, entry, candidate_sids: Sequence[str]):
        """One ranking entry -> a canonical SID string, or the entry itself when it cannot be read (the
        canonical parser then names the problem)."""
        if self.cite == "slate":
            n = entry if isinstance(entry, int) and not isinstance(entry, bool) else (
                int(entry.strip("[] ")) if isinstance(entry, str) and entry.strip("[] ").isdigit() else None)
            if n is None or not 1 <= n <= len(candidate_sids):
                return f"slate number {entry!r}" if n is None else f"slate number {n} (of {len(candidate_sids)})"
            return canonical_sid(candidate_sids[n - 1])
        if isinstance(entry, str) and self.sid == "text" and _TEXT_SID.fullmatch(entry.strip()):
            return sid_string(parse_text_sid(entry.strip()))
        return entry

    def options(self, candidate_sids: Sequence[str]) -> list[str]:
        """What constrained decoding may write for each candidate in a ranking slot (JSON text)."""
        if self.cite == "slate":
            return [str(i) for i in range(1, len(candidate_sids) + 1)]
        return [json.dumps(self.answer_sid(s)) for s in candidate_sids]

    def with_(self, **kw) -> RerankFormat:
        return replace(self, **kw)


def text_sid(codes: Sequence[int]) -> str:
    """Codes in the model's existing vocabulary: [12, 200, 7, 31] -> 'a12 b200 c7 d31'."""
    return " ".join(f"{level_prefix(i)}{int(c)}" for i, c in enumerate(codes))


def parse_text_sid(text: str) -> list[int]:
    """'a12 b200 c7 d31' -> [12, 200, 7, 31]; ValueError on anything else (levels in order a, b, ...)."""
    parts = text.split(" ")
    codes = []
    for i, part in enumerate(parts):
        if not re.fullmatch(r"[a-z](?:0|[1-9][0-9]*)", part) or part[0] != level_prefix(i):
            raise ValueError(f"malformed text SID {text!r} at {part!r}: expected {level_prefix(i)}<code>")
        codes.append(int(part[1:]))
    return codes


def _unique_candidates(candidates) -> None:
    sids = [canonical_sid(c.sid) for c in candidates]
    if len(set(sids)) != len(sids):
        raise ValueError("candidate SIDs must be unique")
    if not candidates:
        raise ValueError("a re-rank prompt needs at least one candidate")

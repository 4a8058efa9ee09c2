"""Rejection sampling of teacher reasoning traces (GR2 stage 2), pure Python.

For every slate the teacher is asked, up to ``attempts`` times, to re-rank the candidates; an answer
is kept when it parses to an exact permutation and puts the held-out target in the top ``top_k``.
Rounds are batched: round ``a`` sends attempt ``a`` of every slate still without an accepted answer,
so a remote teacher sees large concurrent batches and finished slates stop costing calls.

The teacher never sees the target: requests carry the prompt and the slate's history and candidates
in the given order, nothing else. Every attempt is returned, accepted or not, so acceptance rates and
failure modes can be audited and a run can resume (``already_accepted``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from gr2.platform.sids import canonical_sid
from gr2.rerank.prompt import build_rerank_messages, parse_response
from gr2.rerank.slate import Slate
from gr2.training.teachers import SlateContext, Teacher, TeacherRequest


@dataclass
class Attempt:
    """One teacher call. ``attempt`` is 0-based; ``target_rank`` is the target's 1-based position in a
    valid ranking (None otherwise); ``error`` is the teacher's failure (then ``response`` is None) or
    the parser's complaint."""

    slate_id: str
    teacher: str
    attempt: int
    temperature: float
    response: str | None
    error: str | None
    ranking: list[str] | None
    valid: bool
    accepted: bool
    target_rank: int | None


@dataclass(frozen=True)
class RoundProgress:
    """Passed to ``on_progress`` after each round."""

    round: int
    attempts: list[Attempt]  # this round's
    accepted_total: int  # slates accepted so far in this run
    pending: int  # slates still without an accepted answer


def accept(ranking: Sequence[str] | None, target_sid: str, top_k: int = 1) -> bool:
    """True when the target is among the first ``top_k`` SIDs of ``ranking`` (wrapped or not)."""
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    if not ranking:
        return False
    target = canonical_sid(target_sid)
    return any(canonical_sid(s) == target for s in ranking[:top_k])


def attempt_seed(seed: int, slate_id: str, attempt: int) -> int:
    """A stable per-(run seed, slate, attempt) seed: reruns reproduce, attempts differ."""
    digest = hashlib.sha256(f"{seed}\x00{slate_id}\x00{attempt}".encode()).digest()
    return int.from_bytes(digest[:4], "big")  # fits every server's 32-bit seed


def rejection_sample(
    slates: Sequence[Slate],
    teacher: Teacher,
    attempts: int,
    temperature: float,
    top_k: int = 1,
    seed: int = 0,
    already_accepted: Iterable[str] = frozenset(),
    on_progress: Callable[[RoundProgress], None] | None = None,
    knowledge: str | None = None,
) -> list[Attempt]:
    """Ask ``teacher`` for up to ``attempts`` answers per slate, stopping a slate at its first accepted
    answer; slates whose id is in ``already_accepted`` are skipped. Returns every attempt made."""
    if attempts < 1:
        raise ValueError(f"attempts must be >= 1, got {attempts}")
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    done = set(already_accepted)
    seen: set[str] = set()
    pending = []
    for s in slates:
        if s.slate_id in seen:
            raise ValueError(f"duplicate slate_id {s.slate_id!r}")
        seen.add(s.slate_id)
        cand = [canonical_sid(c.sid) for c in s.candidates]
        if canonical_sid(s.target_sid) not in cand:
            raise ValueError(f"slate {s.slate_id!r}: target {s.target_sid} is not among its candidates, "
                             "so no answer could ever be accepted")
        if s.slate_id not in done:
            pending.append(s)
    # prompts do not change between attempts: build them once
    prompts = {s.slate_id: build_rerank_messages(s.history, s.candidates, knowledge) for s in pending}
    out: list[Attempt] = []
    accepted_total = 0
    for a in range(attempts):
        if not pending:
            break
        requests = [
            TeacherRequest(slate_id=s.slate_id, attempt=a, messages=prompts[s.slate_id], temperature=temperature,
                           seed=attempt_seed(seed, s.slate_id, a),
                           slate=SlateContext(history=tuple(s.history), candidates=tuple(s.candidates)))
            for s in pending
        ]
        results = teacher.generate(requests)
        if len(results) != len(requests):
            raise RuntimeError(f"teacher {teacher.name!r} returned {len(results)} results for {len(requests)} requests")
        this_round = []
        still = []
        for s, res in zip(pending, results):
            att = _judge(s, res, teacher.name, a, temperature, top_k)
            this_round.append(att)
            if att.accepted:
                accepted_total += 1
            else:
                still.append(s)
        out.extend(this_round)
        pending = still
        if on_progress is not None:
            on_progress(RoundProgress(round=a, attempts=this_round, accepted_total=accepted_total,
                                      pending=len(pending)))
    return out


def _judge(s: Slate, res: str | Exception, teacher: str, a: int, temperature: float, top_k: int) -> Attempt:
    common = dict(slate_id=s.slate_id, teacher=teacher, attempt=a, temperature=temperature)
    if isinstance(res, BaseException):
        return Attempt(**common, response=None, error=f"{type(res).__name__}: {res}", ranking=None, valid=False,
                       accepted=False, target_rank=None)
    parsed = parse_response(res, [c.sid for c in s.candidates])
    if not parsed.ok:
        return Attempt(**common, response=res, error=parsed.error, ranking=None, valid=False, accepted=False,
                       target_rank=None)
    rank = parsed.ranking.index(canonical_sid(s.target_sid)) + 1
    return Attempt(**common, response=res, error=None, ranking=parsed.ranking, valid=True,
                   accepted=accept(parsed.ranking, s.target_sid, top_k), target_rank=rank)


def summarize(attempts: Sequence[Attempt]) -> dict:
    """Run statistics. ``errors`` counts teacher failures, ``invalid`` unparseable answers;
    ``attempts_per_accepted`` is None when nothing was accepted."""
    slates = {a.slate_id for a in attempts}
    accepted = {a.slate_id for a in attempts if a.accepted}
    total = len(attempts)
    valid = sum(a.valid for a in attempts)
    errors = sum(a.response is None for a in attempts)
    return {
        "slates": len(slates),
        "accepted_slates": len(accepted),
        "acceptance_rate": len(accepted) / len(slates) if slates else 0.0,
        "attempts_total": total,
        "attempts_per_accepted": total / len(accepted) if accepted else None,
        "valid_rate": valid / total if total else 0.0,
        "errors": errors,
        "invalid": total - valid - errors,
    }

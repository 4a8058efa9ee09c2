"""Rejection sampling of teacher traces with a scripted teacher (a test double of a remote LLM)."""

from __future__ import annotations

import dataclasses

import pytest

from gr2.platform.sids import wrap
from gr2.rerank.prompt import build_rerank_messages, format_response
from gr2.rerank.slate import ItemText, Slate
from gr2.training.rejection import Attempt, accept, attempt_seed, rejection_sample, summarize
from gr2.training.teachers import StatisticalTeacher, TeacherRequest

ITEMS = {k: ItemText(k, f"<a_{i}><b_{i}><c_0><d_1>", f"Title {k}", "Cat") for i, k in enumerate("hxyzw")}
S = {k: v.sid for k, v in ITEMS.items()}
CANDS = [ITEMS["x"], ITEMS["y"], ITEMS["z"]]


def slate(slate_id: str, target: str = "x") -> Slate:
    return Slate(slate_id, [ITEMS["h"]], CANDS, S[target])


class ScriptedTeacher:
    """Answers from a script: script[slate_id][attempt] is a ranking (item keys), raw text or an Exception."""

    name = "scripted"

    def __init__(self, script):
        self.script = script
        self.batches: list[list[TeacherRequest]] = []

    def generate(self, requests):
        self.batches.append(list(requests))
        out = []
        for r in requests:
            step = self.script[r.slate_id][r.attempt]
            if isinstance(step, list):
                step = format_response(f"attempt {r.attempt}", [S[k] for k in step])
            out.append(step)
        return out


@pytest.mark.parametrize(
    "ranking, target, top_k, expected",
    [
        ([S["x"], S["y"], S["z"]], S["x"], 1, True),
        ([S["y"], S["x"], S["z"]], S["x"], 1, False),
        ([S["y"], S["x"], S["z"]], S["x"], 2, True),
        ([S["y"], S["z"], S["x"]], S["x"], 2, False),
        ([wrap(S["x"]), S["y"]], S["x"], 1, True),
        ([S["x"], S["y"]], wrap(S["x"]), 1, True),
        (None, S["x"], 1, False),
        ([], S["x"], 3, False),
    ],
)
def test_accept(ranking, target, top_k, expected):
    assert accept(ranking, target, top_k) is expected


def test_accept_rejects_bad_top_k():
    with pytest.raises(ValueError, match="top_k"):
        accept([S["x"]], S["x"], 0)


SCRIPT = {
    "A": [["x", "y", "z"]],  # accepted at once
    "B": [["y", "x", "z"], "no idea", ["x", "z", "y"]],  # wrong, unparseable, accepted
    "C": [["z", "y", "x"], RuntimeError("HTTP 500 from teacher"), ["y", "x", "z"], ["x", "y", "z"]],
    "D": [["x", "y", "z"]],  # accepted in an earlier run
}


def run(attempts=3, **kw):
    teacher = ScriptedTeacher(SCRIPT)
    progress = []
    out = rejection_sample([slate("A"), slate("B"), slate("C"), slate("D")], teacher, attempts=attempts,
                           temperature=0.8, seed=7, already_accepted={"D"}, on_progress=progress.append, **kw)
    return out, teacher, progress


def test_rounds_stop_at_first_acceptance_and_skip_accepted():
    out, teacher, progress = run()
    assert [[r.slate_id for r in b] for b in teacher.batches] == [["A", "B", "C"], ["B", "C"], ["B", "C"]]
    assert [(a.slate_id, a.attempt, a.accepted) for a in out] == [
        ("A", 0, True), ("B", 0, False), ("C", 0, False),
        ("B", 1, False), ("C", 1, False),
        ("B", 2, True), ("C", 2, False),
    ]  # C never reaches its 4th scripted answer: 3 attempts at most
    assert all(a.teacher == "scripted" and a.temperature == 0.8 for a in out)
    assert [(p.round, len(p.attempts), p.accepted_total, p.pending) for p in progress] == [
        (0, 3, 1, 2), (1, 2, 1, 2), (2, 2, 2, 1)]


def test_attempt_records_and_errors():
    out, _, _ = run()
    by = {(a.slate_id, a.attempt): a for a in out}
    assert by["A", 0] == Attempt("A", "scripted", 0, 0.8, by["A", 0].response, None, [S["x"], S["y"], S["z"]],
                                 True, True, 1)
    assert by["B", 0].valid and not by["B", 0].accepted and by["B", 0].target_rank == 2
    assert by["B", 1].response == "no idea" and not by["B", 1].valid and "no JSON object" in by["B", 1].error
    err = by["C", 1]
    assert err.response is None and err.error == "RuntimeError: HTTP 500 from teacher"
    assert err.ranking is None and not err.valid and err.target_rank is None
    assert by["C", 2].target_rank == 2


def test_top_k_two_accepts_second_place():
    out, teacher, _ = run(attempts=1, top_k=2)
    assert {a.slate_id: a.accepted for a in out} == {"A": True, "B": True, "C": False}
    assert len(teacher.batches) == 1


def test_summary():
    out, _, _ = run()
    assert summarize(out) == {
        "slates": 3, "accepted_slates": 2, "acceptance_rate": 2 / 3, "attempts_total": 7,
        "attempts_per_accepted": 3.5, "valid_rate": 5 / 7, "errors": 1, "invalid": 1,
    }
    empty = summarize([])
    assert empty["slates"] == 0 and empty["attempts_per_accepted"] is None and empty["valid_rate"] == 0.0


def test_teacher_never_receives_the_target():
    requests = {}
    for target in "xyz":  # same slate, different labels: the teacher must see identical requests
        teacher = ScriptedTeacher({"A": [["w"]]})  # an invalid answer, so nothing ends early
        rejection_sample([slate("A", target)], teacher, attempts=1, temperature=1.0, seed=3)
        (req,) = teacher.batches[0]
        requests[target] = req
    assert requests["x"] == requests["y"] == requests["z"]
    req = requests["x"]
    assert {f.name for f in dataclasses.fields(req)} == {"slate_id", "attempt", "messages", "temperature", "seed",
                                                          "slate"}
    assert req.messages == build_rerank_messages([ITEMS["h"]], CANDS)  # candidates in the given order only
    assert list(req.slate.candidates) == CANDS and list(req.slate.history) == [ITEMS["h"]]


def test_seeds_are_stable_and_differ_by_attempt():
    _, teacher, _ = run()
    seeds = [(r.slate_id, r.attempt, r.seed) for b in teacher.batches for r in b]
    assert all(s == attempt_seed(7, sid, a) for sid, a, s in seeds)
    assert len({s for _, _, s in seeds}) == len(seeds)
    assert attempt_seed(7, "B", 1) == attempt_seed(7, "B", 1) != attempt_seed(8, "B", 1)


@pytest.mark.parametrize(
    "slates, attempts, match",
    [
        ([Slate("A", [], CANDS, S["w"])], 1, "not among its candidates"),
        ([slate("A"), slate("A")], 1, "duplicate slate_id"),
        ([slate("A")], 0, "attempts must be >= 1"),
    ],
)
def test_bad_input(slates, attempts, match):
    with pytest.raises(ValueError, match=match):
        rejection_sample(slates, ScriptedTeacher({}), attempts=attempts, temperature=1.0)


def test_teacher_returning_wrong_count_is_an_error():
    class Short(ScriptedTeacher):
        def generate(self, requests):
            return []

    with pytest.raises(RuntimeError, match="returned 0 results for 1 requests"):
        rejection_sample([slate("A")], Short({}), attempts=1, temperature=1.0)


def test_end_to_end_with_statistical_teacher():
    meta = {k: {"title": v.title, "categories": ["Cat"], "brand": ""} for k, v in ITEMS.items()}
    teacher = StatisticalTeacher([["h", "y"]] * 4 + [["h", "x"]], meta)
    slates = [slate(f"s{i}", target="y") for i in range(4)]
    out = rejection_sample(slates, teacher, attempts=2, temperature=0.0)
    stats = summarize(out)
    assert stats["accepted_slates"] == 4 and stats["attempts_total"] == 4 and stats["valid_rate"] == 1.0

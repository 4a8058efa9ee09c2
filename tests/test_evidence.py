"""Evidence beside each candidate (`train.prompt.evidence: sequential`): which model ranks which slate
(cross-fitted for training slates), storage in the lake, and the prompt every stage renders from it.
Real SASRec-style models on the small training lake (Delta tables, no Spark)."""

import re

import pytest
import torch
from script_modules import load_script

from gr2.models import evidence as ev
from gr2.rerank.formats import RerankFormat
from gr2.rerank.slate import ItemText

torch.set_num_threads(1)

COMPACT = dict(sid="text", cite="slate", style="compact", history=3)


def it(n: int, note: str = "") -> ItemText:
    return ItemText(f"i{n:02d}", f"<a_{n // 12}><b_{n % 12 // 4}><c_{n % 4}>", f"Product {n}", "Skin", note)


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    from training_lake import make_training_lake

    return make_training_lake(tmp_path_factory.mktemp("evidence") / "lake", users=80)


@pytest.fixture(scope="module")
def fitted(lake):
    from deltalake import DeltaTable

    seqs = DeltaTable(str(lake / "gold/sequences")).to_pandas()
    rows = list(zip(seqs["user_id"], seqs["items"], seqs["split"]))
    notes = []
    models = ev.fit(rows, epochs=80, seconds=60, seed=0, on_progress=notes.append)
    return models, rows, notes


def test_the_compact_prompt_shows_each_candidates_note_and_explains_it():
    fmt = RerankFormat(**COMPACT, evidence="sequential")
    cands = [it(1, "seq #2"), it(2, "seq #1"), it(3, "seq #3")]
    user = fmt.messages([it(0)], cands)[1]["content"]
    assert "[1] a0 b0 c1 Product 1 (Skin) | seq #2\n[2] a0 b0 c2 Product 2 (Skin) | seq #1" in user
    assert "seq #n: a sequence model's rank of the candidate" in user
    # without evidence the prompt is the one every earlier model was trained on: no note, no legend
    plain = RerankFormat(**COMPACT).messages([it(0)], cands)[1]["content"]
    assert "seq #" not in plain and "Candidates:\n[1] a0 b0 c1 Product 1 (Skin)\n" in plain


@pytest.mark.parametrize("kw, message", [
    (dict(style="paper"), "compact style only"),
    (dict(evidence="popularity"), "evidence must be one of"),
])
def test_a_format_refuses_evidence_it_cannot_show(kw, message):
    with pytest.raises(ValueError, match=message):
        RerankFormat(**{**COMPACT, "evidence": "sequential", **kw})


def test_a_prompt_that_promises_evidence_refuses_a_candidate_without_it():
    fmt = RerankFormat(**COMPACT, evidence="sequential")
    with pytest.raises(ValueError, match="'i02' carries no evidence note"):
        fmt.messages([it(0)], [it(1, "seq #1"), it(2)])


def test_training_slates_are_ranked_by_the_model_that_never_saw_their_user(fitted):
    from gr2.platform.keys import fold

    models, rows, notes = fitted
    assert len(notes) == 3 and all("epochs" in n for n in notes)
    users = {uid: list(items) for uid, items, _ in rows}
    for f in (0, 1):
        other = {i for uid, items in users.items() if fold(uid) != f for i in items[:5]}
        assert set(models.by_fold[f].vocab) == other  # fitted on the other fold's training items only
    assert set(models.full.vocab) == {i for items in users.values() for i in items[:5]}
    u0 = next(u for u in users if fold(u) == 0)
    assert models.model_for(u0, "train") is models.by_fold[0]
    assert models.model_for(u0, "test") is models.full and models.model_for(None, "serve") is models.full
    with pytest.raises(ValueError, match="needs its user id"):
        models.model_for(None, "train")


def test_ranks_follow_the_sequence_a_user_walks(fitted):
    """Users walk a category's items in order: the next item in the walk ranks first among strangers."""
    models, _, _ = fitted
    history = ["i00", "i01", "i02"]
    ranks = models.ranks(None, "test", history, ["i30", "i03", "i17", "i44"])
    assert sorted(ranks) == [0, 1, 2, 3] and ranks[1] == 0


def test_saved_models_load_back_with_the_same_ranks(fitted, lake):
    models, rows, _ = fitted
    run = ev.save(models, lake, {"gold.sequences": 0, "epochs": 80})
    assert (lake / "models/sequential/LATEST").read_text().strip() == run
    # a rerun of `gr2 traces` on the same data with the same settings reuses them; anything else refits
    assert ev.reusable(lake, {"epochs": 80, "gold.sequences": 0}).run == run
    assert ev.reusable(lake, {"gold.sequences": 1, "epochs": 80}) is None
    loaded = ev.load(lake)
    assert loaded.run == run
    hist = [list(items[:3]) for _, items, _ in rows[:10]]
    cands = [["i00", "i13", "i26", "i39"]] * 10
    users = [uid for uid, _, _ in rows[:10]]
    for split in ("train", "test"):
        assert loaded.ranks_many(users, split, hist, cands) == models.ranks_many(users, split, hist, cands)


def test_eval_reuses_the_lakes_all_users_model_as_its_sasrec_baseline(fitted, lake, tmp_path):
    from gr2.config import load_config
    from gr2.eval.jobs import sasrec_baseline

    models, rows, _ = fitted
    run = ev.save(models, lake)
    ranker, source, fitted_already = sasrec_baseline(load_config(None, [], lake=str(lake)))
    assert fitted_already and run in source
    hist, cands = [list(items[:3]) for _, items, _ in rows[:5]], [["i00", "i13", "i26", "i39"]] * 5
    assert ranker.rank_many(hist, cands) == models.full.rank_many(hist, cands)
    # asked to train, or with no sequence models in the lake: a new, unfitted model with its budget
    for overrides, where in ((["eval.sasrec=train", "eval.sasrec_seconds=7"], lake), ([], tmp_path)):
        ranker, source, fitted_already = sasrec_baseline(load_config(None, overrides, lake=str(where)))
        assert not fitted_already and "trained here" in source and ranker is not models.full


def test_a_missing_model_says_what_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="run `gr2 traces`"):
        ev.load(tmp_path)
    assert ev.for_format(RerankFormat(**COMPACT), tmp_path) is None  # no evidence asked: nothing to load


def test_every_stage_renders_the_same_evidence_for_a_slate(fitted, lake):
    """rerank_cases (evaluation, the service check) annotates from the stored models; the notes are the
    all-users model's ranks of each slate's whole stored history, and the prompt shows them."""
    from gr2.models.slates import rerank_cases
    from gr2.rerank.catalog import load_catalog

    models, _, _ = fitted
    ev.save(models, lake)
    catalog, _ = load_catalog(lake)
    fmt = RerankFormat(**COMPACT, evidence="sequential")
    plain = rerank_cases(lake, catalog, "test", 6, 0, 3)
    cases = rerank_cases(lake, catalog, "test", 6, 0, 3, fmt)
    assert [s.slate_id for s, _ in cases] == [s.slate_id for s, _ in plain]
    from deltalake import DeltaTable

    stored = DeltaTable(str(lake / "gold/slates")).to_pandas().set_index("slate_id")["history"]
    assert any(len(stored[s.slate_id]) > len(s.history) for s, _ in cases)  # the prompt shows fewer items
    for (s, _), (p, _) in zip(cases, plain):
        ranks = models.ranks(None, "test", list(stored[s.slate_id]), [c.item_id for c in p.candidates])
        assert [c.note for c in s.candidates] == [ev.note(r) for r in ranks]
        assert all(f"| {c.note}" in fmt.messages(s.history, s.candidates)[1]["content"] for c in s.candidates)


def test_the_teacher_weighs_and_cites_the_rank_the_prompt_shows():
    """With notes on the candidates the statistical teacher takes the sequence model's rank from them (the
    rank of the whole stored history), not from its own call on the shorter history it reads."""
    from gr2.training.teachers import StatisticalTeacher

    items = {f"i{n:02d}": {"title": f"Product {n}", "categories": ["Beauty", "Skin"], "sid": it(n).sid} for n in range(6)}
    calls = []

    def scorer(history, candidates):
        calls.append(list(history))
        return [float(n) for n in range(len(candidates))]  # would rank the last candidate first

    teacher = StatisticalTeacher([["i00", "i01", "i02"]], items, weights={"sequential": 1.0}, sequential=scorer, reasoning="brief")
    # another teacher in gold.traces: its own name, and other weights another name again
    other = StatisticalTeacher([["i00"]], items, weights={"sequential": 2.0}, sequential=scorer, reasoning="brief")
    assert teacher.name.startswith("statistical-cooccurrence-brief-seq-w") and other.name != teacher.name
    assert StatisticalTeacher([["i00"]], items, weights={"incoming": 2.0}).name == "statistical-cooccurrence"  # the default
    noted = [it(3, "seq #1"), it(4, "seq #3"), it(5, "seq #2")]
    assert teacher._sequential_ranks([it(0)], noted) == [0, 2, 1] and not calls
    assert teacher._sequential_ranks([it(0)], [it(3), it(4), it(5)]) == [2, 1, 0] and calls == [["i00"]]


SHOWN = {"cooc": 0.0, "cat_next": 0.0, "cat_share": 0.0, "brand": 0.0, "popularity": 0.0, "incoming": 2.0,
         "sequential": 2.0}


def _rule_teacher_answer(reasoning: str, seq_notes, **kw):
    """A rule teacher ("shown", "partition") answering one slate whose candidates carry `seq_notes`:
    (teacher, candidates, the parsed answer, checked valid)."""
    from gr2.rerank.prompt import build_rerank_messages, parse_response
    from gr2.training.teachers import SlateContext, StatisticalTeacher, TeacherRequest

    items = {f"i{n:02d}": {"title": f"Product {n}", "categories": ["Beauty", "Skin"], "sid": it(n).sid} for n in range(6)}
    teacher = StatisticalTeacher([["i00", "i01", "i03"]] * 5, items, weights=SHOWN, reasoning=reasoning,
                                 sequential=lambda h, c: [0.0] * len(c), **kw)
    cands = [it(n + 1, note) for n, note in enumerate(seq_notes)]
    slate = SlateContext(history=(it(0),), candidates=tuple(cands))
    (text,) = teacher.generate([TeacherRequest("s", 0, build_rerank_messages(slate.history, cands), 0.0, 0, slate)])
    parsed = parse_response(text, [c.sid for c in cands])
    assert parsed.ok, text
    return teacher, cands, parsed


@pytest.mark.parametrize("seq_notes, order, products, decision", [
    # pre-rank x seq rank, lowest first; equal products keep the slate's order
    (("seq #3", "seq #1", "seq #2"), [2, 1, 3], "1x3=3, 2x1=2, 3x2=6", "[2] 2, [1] 3, [3] 6"),
    (("seq #1", "seq #2", "seq #3"), [1, 2, 3], "1x1=1, 2x2=4, 3x3=9", "[1] 1, [2] 4, [3] 9"),
    (("seq #2", "seq #1", "seq #3"), [1, 2, 3], "1x2=2, 2x1=2, 3x3=9", "[1] 2, [2] 2, [3] 9"),  # a tie: [1] first
    (("seq #3", "seq #2", "seq #1"), [1, 3, 2], "1x3=3, 2x2=4, 3x1=3", "[1] 3, [3] 3, [2] 4"),
])
def test_shown_reasoning_states_the_rule_its_ranking_follows(seq_notes, order, products, decision):
    """The "shown" teacher's trace is a function of the student's prompt alone: each candidate's pre-rank x
    the seq rank beside it, in slate order, and the ranking sorts those products, so a student can redo the
    arithmetic instead of imitating counts it never sees (no "follows ... in N sessions")."""
    teacher, cands, parsed = _rule_teacher_answer("shown", seq_notes)
    assert teacher.name.startswith("statistical-cooccurrence-shown2-seq-w")
    assert parsed.ranking == [cands[i - 1].sid for i in order]
    assert f"2. Pre-rank x seq: {products}." in parsed.reasoning
    assert parsed.reasoning.endswith(f"3. Decision, lowest first: {decision}.")  # the sort, written out
    assert "session" not in parsed.reasoning and "interactions" not in parsed.reasoning


@pytest.mark.parametrize("weights", [
    {**SHOWN, "cooc": 1.0},  # a signal the reasoning would not state
    {**SHOWN, "sequential": 1.0},  # unequal: the log discounts no longer add up to the product's order
    {**SHOWN, "incoming": 0.0, "sequential": 0.0},
])
def test_shown_reasoning_refuses_weights_it_would_misstate(weights):
    from gr2.training.teachers import StatisticalTeacher

    with pytest.raises(ValueError, match="pre-rank x sequence-model rank"):
        StatisticalTeacher([["i00"]], {}, weights=weights, reasoning="shown", sequential=lambda h, c: [0.0] * len(c))


def test_traces_reasoning_config_reads_brief_and_refuses_a_sampled_shown_ranking():
    from gr2.config import load_config

    assert load_config(None, ["traces.brief=true"]).traces.reasoning == "brief"
    assert load_config(None, ["traces.brief=false"]).traces.reasoning == "full"
    with pytest.raises(ValueError, match="traces.temperature: 0"):
        load_config(None, ["traces.reasoning=shown", "traces.temperature=0.8"])
    assert load_config(None, ["traces.reasoning=shown", "traces.temperature=0"]).traces.reasoning == "shown"


def test_the_answer_probe_checks_products_against_the_prompt():
    """benchmarks/answer_probe.py: the rule it compares answers with is the teacher's, and a written product
    counts as right only with the prompt's factors and the right result."""

    from gr2.training.teachers import shown_order

    probe = load_script("benchmarks/answer_probe.py")
    assert shown_order([2, 0, 1]) == [1, 0, 2] and shown_order([-1, -1]) == [0, 1]
    seq = [2, 0, 1]  # 0-based seq ranks: the prompt shows seq #3, #1, #2
    assert probe.products_checked("1. x\n2. Pre-rank x seq: 1x3=3, 2x1=2, 3x2=6.\n3. y", seq) == (3, 3, 3)
    assert probe.products_checked("2. Pre-rank x seq: 1x3=4, 2x2=4.\n3. 1x1=1", seq) == (2, 1, 1)
    assert probe.products_checked("no steps", seq) == (0, 0, 0)

    # flags: a keyed partition teacher's own reasoning is all right and its order is the flags' order
    teacher, cands, parsed = _rule_teacher_answer("partition", ("seq #4", "seq #2", "seq #3", "seq #1"), partition_top=2)
    assert probe.flags_checked(parsed.reasoning, [3, 1, 2, 0], 2) == (4, 4, 4, [1, 3, 0, 2])
    # a misread rank counts against the rank, not the flag (which fits the rank written); a candidate missed: no order
    assert probe.flags_checked("2. x: [1] 2 out #1 [1], [2] 2 in #1 [2].\n3. y", [3, 1], 1) == (2, 1, 1, [1, 0])
    assert probe.flags_checked("2. x: [1] 4 out #1 [1].\n3. y", [3, 1], 2)[3] is None


@pytest.mark.parametrize(
    ("rule", "seq_ranks", "expected"),
    [
        # seq ranks are 0-based: candidate [3] (position 2) is the sequence model's #1
        ("lift1", [3, 1, 0, 2], [2, 0, 1, 3]),
        ("lift2", [3, 1, 0, 2], [2, 1, 0, 3]),
        ("partition2", [3, 1, 0, 2], [1, 2, 0, 3]),  # seq #1-#2 in slate order, then the rest
        ("partition3", [3, 1, 0, 2], [1, 2, 3, 0]),
        ("keep_first_lift2", [3, 1, 0, 2], [0, 2, 1, 3]),
        ("interleave", [3, 1, 0, 2], [0, 2, 1, 3]),
    ],
)
def test_the_shown_rules_benchmark_orders(rule, seq_ranks, expected):
    """benchmarks/shown_rules.py: each rule is a permutation of the slate, built as its docstring says."""

    rules = load_script("benchmarks/shown_rules.py")
    fn = {"lift1": lambda r: rules.lift(r, 1), "lift2": lambda r: rules.lift(r, 2),
          "partition2": lambda r: rules.partition_order(r, 2),
          "partition3": lambda r: rules.partition_order(r, 3),
          "keep_first_lift2": lambda r: rules.keep_first_then_lift(r, 2), "interleave": rules.interleave}[rule]
    assert fn(seq_ranks) == expected
    for name, r in rules.RULES.items():  # every registered rule is a permutation
        assert sorted(r(seq_ranks)) == list(range(len(seq_ranks))), name


@pytest.mark.parametrize("seq_notes, top, order, picks", [
    # the candidates with seq #1..#top first, then the rest, each group in slate order
    (("seq #4", "seq #2", "seq #3", "seq #1"), 2, [2, 4, 1, 3],
     "[1] 4 out #1 [1], [2] 2 in #1 [2], [3] 3 out #2 [3], [4] 1 in #2 [4]"),
    (("seq #4", "seq #2", "seq #3", "seq #1"), 3, [2, 3, 4, 1],
     "[1] 4 out #1 [1], [2] 2 in #1 [2], [3] 3 in #2 [3], [4] 1 in #3 [4]"),
    (("seq #1", "seq #2", "seq #3", "seq #4"), 2, [1, 2, 3, 4],
     "[1] 1 in #1 [1], [2] 2 in #2 [2], [3] 3 out #1 [3], [4] 4 out #2 [4]"),  # already in order
])
def test_partition_reasoning_lifts_the_sequence_models_top_picks_in_slate_order(seq_notes, top, order, picks):
    """The "partition" teacher's trace has no sort in it: one pass over the slate picks the candidates the
    sequence model ranks in its top `top`, and the decision copies them, then the rest (benchmarks/shown_rules.py
    measures what that rule is worth)."""
    from gr2.training.teachers import partition_order

    teacher, cands, parsed = _rule_teacher_answer("partition", seq_notes, partition_top=top)
    assert teacher.name.startswith(f"statistical-cooccurrence-partkey{top}-seq-w")
    assert parsed.ranking == [cands[i - 1].sid for i in order]
    assert f"2. Seq #1-#{top} in, the rest out: {picks}." in parsed.reasoning
    keys = dict(re.findall(r"\[(\d+)\] \S+ ((?:in|out) #\d+)", picks))
    assert parsed.reasoning.endswith("3. Decision, in first, then out: "
                                     + ", ".join(f"{keys[str(i)]} [{i}]" for i in order) + ".")
    assert partition_order([-1, -1, 0], 2) == [2, 0, 1]  # no model: never lifted


def test_partition_reasoning_refuses_other_signals_and_a_sampled_ranking():
    from gr2.config import load_config
    from gr2.training.teachers import StatisticalTeacher

    with pytest.raises(ValueError, match="sequence model's top picks"):
        StatisticalTeacher([["i00"]], {}, weights={**SHOWN, "cooc": 1.0}, reasoning="partition",
                           sequential=lambda h, c: [0.0] * len(c))
    with pytest.raises(ValueError, match="traces.temperature: 0"):
        load_config(None, ["traces.reasoning=partition", "traces.temperature=0.8"])
    cfg = load_config(None, ["traces.reasoning=partition", "traces.temperature=0", "traces.partition_top=4"])
    assert cfg.traces.partition_top == 4

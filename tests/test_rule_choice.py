"""`traces.partition_top: auto` (gr2/training/rule_choice.py): the partition teacher's N chosen on each data
set's validation slates, and N = 0 (keep the slate's order) where no N is reliably above the incoming order."""

from __future__ import annotations

import pytest
from training_lake import make_training_lake

from gr2.config import load_config
from gr2.training import rule_choice


def _row(top, ndcg, low):
    return {"top": top, "R@1": 0.0, "R@5": 0.0, "NDCG@5": ndcg, "diff": ndcg - 0.5, "low": low, "high": low + 0.1}


@pytest.mark.parametrize("rows, chosen", [
    # nothing above the incoming order: keep it
    ([_row(0, 0.50, 0.0), _row(1, 0.48, -0.05), _row(4, 0.52, -0.01)], 0),
    # the best mean among those whose interval is above 0
    ([_row(0, 0.50, 0.0), _row(2, 0.55, 0.01), _row(3, 0.56, 0.02), _row(4, 0.54, 0.01)], 3),
    # a higher mean whose interval crosses 0 loses to a lower one that is reliably above
    ([_row(0, 0.50, 0.0), _row(1, 0.53, 0.005), _row(5, 0.60, -0.02)], 1),
    # equal means: the smaller N (a shorter rule to learn)
    ([_row(0, 0.50, 0.0), _row(3, 0.55, 0.01), _row(4, 0.55, 0.01)], 3),
    # N = 0 is never "above" itself
    ([_row(0, 0.50, 0.0)], 0),
])
def test_choose_takes_the_best_n_reliably_above_the_incoming_order(rows, chosen):
    assert rule_choice.choose(rows) == chosen


def test_score_tops_scores_each_n_against_the_incoming_order_on_the_same_slates():
    # 40 slates of K=5 where the sequence model's #1 is the target, sitting 4th in the slate; 10 where the
    # target is first and the model ranks it last
    ranks = [[1, 2, 3, 0, 4]] * 40 + [[4, 0, 1, 2, 3]] * 10
    targets = [3] * 40 + [0] * 10
    rows = rule_choice.score_tops(ranks, targets, [2, 1, 2], n_boot=200)
    assert [r["top"] for r in rows] == [0, 1, 2], "N = 0 first, each N once, in order"
    incoming, one, two = rows
    assert incoming["diff"] == incoming["low"] == 0.0 and incoming["R@1"] == pytest.approx(10 / 50)
    assert one["R@1"] == pytest.approx(40 / 50)  # lifting seq #1 puts the 40 targets first; the 10 stay first
    assert one["low"] > 0 and one["NDCG@5"] > two["NDCG@5"] > incoming["NDCG@5"]
    assert rule_choice.choose(rows) == 1
    with pytest.raises(ValueError, match="no slates"):
        rule_choice.score_tops([], [], [1])


def test_partition_teacher_with_n_0_keeps_the_slate_order_and_says_why():
    from test_evidence import _rule_teacher_answer

    teacher, cands, parsed = _rule_teacher_answer("partition", ("seq #4", "seq #2", "seq #3", "seq #1"), partition_top=0)
    assert teacher.name.startswith("statistical-cooccurrence-partkey0-seq-w")
    assert parsed.ranking == [c.sid for c in cands]
    assert "do not beat the slate's order" in parsed.reasoning
    assert parsed.reasoning.endswith("3. Decision, the slate's order: [1], [2], [3], [4].")


def test_partition_top_config_and_resolution(tmp_path):
    from gr2.config import ConfigError

    assert load_config(None, ["traces.partition_top=4"]).traces.partition_top == 4
    cfg = load_config(None, ["traces.reasoning=partition", "traces.temperature=0", "traces.partition_top=auto"],
                      lake=str(tmp_path))
    assert cfg.traces.partition_top == "auto" and cfg.traces.partition_choices == [1, 2, 3, 4, 5]
    for bad in ("-1", "some"):
        with pytest.raises(ConfigError, match="partition_top"):
            load_config(None, [f"traces.partition_top={bad}"])
    with pytest.raises(FileNotFoundError, match="run it first"):
        rule_choice.resolve_top(cfg)
    choice = rule_choice.RuleChoice(top=2, split="valid", slates=10, evidence_run="r", rows=[_row(0, 0.5, 0.0)])
    rule_choice.save(choice, tmp_path)
    assert rule_choice.resolve_top(cfg) == 2 and rule_choice.load(tmp_path) == choice
    assert rule_choice.resolve_top(load_config(None, ["traces.partition_top=3"], lake=str(tmp_path))) == 3


def test_traces_choose_the_rule_on_the_validation_slates_and_sft_finds_its_traces(spark, tmp_path):
    """A real `gr2 traces` run with `partition_top: auto`: it scores every N on the lake's validation slates
    with the stored all-users sequence model, saves the choice, teaches that N, and the teacher name SFT looks
    its traces up by (`teacher_name`) is the one the traces were written under."""
    from gr2.pipelines.lm_results import TracesResult
    from gr2.training import traces

    lake = make_training_lake(tmp_path / "lake")
    cfg = load_config(overrides=[
        "traces.reasoning=partition", "traces.temperature=0", "traces.attempts=1", "traces.accept_top_k=2",
        "traces.partition_top=auto", "traces.partition_choices=[1,2]", "traces.max_slates=20",
        "traces.sequential_epochs=1", "train.prompt.evidence=sequential",
        "traces.weights={cooc: 0, cat_next: 0, cat_share: 0, brand: 0, popularity: 0, incoming: 2, sequential: 2}",
    ], lake=str(lake))
    t = traces.run(spark, cfg)
    rule = t["partition_rule"]
    assert [r["top"] for r in rule["rows"]] == [0, 1, 2] and rule["split"] == "valid" and rule["slates"] > 0
    assert rule["chosen"] == rule_choice.choose(rule["rows"]) == rule_choice.load(lake).top
    assert f"-partkey{rule['chosen']}-" in t["teacher"] and traces.teacher_name(cfg) == t["teacher"]
    assert t["attempted_slates"] > 0
    text = TracesResult.of(t)
    from io import StringIO

    from rich.console import Console

    out = StringIO()
    text.render(Console(file=out, width=160))
    assert "partition rule on" in out.getvalue() and "chosen" in out.getvalue()

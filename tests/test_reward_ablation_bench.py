"""The parts of benchmarks/reward_ablation.py that need no training: the reward landscape of fixed
policies, the per-slate values behind its paired intervals, and the report over two runs' metrics."""

from __future__ import annotations

import argparse
import csv

import pytest
from script_modules import load_script


@pytest.fixture(scope="module")
def bench():
    return load_script("benchmarks/reward_ablation.py")


def _cases(first_positions: list[int], k: int = 4) -> list:
    return [(None, [int(i == t) for i in range(k)]) for t in first_positions]


def test_the_naive_reward_pays_a_copy_everywhere_and_the_conditional_one_only_where_the_target_was_first(bench):
    cases = _cases([0, 1, 2, 3])  # the target first on one slate of four
    rows = {r["policy"]: r for r in bench.landscape(cases, alpha=0.2, seed=0, invalid_penalty=-1.0)}
    assert rows["copy input order"]["naive"] == pytest.approx(0.2)
    assert rows["copy input order"]["conditional"] == pytest.approx(0.2 / 4)
    assert rows["invalid answer"]["naive"] == rows["invalid answer"]["conditional"] == -1.0
    oracle = rows["oracle (target first)"]
    assert oracle["naive"] == oracle["conditional"] == pytest.approx(0.2 + (0 + 1 + 2 + 3) / 4 / 4)


def test_per_slate_values_count_copies_among_all_answers_and_score_an_invalid_answer_as_the_incoming_order(bench):
    cases = _cases([0, 2, 1])
    row = {"orders": [[0, 1, 2, 3], [2, 0, 1, 3], None]}
    v = bench.per_slate(row, cases)
    assert v["order copies"].tolist() == [1.0, 0.0, 0.0], "an invalid answer is not a copy"
    assert v["R@1"].tolist() == [1.0, 1.0, 0.0], "the invalid answer keeps the target second"
    with pytest.raises(ValueError, match="not the same evaluation"):
        bench.per_slate({"orders": [None]}, cases)


def test_the_report_pairs_the_two_runs_step_by_step_and_plots_them(bench, tmp_path, capsys):
    fields = ["step", "reward", "valid_rate", "order_copy_rate", "promotion", "entropy", "kept_group_ratio", "format",
              "format_counted"]
    state = {"variants": {}, "start": {"valid": 1.0, "copy": 0.0, "R@1": 0.5, "R@5": 1.0, "NDCG@5": 0.7}}
    for v, copies in (("naive", [0.0, 0.1, 0.3, 0.5]), ("conditional", [0.0, 0.0, 0.1, 0.0])):
        path = tmp_path / f"{v}.csv"
        with path.open("w") as f:
            w = csv.DictWriter(f, fields)
            w.writeheader()
            for step, c in enumerate(copies, 1):
                w.writerow({"step": step, "reward": 0.1, "valid_rate": 0.9, "order_copy_rate": c, "promotion": 0.0,
                            "entropy": 0.2, "kept_group_ratio": 1.0, "format": 0.9,
                            "format_counted": 0.9 if v == "naive" else 0.45})
        state["variants"][v] = {"steps_done": 4, "metrics_csv": str(path), "evals": {}}
    args = argparse.Namespace(chunk=2, slates=10, free=True, copy_reward={"naive": 0.2, "conditional": 0.07})
    bench.report(args, state, tmp_path / "state.json")
    out = capsys.readouterr().out
    assert "| 3-4 | 90.0% | 40.0% | 90.0% | 5.0% |" in out
    assert "over steps 3-4: naive 40.0%, conditional 5.0%; naive - conditional +0.350" in out
    assert (tmp_path / "state.png").stat().st_size > 0
    # a copy against the rollouts: the landscape's copy reward minus the mean rollout reward
    assert "| naive | +0.100 | 90.0% | 100.0% | +0.200 | +0.100 |" in out
    assert "| conditional | +0.100 | 90.0% | 50.0% | +0.070 | -0.030 |" in out


def test_the_probe_report_lists_each_step_and_pairs_the_latest_with_sft_and_the_two_variants(bench, capsys):
    def probe(first, copy):
        return {"first": first, "copy": copy, "random": [-12.0, -12.0], "reference": [-1.0, float("nan")]}

    state = {"start": {"probe": probe([0.2, 0.4], [-10.0, -8.0])}, "variants": {
        "naive": {"probes": {"4": probe([0.3, 0.5], [-9.0, -7.0]), "8": probe([0.4, 0.6], [-8.0, -6.0])}},
        "conditional": {"probes": {"4": probe([0.2, 0.3], [-10.0, -9.0])}}}}
    bench.probe_report(state)
    out = capsys.readouterr().out
    assert "| SFT (start of both) | 0 | 0.300 | -9.000 | -12.000 | 3.000 | -1.000 |" in out
    assert "| naive | 8 | 0.500 | -7.000 | -12.000 | 5.000 | -1.000 |" in out
    assert "| naive step 8 - SFT | +0.200 [+0.200, +0.200] | +2.000 [+2.000, +2.000] |" in out
    assert "| naive - conditional, step 4 | +0.150 [" in out, "paired at the step both reached"
    bench.probe_report({"start": {}, "variants": {}})  # a state from before probes: nothing to print
    assert capsys.readouterr().out == ""

"""The parts of benchmarks/copy_propensity.py that need no model: its table and paired intervals, the
reference ranking's gaps (slates whose reference answer was invalid), and what a paused run's rewrite
of its weights changes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from script_modules import load_script


@pytest.fixture(scope="module")
def bench():
    return load_script("benchmarks/copy_propensity.py")


def test_the_report_pairs_policies_on_the_slates_where_both_values_exist(bench, capsys):
    ref = {"first": [0.2, 0.4, 0.6], "copy": [-9.0, -8.0, -7.0], "random": [-12.0, -12.0, -12.0],
           "reference": [-2.0, float("nan"), -4.0]}
    leaner = {"first": [0.3, 0.5, 0.7], "copy": [-8.0, -7.0, -6.0], "random": [-11.0, -11.0, -11.0],
              "reference": [-3.0, -1.0, -5.0]}  # everything likelier by 1: spread, no lean
    rows = {"SFT": bench.measures(ref), "naive": bench.measures(leaner)}
    bench.report(rows, k=10, pairs=[("SFT", "naive")])
    out = capsys.readouterr().out
    assert f"log P(copy) {-math.lgamma(11):.2f}" in out and "P(first) 0.100" in out
    assert "| SFT | 0.400 | -8.000 | -12.000 | 4.000 | -3.000 |" in out, "the mean leaves the invalid reference answer out"
    assert ("| naive - SFT | +0.100 [+0.100, +0.100] | +1.000 [+1.000, +1.000] | +1.000 [+1.000, +1.000] | "
            "+0.000 [+0.000, +0.000] | -1.000 [-1.000, -1.000] |") in out, "spread alone leaves the lean where it was"
    old = bench.measures({"first": [0.5], "copy": [-9.0], "reference": [-1.0]})  # scores from before the control
    assert np.isnan(old["copy lean"]).all() and bench.mean(old["copy lean"]) == ""
    assert bench.paired(np.array([1.0, np.nan]), np.array([np.nan, 2.0])) == "no slate with both"


def test_a_model_folder_is_scored_again_only_when_its_weights_change(bench, tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"a")
    before = bench._weights_stamp(tmp_path)
    assert bench._weights_stamp(tmp_path) == before
    (tmp_path / "model.safetensors").write_bytes(b"ab")
    assert bench._weights_stamp(tmp_path) != before

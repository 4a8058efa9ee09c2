"""The reports index (gr2/pipelines/reports.py) reads the stages' summaries through their typed results,
without Spark or a browser (tests/test_reports_browser.py renders the page in Chromium)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gr2.pipelines import reports
from gr2.pipelines.lm_results import EvalRow

FINAL = {"first": {"step": "1", "loss": "5.4321", "wall_s": "2.0"}, "last": {"step": "20", "loss": "2.3456", "wall_s": "123.4"}}
TRAIN = {"run": "r", "model_dir": "/m", "run_dir": "/r", "metrics_csv": "/r/metrics.csv", "total_steps": 20, "rows": 321}
DAPO = {"run": "d", "base": "/sft", "slates": 4, "model_dir": "/m", "run_dir": "/r", "metrics_csv": "/r/metrics.csv",
        "total_steps": 2, "first": {"step": "1", "reward": "0.1", "loss": "0.5", "wall_s": "3"},
        "last": {"step": "2", "reward": "0.3", "loss": "0.4", "wall_s": "9"}}
BLANK = {"steps": None, "loss_first": None, "loss_last": None, "seconds": None}


def _write(path: Path, summary) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(summary if isinstance(summary, str) else json.dumps(summary))


@pytest.mark.parametrize(
    "stage, summary, figures",
    [
        ("midtrain", {**TRAIN, "final": FINAL}, {"steps": 20, "loss_first": 5.4321, "loss_last": 2.3456, "seconds": 123.4}),
        ("sft", {**TRAIN, "final": FINAL}, {"steps": 20, "loss_first": 5.4321, "loss_last": 2.3456, "seconds": 123.4}),
        ("sft", {**TRAIN, "final": {}}, BLANK),  # no metrics row logged
        ("dapo", DAPO, BLANK),  # its first/last rows sit outside `final`: the index has never shown them
        ("sft", "{cut short", BLANK),  # not JSON: listed, without figures
        ("midtrain", {"final": FINAL}, {"steps": 20, "loss_first": 5.4321, "loss_last": 2.3456, "seconds": 123.4}),  # only a curve
        ("sft", {"final": {"first": {"loss": ""}, "last": {"loss": "x", "step": "3", "wall_s": None}}},
         {**BLANK, "steps": 3}),  # what is not a number stays empty
        ("midtrain", {**TRAIN, "final": [1]}, BLANK),
    ],
)
def test_training_runs_read_the_ends_of_each_curve(tmp_path, stage, summary, figures):
    _write(tmp_path / "models" / stage / "run-1" / "summary.json", summary)
    assert reports.training_runs(tmp_path) == [{"stage": stage, "run": "run-1", **figures}]


def _eval(run_id: str, created: str, valid_rate) -> dict:
    # shaped as gr2.eval.jobs writes summary.json: before the result gets its "report" key
    return {"run_id": run_id, "created_at": created, "split": "test", "n_slates": 40, "k": 5,
            "rows": [{"model": "incoming order", "metrics": {"R@1": [0.4, 0.3, 0.5], "NDCG@5": 0.55}},
                     {"model": "SFT", "metrics": {"R@1": 0.5, "R@5": []}, "diagnostics": {"valid_rate": valid_rate}}]}


def test_eval_runs_are_typed_rows_newest_first(tmp_path):
    _write(tmp_path / "reports/eval/a/summary.json", _eval("eval-1", "2026-01-01", 0.25))
    _write(tmp_path / "reports/eval/b/summary.json", _eval("eval-2", "2026-01-02", None))
    _write(tmp_path / "reports/eval/c/summary.json", "not json")  # skipped
    _write(tmp_path / "reports/eval/d/summary.json", {})  # skipped
    _write(tmp_path / "reports/eval/e/summary.json", {"rows": []})  # not an eval summary: listed by its folder
    runs = reports.eval_runs(tmp_path)
    assert [(r["run"], r["created"], r["href"]) for r in runs] == [
        ("eval-2", "2026-01-02", "eval/b/report.html"), ("eval-1", "2026-01-01", "eval/a/report.html"), ("e", "", "eval/e/report.html")]
    assert [row.model for row in runs[1]["rows"]] == ["incoming order", "SFT"] and runs[2]["rows"] == ()
    incoming, sft = runs[1]["rows"]
    assert (incoming.mean("R@1"), incoming.mean("NDCG@5"), incoming.mean("R@5"), incoming.valid_rate) == (0.4, 0.55, None, None)
    assert (sft.mean("R@1"), sft.mean("R@5"), sft.valid_rate) == (0.5, None, 0.25)


@pytest.mark.parametrize(
    "diagnostics, cell",
    [
        (None, ""),  # a baseline: no answers
        ({"valid_rate": None}, ""),
        ({"valid_rate": 1.0}, "100%"),
        ({"valid_rate": "1.0"}, "100%"),  # read back as text
        ({"valid_rate": 0.25}, '<span class="bad">25%</span> (invalid: incoming order kept)'),
        ({"valid_rate": 0.9}, '<span class="warn">90%</span> (invalid: incoming order kept)'),
        ({"valid_rate": 299 / 300}, '<span class="warn">99.7%</span> (invalid: incoming order kept)'),  # never reads 100%
    ],
)
def test_valid_cell(diagnostics, cell):
    row = {"model": "SFT", "metrics": {}, **({"diagnostics": diagnostics} if diagnostics is not None else {})}
    assert reports._valid_cell(EvalRow.of(row)) == cell


def test_index_shows_the_typed_figures(tmp_path):
    _write(tmp_path / "models/sft/sft-1/summary.json", {**TRAIN, "final": FINAL})
    _write(tmp_path / "reports/eval/eval-1/summary.json", _eval("eval-1", "2026-01-01", 0.25))
    _write(tmp_path / "reports/eval/eval-2/summary.json", _eval("eval-2", "2026-01-02", 1.0))
    page = reports.render_index(tmp_path, docs_built=False)
    assert "2 eval runs" in page and "1 training runs" in page
    assert "<td>sft</td><td>sft-1</td><td>20</td><td>5.4321</td><td>2.3456</td><td>123</td>" in page
    assert '<td>SFT</td><td>0.5000</td><td></td><td></td><td><span class="bad">25%</span>' in page
    assert "<polyline" in page  # the NDCG@5 history plot over the two runs


NIGHT = {"date": "2026-01-02", "exit_code": 4, "seconds": 12.0, "finished_at": "2026-01-03T02:00:00Z", "lake": "/lake",
         "steps": [{"name": "ingest", "status": "ok", "seconds": 1.0, "read": 10, "written": 9, "rejected": 1, "note": "n",
                    "error": None, "details": {}},
                   {"name": "build", "status": "failed", "error": "RuntimeError: boom"}]}  # a key left out takes its default


def test_nightly_runs_are_typed_newest_first_one_per_run_and_odd_files_left_out(tmp_path):
    from gr2.pipelines.run_results import NightRun, StepResult

    nightly = tmp_path / "reports/nightly"
    _write(nightly / "runs/2026-01-02_20260103T020000Z.json", NIGHT)
    _write(nightly / "2026-01-02.json", NIGHT)  # the date's latest file: the same run, listed once
    _write(nightly / "2026-01-01.json", {**NIGHT, "date": "2026-01-01", "exit_code": 0, "finished_at": "2026-01-02T02:00:00Z"})
    _write(nightly / "cut.json", "{cut short")
    _write(nightly / "nodate.json", {"exit_code": 0})
    runs = reports.nightly_runs(tmp_path)
    assert [(r.date, r.href) for r in runs] == [("2026-01-02", "nightly/runs/2026-01-02_20260103T020000Z.json"),
                                                ("2026-01-01", "nightly/2026-01-01.json")]
    run = runs[0]
    assert isinstance(run, NightRun) and run.details == NIGHT and run.exit_code == 4 and run.report is None
    assert run.steps[1] == StepResult("build", status="failed", error="RuntimeError: boom")
    assert run.ran() == ["ingest"] and run.failure() == "RuntimeError: boom" and runs[1].failure() == "RuntimeError: boom"
    page = reports.render_index(tmp_path, docs_built=False)
    assert ('<td><a href="nightly/runs/2026-01-02_20260103T020000Z.json">2026-01-02</a></td><td><span class="bad">4</span></td>'
            "<td>12s</td><td>ingest</td><td>RuntimeError: boom</td><td>2026-01-03T02:00:00Z</td>") in page


def test_night_run_renders_the_step_table_gr2_nightly_prints():
    from rich.console import Console

    from gr2.pipelines.run_results import NightRun

    console = Console(record=True, width=200)
    NightRun.of({**NIGHT, "report": "/lake/reports/nightly/2026-01-02.json"}).render(console)
    out = console.export_text()
    assert "nightly 2026-01-02: exit 4 in 12s" in out and "summary: /lake/reports/nightly/2026-01-02.json" in out
    assert "ingest" in out and "RuntimeError: boom" in out and "failed" in out


def test_validations_are_typed_newest_first_with_their_data_docs_page(tmp_path):
    from gr2.platform import quality

    store = quality.context_root(tmp_path) / "gx" / "uncommitted" / "validations"
    _write(store / "silver_items_gate/run/20260101/a.json",
           {"suite_name": "silver_items_gate", "success": False, "meta": {"validation_time": "2026-01-02T10:00:00Z"},
            "statistics": {"successful_expectations": 2, "evaluated_expectations": 3}})
    _write(store / "gold_slates_gate/run/20260101/b.json", {"success": True, "meta": {"validation_time": "2026-01-01T10:00:00Z"}})
    _write(store / "empty_gate/run/20260101/c.json", {})  # nothing to list
    vals = reports.validations(tmp_path)
    assert [(v.suite, v.success, v.passed, v.checks) for v in vals] == [("silver_items_gate", False, 2, 3),
                                                                         ("gold_slates_gate", True, None, None)]
    assert vals[0].href == "quality/validations/silver_items_gate/run/20260101/a.html"
    page = reports.render_index(tmp_path, docs_built=True)
    assert "2 quality validations (1 failed)" in page and "<td>2/3</td>" in page and "<td>None/None</td>" in page

"""Evaluation report files and the eval.runs Delta table."""

import json
import math

import numpy as np
import pytest

from gr2.eval.diagnostics import target_landing
from gr2.eval.report import differences, metrics_with_ci, write_report
from gr2.eval.runs import COLUMNS, compare, format_compare, publish, to_rows
from gr2.rerank.metrics import slate_metrics

K = 5


def _run(run_id: str, shift: int = 0, n: int = 60) -> dict:
    rng = np.random.default_rng(shift)
    incoming = rng.integers(0, K, size=n).tolist()
    better = [max(0, p - 2 - shift) for p in incoming]
    return {
        "differences": differences({"incoming": incoming, "sasrec": better}, ["sasrec"], ["incoming"], n_boot=200),
        "run_id": run_id,
        "created_at": "2025-01-02T03:04:05+00:00",
        "dataset": "synthetic",
        "split": "test",
        "n_slates": n,
        "rows": [
            {"model": "incoming", "metrics": metrics_with_ci(incoming, n_boot=200)},
            {
                "model": "sasrec",
                "metrics": metrics_with_ci(better, n_boot=200),
                "diagnostics": {
                    "valid_rate": 1.0,
                    "order_copy_rate": 0.1 * shift,
                    "mean_displacement": 1.5,
                    "landing": target_landing(incoming, better, K).tolist(),
                },
            },
        ],
    }


def test_metrics_with_ci_brackets_the_mean_and_matches_slate_metrics():
    positions = [0, 2, -1, 4, 1, 0, 7, 3, 0, 5] * 5
    ci = metrics_with_ci(positions, n_boot=300, seed=1)
    plain = slate_metrics(positions)
    assert set(ci) == set(plain)
    for name, (mean, low, high) in ci.items():
        assert math.isclose(mean, plain[name])
        assert low <= mean <= high and low < high
    assert metrics_with_ci(positions, n_boot=300, seed=1) == ci


def test_report_files(tmp_path):
    run = _run("r1")
    html_path = write_report(tmp_path / "rep", run)
    out = tmp_path / "rep"
    assert html_path == out / "report.html"
    for name in ("report.md", "report.html", "summary.json"):
        assert (out / name).stat().st_size > 0
    page = html_path.read_text()
    assert "<tr><th>incoming</th>" in page and "<tr><th>sasrec</th>" in page
    assert page.count('<img alt="') >= 2  # the metric bars and sasrec's position-bias heatmap
    assert '<img alt="metrics" src="data:image/png;base64,' in page
    assert '<img alt="landing:sasrec" src="data:image/png;base64,' in page
    assert "src=\"http" not in page  # self-contained
    mean, low, high = run["rows"][1]["metrics"]["R@1"]
    assert f"{mean:.4f} [{low:.4f}, {high:.4f}]" in page
    md = (out / "report.md").read_text()
    assert "| sasrec |" in md and "NDCG@k" in md and "order_copy_rate" in md
    assert "| sasrec |" in md and "| 100% |" in md  # the valid share beside an LM row
    assert "## Paired differences" in md and "| sasrec | incoming |" in md
    assert '<img alt="paired differences" src="data:image/png;base64,' in page
    d = next(d for d in run["differences"] if d["metric"] == "R@1")
    assert f"{d['diff'][0]:+.4f} [{d['diff'][1]:+.4f}, {d['diff'][2]:+.4f}] *" in md  # excludes 0: starred
    summary = json.loads((out / "summary.json").read_text())
    assert summary["run_id"] == "r1" and len(summary["rows"][1]["diagnostics"]["landing"]) == K
    for row in summary["rows"]:
        for mean, low, high in row["metrics"].values():
            assert low <= mean <= high


def test_to_rows_has_one_row_per_metric():
    rows = to_rows(_run("r1"))
    assert all(len(r) == len(COLUMNS) for r in rows)
    keyed = {(r[0], r[2], r[5]): r for r in rows}
    assert len(keyed) == len(rows) == 5 + 5 + 3 + 3  # metrics, metrics, diagnostics, paired differences
    diff = keyed[("r1", "sasrec", "R@1 - incoming")]
    assert diff[6] > 0 and diff[7] <= diff[6] <= diff[8]  # sasrec lifts every target: a positive difference
    assert keyed[("r1", "sasrec", "valid_rate")][7] is None  # diagnostics carry no CI


def test_publish_compare_and_idempotence(spark, lake):
    a, b = _run("run-a"), _run("run-b", shift=1)
    first = publish(spark, lake.root, a)
    assert first.rows_written == 16 and first.version == 0  # 13 metrics and diagnostics + 3 paired differences
    second = publish(spark, lake.root, b)
    assert second.rows_written == 16 and second.version == 1
    again = publish(spark, lake.root, a)
    assert again.skipped and again.rows_written == 0 and lake.version(spark, "eval.runs") == 1
    assert lake.read(spark, "eval.runs").count() == 32

    df = compare(spark, lake.root, "run-a", "run-b")
    assert list(df.columns) == ["model", "metric", "a", "b", "diff"]
    assert len(df) == 16
    assert set(df[df.model == "sasrec"].metric) >= {"R@1 - incoming", "NDCG@5 - incoming"}
    row = df[(df.model == "sasrec") & (df.metric == "R@1")].iloc[0]
    assert row.a == pytest.approx(a["rows"][1]["metrics"]["R@1"][0])
    assert row.b == pytest.approx(b["rows"][1]["metrics"]["R@1"][0])
    assert row["diff"] == pytest.approx(row.b - row.a) and row["diff"] > 0
    copy = df[(df.model == "sasrec") & (df.metric == "order_copy_rate")].iloc[0]
    assert copy["diff"] == pytest.approx(0.1)
    text = format_compare(df)
    assert text.splitlines()[0].split() == ["model", "metric", "run-a", "run-b", "diff"]
    assert any(line.split()[:2] == ["sasrec", "R@1"] and line.split()[-1].startswith("+") for line in text.splitlines())
    with pytest.raises(KeyError):
        compare(spark, lake.root, "run-a", "nope")


@pytest.mark.parametrize("args, message", [(["--stage", "sftt"], "--stage takes midtrain, sft, dapo (got sftt)"),
                                           (["--batch", "0"], "eval.batch: Input should be greater than or equal to 1")])
def test_eval_refuses_an_unknown_stage_or_a_bad_budget_before_starting_spark(tmp_path, args, message):
    from typer.testing import CliRunner

    from gr2.cli import app

    res = CliRunner().invoke(app, ["eval", "--lake", str(tmp_path), *args])
    assert res.exit_code == 2 and message in " ".join(res.output.split())


def test_help_text_is_reflowed_by_the_terminal_not_by_the_source_file():
    """A docstring's source line breaks are not shown: `gr2 demo --help` wraps its paragraphs to the
    terminal, and the command list shows each command's first paragraph only."""
    from typer.testing import CliRunner

    from gr2.cli import app

    runner = CliRunner()
    demo = runner.invoke(app, ["demo", "--help"], env={"COLUMNS": "200"})
    assert demo.exit_code == 0
    assert "(pulled from the package registry on first use) with budgets small enough" in demo.output
    top = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert "Evaluate every re-ranker on the same slates" in top.output
    assert "It trains the pretrained base" not in top.output, "the list shows first paragraphs only"


def test_the_reports_index_escapes_what_it_reads_from_the_lake(tmp_path):
    """Run names and nightly error messages come from files anyone with write access to the lake can
    edit: the index shows them as text, never as markup, and cuts a long error before escaping it (an
    entity cut in half would be broken markup)."""
    import json

    from gr2.pipelines.reports import build_index

    lake = tmp_path / "lake"
    run = lake / "models" / "sft" / "sft-<img src=x onerror=alert(1)>"
    run.mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps({"final": {"first": {"loss": 2.0}, "last": {"loss": 1.0, "step": 3}}}))
    nightly = lake / "reports" / "nightly" / "runs"
    nightly.mkdir(parents=True)
    error = "<script>alert(1)</script>" + "&" * 200
    (nightly / "r.json").write_text(json.dumps({
        "date": "2026-12-01", "exit_code": 1, "seconds": 3.0, "finished_at": "2026-12-01T02:00:00",
        "steps": [{"name": "ingest", "status": "failed", "error": error}]}))
    page = build_index(lake).read_text()
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "sft-&lt;img src=x onerror=alert(1)&gt;" in page
    cell = page.split("&lt;/script&gt;")[1].split("<")[0]
    assert cell == "&amp;" * (160 - len("<script>alert(1)</script>")), "cut at 160 characters of text, then escaped"


@pytest.mark.parametrize("valid, shown", [
    (1.0, "100%"), (299 / 300, "99.7%"), (0.25, "25%"), (0.0, "0%"), (1 / 1748, "0.1%"),
])
def test_a_valid_share_never_rounds_to_all_or_nothing(valid, shown):
    """299 valid answers of 300 once read "100% (invalid: incoming order kept)"."""
    from gr2.eval.report import valid_note, valid_percent

    assert valid_percent(valid) == shown
    assert valid_note({"diagnostics": {"valid_rate": valid}}).startswith(shown)

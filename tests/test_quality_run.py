"""`gr2 quality run` without a lake is bad input (exit 2), before Spark starts, and its help explains it. The
command on a real lake (every table checked, a duplicate appended behind the gates' back refused with exit 3
naming the table and the check) runs at the end of tests/test_nightly.py on the lake its nights built: the
nightly quality step calls the same function (contracts.recheck), and a lake of its own would cost minutes."""

from __future__ import annotations

from typer.testing import CliRunner

from gr2.cli import app
from gr2.platform import exits


def _quality_run(root, *args: str):
    res = CliRunner().invoke(app, ["quality", "run", "--lake", str(root), *args])
    return res, " ".join(res.output.split())


def test_quality_run_without_a_lake_is_bad_input_and_help_explains_it(tmp_path):
    res, out = _quality_run(tmp_path / "nope")
    assert res.exit_code == exits.INPUT and "no lake at" in out and "pass --lake DIR" in out, res.output
    assert "Traceback" not in res.output and not (tmp_path / "nope").exists()
    (tmp_path / "empty").mkdir()
    res, out = _quality_run(tmp_path / "empty")
    assert res.exit_code == exits.INPUT and "no published table under" in out, res.output
    res = CliRunner().invoke(app, ["quality", "run", "--help"], env={"COLUMNS": "200"})
    out = " ".join(res.output.split())
    assert res.exit_code == 0 and "with the contract its publish gate and gr2 nightly's quality step apply" in out
    assert "Exit codes: 0 every table passes, 3 a check failed" in out
    res = CliRunner().invoke(app, ["quality", "--help"], env={"COLUMNS": "200"})
    assert "report" in res.output and "run" in res.output

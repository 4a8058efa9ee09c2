"""One exception -> exit code map (gr2.platform.exits) for every gr2 command and for `gr2 nightly`'s
summary: the table, the CLI that applies it (a message for 2 and 3, a traceback for 4) and the nightly
run that records it. Nothing here starts Spark."""

from __future__ import annotations

import importlib
from datetime import date

import pytest
from typer.testing import CliRunner

from gr2.config import ConfigError, load_config
from gr2.platform import exits
from gr2.platform.quality import QualityGateError


class _RayTaskErrorLike(RuntimeError, FileNotFoundError):
    """What Ray raises for a task's FileNotFoundError: a subclass of both its own error and the original."""


def _cases():
    from gr2.etl.io import InputError
    from gr2.etl.jobs import ConservationError
    from gr2.eval.runs import UnknownRunError
    from gr2.pipelines.nightly import InjectedFailure
    from gr2.pipelines.submit import SubmitAuthError, SubmitError
    from gr2.training.bases import PullError

    return [
        (QualityGateError("gold.slates", [], None), exits.GATE),
        (ConfigError("etl.kk: unknown key"), exits.INPUT),
        (InputError("no such file: /data/logs"), exits.INPUT),
        (FileNotFoundError("no sft model under lake/models/sft; run `gr2 train sft` first"), exits.INPUT),
        (_RayTaskErrorLike("no such model folder"), exits.INPUT),
        (ValueError("Invalid isoformat string: '2026-13-01'"), exits.INPUT),
        (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), exits.INPUT),
        (PullError("unknown base 'nope'"), exits.INPUT),
        (SubmitError("cannot reach http://127.0.0.1:8265"), exits.INPUT),
        (SubmitAuthError("the cluster rejected the token"), exits.INPUT),
        (RuntimeError("executor lost"), exits.FAILED),
        (InjectedFailure("GR2_NIGHTLY_FAIL_AT=build"), exits.FAILED),
        (ConservationError("read != accepted + quarantined"), exits.FAILED),
        (UnknownRunError("run(s) nope not in eval.runs"), exits.INPUT),
        (KeyError("a bug"), exits.FAILED),
        (OSError("No space left on device"), exits.FAILED),
        (MemoryError(), exits.FAILED),
    ]


@pytest.mark.parametrize("exc, code", _cases(), ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v))
def test_each_exception_has_its_documented_code(exc, code):
    assert exits.code_of(exc) == code


def test_the_table_names_real_exception_classes_and_every_code_has_a_meaning():
    for name, code in exits.EXCEPTIONS:
        module, _, qualname = name.rpartition(".")
        cls = getattr(importlib.import_module(module), qualname)
        assert isinstance(cls, type) and issubclass(cls, BaseException), name
        assert code in exits.MEANING, name
    codes = [exits.OK, exits.JOB_FAILED, exits.INPUT, exits.GATE, exits.FAILED, exits.STOPPED]
    assert codes == [0, 1, 2, 3, 4, 130] and set(codes) == set(exits.MEANING)


def _gr2(*args: str):
    from gr2.cli import app

    return CliRunner().invoke(app, list(args))


def test_a_missing_model_is_exit_2_with_its_message_not_a_traceback(tmp_path):
    res = _gr2("train", "eval-next", "--lake", str(tmp_path))
    assert res.exit_code == exits.INPUT, res.output
    assert "no midtrain model under" in res.output and "Traceback" not in res.output
    res = _gr2("model", "pull", "no-such-base", "--cache-dir", str(tmp_path / "models"))
    assert res.exit_code == exits.INPUT and "unknown base 'no-such-base'" in res.output
    assert "Traceback" not in res.output
    res = _gr2("serve", "--stage", "sft", "--run", "nope", "--lake", str(tmp_path))  # refused before Ray starts
    assert res.exit_code == exits.INPUT and "no sft run 'nope'" in res.output and "Traceback" not in res.output


def test_a_bad_value_anywhere_in_a_command_is_exit_2(tmp_path):
    res = _gr2("etl", "ingest", "--date", "yesterday", "--lake", str(tmp_path))
    assert res.exit_code == exits.INPUT and "yesterday" in res.output and "Traceback" not in res.output
    res = _gr2("etl", "build", "--lake", str(tmp_path), "--set", "etl.kk=3")
    assert res.exit_code == exits.INPUT and "etl.kk" in res.output
    # a reward name is checked against the registry as the config loads, before DAPO starts anything
    res = _gr2("train", "dapo", "--lake", str(tmp_path), "--set", "train.dapo.reward=conditionl")
    assert res.exit_code == exits.INPUT and "train.dapo.reward: unknown reward 'conditionl'" in res.output
    assert "known: conditional, naive" in res.output and "Traceback" not in res.output


def test_a_gate_is_exit_3_and_anything_else_exit_4_with_the_traceback(tmp_path, monkeypatch):
    from gr2.pipelines import reports
    from gr2.training import bases

    def refuse(lake):
        raise QualityGateError("gold.slates", [], None)

    monkeypatch.setattr(reports, "build_index", refuse)
    res = _gr2("quality", "report", "--lake", str(tmp_path))
    assert res.exit_code == exits.GATE and "quality gate refused gold.slates" in res.output

    def crash(name, cache_dir=None):
        raise RuntimeError("boom [not markup]")

    monkeypatch.setattr(bases, "describe", crash)
    res = _gr2("model", "list")
    assert res.exit_code == exits.FAILED, res.output
    assert "Traceback" in res.output and "RuntimeError: boom [not markup]" in res.output


@pytest.mark.parametrize("raised, code", [(FileNotFoundError("no such landing folder"), exits.INPUT),
                                          (QualityGateError("silver.items", [], None), exits.GATE),
                                          (RuntimeError("executor lost"), exits.FAILED)])
def test_nightly_records_the_same_code_and_runs_no_step_after_the_failure(tmp_path, monkeypatch, raised, code):
    from gr2.pipelines import nightly as nl

    def fail(night):
        raise raised

    monkeypatch.setattr(nl, "PIPELINE", (nl.Step("ingest", (), (), fail), *nl.PIPELINE[1:]))
    cfg = load_config(lake=str(tmp_path))
    s = nl.run_night(None, cfg, date(2026, 1, 2), quiet=True)  # the first step fails before any table is read
    assert s["exit_code"] == code
    assert [r["status"] for r in s["steps"]] == ["failed"] + ["not-run"] * (len(nl.PIPELINE) - 1)
    assert type(raised).__name__ in s["steps"][0]["error"]


def test_gr2_nightly_prints_each_night_and_exits_with_its_code(tmp_path, monkeypatch):
    """The CLI reads run_night's summary through NightRun (gr2/pipelines/run_results.py): its step table,
    --json's dict as it was, and the night's exit code; a backfill stops at the first failed date."""
    import json

    from gr2.cli import pipelines as cli
    from gr2.pipelines import nightly as nl

    def night(spark, cfg, day, force=False):
        failed = day == date(2026, 1, 2)
        return {"date": str(day), "exit_code": exits.FAILED if failed else exits.OK, "seconds": 3.0, "finished_at": "t",
                "lake": str(tmp_path), "report": f"/r/{day}.json",
                "steps": [{"name": "ingest", "status": "failed" if failed else "ok", "seconds": 2.0, "read": 1234,
                           "written": None, "rejected": None, "note": "n", "error": "RuntimeError: x" if failed else None,
                           "details": {}}]}

    monkeypatch.setattr(cli, "start_spark", lambda cfg: None)
    monkeypatch.setattr(nl, "run_night", night)
    res = _gr2("nightly", "--from", "2026-01-01", "--to", "2026-01-03", "--json", "--lake", str(tmp_path))
    assert res.exit_code == exits.FAILED, res.output
    assert "nightly 2026-01-01: exit 0 in 3s" in res.output and "1,234" in res.output and "summary: /r/2026-01-01.json" in res.output
    assert "RuntimeError: x" in res.output and "stopped at 2026-01-02" in res.output and "2026-01-03" not in res.output
    assert json.loads(next(line for line in res.output.splitlines() if line.startswith('{"date": "2026-01-01"')))["steps"][0]["read"] == 1234


@pytest.mark.parametrize("table, command", [
    ("silver.items", "`gr2 etl ingest`"), ("gold.slates", "`gr2 etl build`"),
    ("gold.sid_codebook", "`gr2 tokenizer assign`"), ("gold.item_embeddings", "`gr2 tokenizer embed`"),
    ("gold.traces", "`gr2 traces`"), ("some.new_table", "the stage that writes it"),
])
def test_a_missing_table_names_the_command_that_writes_it(table, command, tmp_path):
    from gr2.platform.keys import missing_table
    from gr2.training.data import read_table

    assert missing_table(table, tmp_path) == f"table {table} does not exist under {tmp_path}; run {command} first"
    if table in ("gold.sid_codebook", "gold.traces"):  # the training stages' reader says the same
        with pytest.raises(FileNotFoundError, match=command.replace("`", "")):
            read_table(tmp_path, table)

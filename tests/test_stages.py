"""The stage registry (gr2/pipelines/stages.py) and its typed results, without Spark or Ray: names, the
tables and models each stage reads and writes, the order, how each result renders, and how gr2 nightly's
steps and gr2 demo's chain sit on the registry."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from gr2.pipelines import demo, nightly, stages
from gr2.pipelines.lm_results import DapoResult, EvalResult, NextItemResult, RerankCheckResult, TracesResult, TrainResult
from gr2.pipelines.results import BuildResult, EmbedResult, IngestResult, NightLine, SidsResult, StageResult, TokenizerResult
from gr2.platform.lake import TABLES

# -- literal summaries, shaped as the job functions return them ----------------------------------------

INGEST = {
    "source": "events", "path": "/data/logs", "date": "2026-01-02",
    "files": {"read": 3, "skipped": 1, "failed": 1},
    "skipped_files": [{"file": "notes.txt", "reason": "not a data file"}],
    "failed_files": [{"file": "broken.gz", "reason": "not gzip"}],
    "counts": {"interactions": {"read": 1234, "accepted": 1100, "quarantined": 40, "duplicates_of_published": 84, "other_dates": 10},
               "items": {"read": 120, "accepted": 118, "quarantined": 2, "duplicates_of_published": 0, "other_dates": 0}},
    "reasons": {"interactions": {"duplicate event": 40}, "items": {"empty ids": 2}},
    "tables": {"bronze.events": {"table": "bronze.events", "rows_written": 1354, "version": 3, "skipped": False},
               "silver.items": {"table": "silver.items", "rows_written": 118, "version": 1, "skipped": False},
               "silver.interactions": {"table": "silver.interactions", "rows_written": 1100, "version": 2, "skipped": False},
               "quarantine": {"table": "quarantine", "rows_written": 0, "version": 5, "skipped": True}},
    "report": "/lake/reports/etl/ingest-20260102.json",
}
BUILD = {
    "k": 10, "protocol": "loo", "policy": "filter", "tables": {}, "users": 150, "cooccurrence_pairs": 900, "oof_folds": 2,
    "examples": {"train": 700, "valid": 140, "test": 139}, "coverage": {"train": 0.61, "valid": 0.55, "test": 0.53},
    "logged_slates": {"accepted": 12, "quarantined": 3}, "unused_events": {"impression": 77},
    "incoming_order": {"test": {"slates": 74, "R@1": 0.3514, "R@3": 0.6, "R@5": 0.75, "NDCG@3": 0.5, "NDCG@5": 0.56}},
    "slates": 512, "report": "/lake/reports/etl/build-20260102.json",
}
EMBED = {"encoder": "all-minilm-l6-v2", "dim": 384, "items": 123, "embedded": 120, "quarantined": 3, "table": {}, "incremental": True}
FIT = {"version": "v-20260102T000000", "encoder": "all-minilm-l6-v2", "items": 120, "model_dir": "/lake/models/tokenizer/v-1",
       "final": {"unique_fraction": 0.9125, "eval_recon_loss": 0.01234, "utilization": [1.0, 0.98765, 0.5]}, "first": {}}
ASSIGN = {"version": "v-20260102T000000", "levels": 3, "codes": 16, "items": 123, "assigned": 120, "without_sid": 3,
          "raw_unique_fraction": 0.9125, "final_unique_fraction": 1.0, "redrawn": 9, "spilled": 2, "extra_level": 1,
          "raw_metrics": {}, "table": {}, "report": "/lake/reports/tokenizer/v-1/index.html"}
TRACES = {"teacher": "statistical-brief", "slates": 1500, "skipped_without_sid": 4, "already_accepted": 100,
          "attempted_slates": 1396, "accepted_slates": 1200, "acceptance_rate": 0.8596, "attempts_total": 3000,
          "attempts_per_accepted": 2.5, "valid_rate": 0.97, "errors": 2, "invalid": 88, "written": None, "sequential_models": None}
MIDTRAIN = {"run": "midtrain-20260102T000000", "base": {"source": "smollm2-135m", "parameters": 134515008, "added": 300},
            "examples": {"item_alignment": 200, "sequential": 400}, "available": {}, "rows": 321, "cut_examples": 0,
            "model_dir": "/lake/models/midtrain/m1/model", "total_steps": 20, "run_dir": "/lake/models/midtrain/m1",
            "metrics_csv": "/lake/models/midtrain/m1/metrics.csv", "frozen_layers": 20,
            "final": {"first": {"step": "1", "loss": "5.4321", "tokens_per_s": "1234.5", "peak_mem_mb": "2048"},
                      "last": {"step": "20", "loss": "2.3456", "tokens_per_s": "2345.6", "peak_mem_mb": "4096.4"}}}
SFT = {"run": "sft-20260102T000000", "base": {"source": "/lake/models/midtrain/m1/model", "parameters": None},
       "examples": {"sft": 900}, "rows": 450, "model_dir": "/lake/models/sft/s1/model", "total_steps": 20,
       "run_dir": "/lake/models/sft/s1", "metrics_csv": "/lake/models/sft/s1/metrics.csv", "frozen_layers": 0, "final": {}}
DAPO = {"run": "dapo-20260102T000000", "base": "/lake/models/sft/s1/model", "slates": 400, "model_dir": "/lake/models/dapo/d1/model",
        "total_steps": 2, "run_dir": "/lake/models/dapo/d1", "metrics_csv": "/lake/models/dapo/d1/metrics.csv",
        "first": {"reward": "0.1234", "valid_rate": "0.5", "order_copy_rate": "0.1", "kept_group_ratio": "0.5"},
        "last": {"reward": "0.3456", "valid_rate": "0.75", "order_copy_rate": "0.125", "kept_group_ratio": "0.875"}}
METRICS4 = ("R@5", "R@10", "NDCG@5", "NDCG@10")
NEXT_ITEM = {"model_dir": "/lake/models/midtrain/m1/model", "split": "test", "users": 200, "catalog": 1234,
             "model": dict(zip(METRICS4, (0.12, 0.2, 0.08, 0.1))), "popularity": dict(zip(METRICS4, (0.05, 0.09, 0.03, 0.04))),
             "intervals": {"model": {k: [0.01, 0.3] for k in METRICS4}, "popularity": {k: [0.0, 0.1] for k in METRICS4}},
             "difference": {k: [0.07, 0.01, 0.12] for k in METRICS4}}
RERANK = {"model_dir": "/lake/models/sft/s1/model", "split": "valid", "slates": 100, "constrained": True,
          "valid_share": 0.93, "json_share": 0.97,
          "incoming": {"R@1": 0.35, "R@3": 0.6, "R@5": 0.75, "NDCG@3": 0.5, "NDCG@5": 0.56},
          "model": {"R@1": 0.4, "R@3": 0.65, "R@5": 0.8, "NDCG@3": 0.55, "NDCG@5": 0.6}, "outputs": []}


def _row(name: str, llm: bool) -> dict:
    return {"model": name, "metrics": {"R@1": [0.4, 0.3, 0.5], "NDCG@5": [0.55, 0.45, 0.65]},
            **({"diagnostics": {"valid_rate": 0.9, "order_copy_rate": 0.25}} if llm else {})}


EVAL = {"run_id": "eval-20260102T000000", "created_at": "2026-01-02T00:00:00+00:00", "dataset": "/lake", "split": "test",
        "n_slates": 40, "k": 10, "rows": [_row("incoming order", False), _row("SFT", True)], "sasrec_source": "trained here, up to 30 s",
        "differences": [{"model": "SFT", "against": "incoming order", "metric": "R@1", "diff": [0.05, 0.01, 0.09]}],
        "report": "/lake/reports/eval/eval-20260102T000000/report.md"}

# (result class, summary, figures its rendered summary shows, figures its headline shows)
SAMPLES = [
    (IngestResult, INGEST, ["ingest events (2026-01-02)", "1,234", "1,100", "quarantined items: 2 x empty ids", "failed file: broken.gz",
                            "silver.interactions: +1,100 rows (version 2)", "ingest-20260102.json"], ["1,100", "42", "1,218"]),
    (BuildResult, BUILD, ["users 150", "slates published 512", "0.3514", "logged slates", "build-20260102.json"], ["150", "512", "K=10"]),
    (EmbedResult, EMBED, ["all-minilm-l6-v2 (384 dims)", "items 123", "embedded 120", "quarantined 3"], ["embedded 120"]),
    (TokenizerResult, FIT, ["v-20260102T000000", "0.9125", "0.0123", "[1.0, 0.988, 0.5]", "/lake/models/tokenizer/v-1"], ["0.9125"]),
    (SidsResult, ASSIGN, ["(3 x 16)", "120 items with a SID", "3 without", "0.9125", "1.0000", "9 re-drawn", "index.html"],
     ["120 items", "0.9125 -> 1.0000"]),
    (TracesResult, TRACES, ["1,500 slates", "accepted 1,200 of 1,396", "(86.0%)", "2.50 per accepted", "97.0%"], ["1,200 of 1,396", "86.0%"]),
    (TrainResult, MIDTRAIN, ["midtrain-20260102T000000", "134,515,008 parameters", "lowest 20 layers", "5.432 -> 2.346", "4,096 MB",
                             "/lake/models/midtrain/m1/model"], ["20 optimizer steps", "5.432 -> 2.346"]),
    (TrainResult, SFT, ["sft-20260102T000000", "450 packed rows", "/lake/models/sft/s1/tensorboard"], ["450 packed rows"]),
    (DapoResult, DAPO, ["2 RL steps on 400 slates", "0.123 -> 0.346", "75.0%", "87.5%", "/lake/models/dapo/d1/metrics.csv"],
     ["0.123 -> 0.346", "75.0%"]),
    (DapoResult, {**DAPO, "paused": True, "steps_done": 1},
     ["2 RL steps on 400 slates", "paused at step 1 of 2 (train.dapo.pause_after)", "the same command"], ["paused at step 1"]),
    (TrainResult, {**SFT, "paused": True, "steps_done": 5}, ["paused at step 5 of 20 (train.sft.pause_after)"], ["paused at step 5"]),
    (EvalResult, EVAL, ["eval-20260102T000000: 40 test slates (K=10)", "0.4000 [0.300, 0.500]", "90% (invalid", "25.0%",
                        "+0.0500 [+0.010, +0.090] *", "report.md"], ["2 re-rankers", "40 test slates"]),
    (NextItemResult, NEXT_ITEM, ["200 users, full catalog of 1,234 items", "0.1200 [0.0100, 0.3000]", "+0.0700"], ["R@5 0.1200"]),
    (RerankCheckResult, RERANK, ["100 valid slates (constrained ranking)", "93.0%", "97.0%", "0.4000", "0.3500"], ["R@1 0.3500 -> 0.4000"]),
]


def _text(result: StageResult) -> str:
    console = Console(record=True, file=io.StringIO(), width=250)
    result.render(console)
    return console.export_text()


# -- the registry -------------------------------------------------------------------------------------


def test_every_stage_has_a_unique_name_a_description_and_a_result_class():
    names = [s.name for s in stages.STAGES]
    assert len(names) == len(set(names)) and set(names) == set(stages.BY_NAME)
    assert {"etl.ingest", "etl.build", "tokenizer.embed", "tokenizer.fit", "tokenizer.assign", "traces", "train.midtrain",
            "train.sft", "train.dapo", "eval"} == set(names)
    for s in stages.STAGES:
        assert s.description and "\n" not in s.description, s.name
        assert issubclass(s.result, StageResult) and callable(s.job), s.name
    with pytest.raises(KeyError, match="no stage 'etl.nope'"):
        stages.get("etl.nope")


@pytest.mark.parametrize("stage", stages.STAGES, ids=lambda s: s.name)
def test_a_stage_reads_and_writes_only_known_tables_and_models(stage):
    known = set(TABLES) | set(stages.MODELS)
    assert set(stage.reads) <= known, set(stage.reads) - known
    assert stage.writes and set(stage.writes) <= known, set(stage.writes) - known
    assert not set(stage.reads) & set(stage.writes), "a table a stage merges into is its output, not an input"


def test_the_registry_order_puts_every_read_after_a_stage_that_writes_it():
    written: set[str] = set()
    for s in stages.STAGES:
        missing = set(s.reads) - written
        assert not missing, f"{s.name} reads {sorted(missing)} before any stage writes it"
        written |= set(s.writes)


def test_run_wraps_the_jobs_dict_in_the_stages_result(monkeypatch):
    from gr2.config import load_config
    from gr2.etl import jobs

    seen = {}

    def ingest(spark, cfg, day, steps):
        seen.update(spark=spark, day=day)
        return INGEST

    monkeypatch.setattr(jobs, "ingest", ingest)
    cfg = load_config()
    result = stages.run("etl.ingest", cfg, "a spark session", day="2026-01-02")
    assert isinstance(result, IngestResult) and result.details is INGEST
    assert seen == {"spark": "a spark session", "day": "2026-01-02"}
    with pytest.raises(RuntimeError, match="runs on Spark"):
        stages.run("etl.ingest", cfg)


# -- the results --------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls, summary, shown, headline", SAMPLES, ids=lambda v: v.__name__ if isinstance(v, type) else None)
def test_each_result_renders_a_sample_with_its_figures(cls, summary, shown, headline):
    result = cls.of(summary)
    assert result.details is summary
    text = " ".join(_text(result).split())  # rich wraps long lines; the figures are what counts
    for figure in shown:
        assert figure in text, (figure, text)
    line = result.headline()
    assert "\n" not in line
    for figure in headline:
        assert figure in line, (figure, line)
    night = result.night()
    assert isinstance(night, NightLine) and night.note


def test_every_registered_result_class_has_a_sample_above():
    missing = {s.result for s in stages.STAGES} - {cls for cls, *_ in SAMPLES}
    assert not missing, f"add a literal summary of {sorted(c.__name__ for c in missing)} to SAMPLES"


def test_typed_fields_and_nightly_lines_read_the_summary():
    ingest = IngestResult.of(INGEST)
    assert (ingest.read, ingest.accepted, ingest.rejected, ingest.written) == (1354, 1100, 42, 1218)
    assert ingest.night() == NightLine(1354, 1218, 42, "1,100 events of 2026-01-02; 10 events of other dates left for "
                                                       "their night; 84 already published (not written again)")
    assert BuildResult.of(BUILD).night() == NightLine(979, 662, 3, "150 users, 512 slates")
    assert EmbedResult.of(EMBED).night() == NightLine(123, 120, 3, "120 new items embedded (all-minilm-l6-v2)")
    assert SidsResult.of(ASSIGN).night() == NightLine(123, 120, 3, "120 SIDs, unique 1.0000")
    assert TokenizerResult.of(FIT).version == "v-20260102T000000"
    train = TrainResult.of(MIDTRAIN)
    assert (train.run, train.model_dir, train.first_loss, train.last_loss) == (
        "midtrain-20260102T000000", "/lake/models/midtrain/m1/model", 5.4321, 2.3456)
    assert TrainResult.of(SFT).last_loss is None
    assert EvalResult.of(EVAL).models == ("incoming order", "SFT")


def test_results_without_figures_say_so_instead_of_failing():
    empty = DapoResult.of({**DAPO, "first": {}, "last": {}})
    assert empty.headline() == "" and empty.last_reward is None  # the demo prints nothing for it
    assert _text(empty).splitlines() == ["  model: /lake/models/dapo/d1/model", "  metrics: /lake/models/dapo/d1/metrics.csv"]
    none = TracesResult.of({**TRACES, "accepted_slates": 0, "acceptance_rate": 0.0, "attempts_per_accepted": None})
    assert "nothing accepted; 3,000 attempts" in _text(none)


# -- the pipelines on the registry --------------------------------------------------------------------


def test_nightly_steps_run_registered_stages_and_watch_a_subset_of_their_tables():
    order = [s.name for s in stages.STAGES]
    ran = [name for step in nightly.PIPELINE for name in step.stages]
    assert ran == ["etl.ingest", "etl.build", "tokenizer.embed", "tokenizer.fit", "tokenizer.assign"]
    assert ran == sorted(ran, key=order.index)
    for step in nightly.PIPELINE:
        if not step.stages:  # quality and publish: nightly's own steps
            assert step.name in ("quality", "publish")
            continue
        reads = {t for name in step.stages for t in stages.get(name).reads}
        writes = {t for name in step.stages for t in stages.get(name).writes}
        assert set(step.inputs) <= reads and set(step.outputs) <= writes, step.name


def test_the_demo_runs_every_registered_stage_in_registry_order():
    ran = [name for _, names, _ in demo.DEMO for name in names]
    assert ran == [s.name for s in stages.STAGES]
    assert all(show in ("render", "headline", None) for _, _, show in demo.DEMO)

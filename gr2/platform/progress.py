"""Console progress for long work: a live line per step with its elapsed time."""

from __future__ import annotations

import os
import time
from contextlib import contextmanager

from rich.console import Console


def _console() -> Console:
    """A console on stderr. Off a terminal (nightly logs, CI, Ray Jobs, nohup) rich would wrap every table
    at 80 columns and cut its labels ("incomi…"); logs are read in wide viewers, so they get 160 unless
    COLUMNS says otherwise."""
    c = Console(stderr=True)
    if not c.is_terminal and "COLUMNS" not in os.environ:
        c = Console(stderr=True, width=160)
    return c


console = _console()


class Steps:
    """`with steps.step("name") as live:` shows a spinner while the step runs and its time when it ends;
    `live.update("3/10 done")` changes the text next to the spinner (a no-op when quiet)."""

    def __init__(self, quiet: bool = False, title: str | None = None):
        self.quiet = quiet
        self.timings: dict[str, float] = {}
        if title and not quiet:
            console.rule(title)

    @contextmanager
    def step(self, name: str):
        with spark_job_description(name):
            yield from self._step(name)

    def _step(self, name: str):
        start = time.perf_counter()
        if self.quiet:
            yield _Silent()
            self.timings[name] = time.perf_counter() - start
            return
        with console.status(f"[bold]{name}[/] ...") as status:
            try:
                yield _Live(status, name, start)
            except BaseException:
                console.print(f"[red]x[/] {name} failed after {time.perf_counter() - start:.1f}s")
                raise
        elapsed = time.perf_counter() - start
        self.timings[name] = elapsed
        console.print(f"[green]v[/] {name} [dim]({elapsed:.1f}s)[/]")


@contextmanager
def spark_job_description(name: str):
    """The Spark jobs a step starts carry its name, so the Spark UI (and its REST API, which
    benchmarks read) groups them under gr2's step instead of a call site deep in gr2 or Delta."""
    import sys

    sc = sys.modules["pyspark"].SparkContext._active_spark_context if "pyspark" in sys.modules else None
    if sc is None:
        yield
        return
    before = sc.getLocalProperty("spark.job.description")
    sc.setJobDescription(name)
    try:
        yield
    finally:
        sc.setLocalProperty("spark.job.description", before)  # None clears it


class _Silent:
    def update(self, text: str) -> None:
        pass


class _Live:
    def __init__(self, status, name: str, start: float):
        self.status, self.name, self.start = status, name, start

    def update(self, text: str) -> None:
        self.status.update(f"[bold]{self.name}[/] {text} [dim]({time.perf_counter() - self.start:.0f}s)[/]")


def verbose() -> bool:
    """`--verbose` (or GR2_VERBOSE=1) lets third-party logs, warnings and progress bars through."""
    return os.environ.get("GR2_VERBOSE", "") not in ("", "0")


def quiet_by_default() -> None:
    """Process-wide quiet defaults for a gr2 command, unless verbose. They are environment variables and
    warning filters set before the libraries start, so Spark's Python workers and Ray's workers, which
    inherit the environment, are quiet too: no "Loading weights" bars from executors, no DeepSpeed
    "Setting accelerator to CPU" from every process on a machine without GPUs, no Ray/torch
    UserWarnings, and Spark's JVM starts with gr2's log4j2 file (no start-up banner; see platform/spark.py)."""
    if verbose():
        return
    import glob
    import warnings

    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if not glob.glob("/dev/nvidia[0-9]*"):  # a GPU host keeps DeepSpeed's own detection
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    os.environ.setdefault("PYTHONWARNINGS", "ignore::UserWarning,ignore::DeprecationWarning,ignore::FutureWarning")
    for category in (UserWarning, DeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category)


@contextmanager
def quiet_third_party():
    """Silence transformers' and huggingface_hub's logs and progress bars ("Loading weights", "Writing
    model shards") and Python warnings for the block, unless verbose: gr2's own progress lines say what
    happens."""
    if verbose():
        yield
        return
    import logging
    import warnings

    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    # The GGUF de-quantizer draws its own tqdm bar, and accelerate imports DeepSpeed, which announces
    # "Setting accelerator to CPU" as a warning.
    tqdm_env = os.environ.get("TQDM_DISABLE")
    os.environ["TQDM_DISABLE"] = "1"
    ds_logger = logging.getLogger("DeepSpeed")
    ds_level = ds_logger.level
    ds_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()
        if tqdm_env is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = tqdm_env
        ds_logger.setLevel(ds_level)

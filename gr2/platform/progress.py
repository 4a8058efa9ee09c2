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


class _Silent:
    def update(self, text: str) -> None:
        pass


class _Live:
    def __init__(self, status, name: str, start: float):
        self.status, self.name, self.start = status, name, start

    def update(self, text: str) -> None:
        self.status.update(f"[bold]{self.name}[/] {text} [dim]({time.perf_counter() - self.start:.0f}s)[/]")

"""Typed records of the runs the reports index lists beside the stages: `gr2 nightly`'s runs and the
Great Expectations validations (every publish gate and re-check).

Both are read back from JSON files other code writes (nightly.py its summaries under reports/nightly/,
GE its validation results under <lake>/_quality), so, as the stages' results in results.py, each is read
in one `of()` here: a renamed key is fixed here, not in the index (reports.py) or the console printer
(`gr2 nightly`). The files themselves stay as they are written.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Self

from rich.console import Console
from rich.table import Table


@dataclass
class StepResult:
    """One step of a night: how it ended, its figures (None: not applicable) and its details. nightly.py
    fills it in as the step runs (so it is mutable) and writes it with `asdict`; `of` reads it back."""

    name: str
    status: str = "pending"  # ok | up-to-date | failed | not-run
    seconds: float = 0.0
    read: int | None = None
    written: int | None = None
    rejected: int | None = None
    note: str = ""
    error: str | None = None
    details: dict = field(default_factory=dict)

    @classmethod
    def of(cls, d: dict) -> Self:
        """A step as a summary keeps it; a key it lacks (summaries written by older versions) takes its default."""
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})

    def message(self) -> str:
        """The step's error, else its note: what the step table shows."""
        return self.error or self.note


@dataclass(frozen=True)
class NightRun:
    """One `gr2 nightly` run of a date, as `run_night` returns it and writes it (reports/nightly/<date>.json
    and runs/): `details` is that summary dict, unchanged."""

    details: dict = field(repr=False, compare=False)
    date: str
    exit_code: int
    seconds: float
    finished_at: str
    steps: tuple[StepResult, ...]
    report: str | None = None  # the summary's path; only in the dict run_night returns, not in the file
    href: str = ""  # where the reports index links it (reports/-relative), set by the reader that found it

    @classmethod
    def of(cls, s: dict, href: str = "") -> Self:
        return cls(s, date=str(s["date"]), exit_code=s["exit_code"], seconds=s.get("seconds", 0),
                   finished_at=s.get("finished_at", ""), steps=tuple(StepResult.of(r) for r in s.get("steps", [])),
                   report=s.get("report"), href=href)

    def ran(self) -> list[str]:
        """The steps that ran and succeeded, in order (each name once, its last status counting)."""
        status = {r.name: r.status for r in self.steps}
        return [name for name, st in status.items() if st == "ok"]

    def failure(self) -> str:
        """The first failed step's error ("" when none failed)."""
        bad = next((r for r in self.steps if r.status == "failed"), None)
        return (bad.error if bad else None) or ""

    def render(self, console: Console) -> None:
        """The step table `gr2 nightly` prints after each date."""
        t = Table(title=f"nightly {self.date}: exit {self.exit_code} in {self.seconds:.0f}s", title_justify="left")
        for col in ("step", "status", "s", "read", "written", "rejected", "note"):
            t.add_column(col, justify="right" if col in ("s", "read", "written", "rejected") else "left")
        colors = {"ok": "green", "up-to-date": "dim", "failed": "red", "not-run": "dim"}
        fmt = lambda v: "" if v is None else f"{v:,}"  # noqa: E731
        for r in self.steps:
            t.add_row(r.name, f"[{colors.get(r.status, 'white')}]{r.status}[/]", f"{r.seconds:.0f}" if r.seconds else "",
                      fmt(r.read), fmt(r.written), fmt(r.rejected), r.message())
        console.print(t)
        console.print(f"  summary: {self.report}")


@dataclass(frozen=True)
class Validation:
    """One Great Expectations validation result (a gate or a re-check of one table), as GE stores it under
    <lake>/_quality/gx/uncommitted/validations/<suite>/<run>/<time>/<id>.json."""

    suite: str
    time: str  # ISO, UTC; "" when GE recorded none
    success: bool
    passed: int | None  # expectations met
    checks: int | None  # expectations evaluated
    href: str  # its Data Docs page, relative to reports/

    @classmethod
    def of(cls, d: dict, suite: str, href: str) -> Self:
        """`suite`: the suite named by the file's folder, for results that do not name theirs."""
        stats = d.get("statistics", {})
        return cls(suite=d.get("suite_name") or suite, time=(d.get("meta") or {}).get("validation_time") or "",
                   success=bool(d.get("success")), passed=stats.get("successful_expectations"),
                   checks=stats.get("evaluated_expectations"), href=href)

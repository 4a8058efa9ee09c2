"""What a stage hands back: a typed result per kind of stage, wrapped around the job's summary dict.

The job functions (gr2.etl.jobs.ingest, gr2.tokenizer.jobs.assign, ...) return plain dicts: they are
written to reports as JSON, printed by `gr2 nightly --json` and indexed by many tests. A result keeps that
dict as `details`, unchanged, and lifts the figures the CLI, `gr2 demo` and `gr2 nightly` read into typed
fields, so a renamed key fails in one `of()` here instead of in three printers. Every result can

  * `render(console)`: the summary its own command prints (the tables and lines `gr2 etl ingest` etc.
    always printed);
  * `headline()`: one line, as `gr2 demo` prints stages it does not show in full ("" when there is
    nothing to say);
  * `night()`: its row in `gr2 nightly`'s step table (read / written / rejected / note).

This module holds the base and the data stages (ETL, tokenizer); gr2/pipelines/lm_results.py the LM
stages and evaluations. gr2/pipelines/stages.py maps each registered stage to its result class.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Self

from rich.console import Console
from rich.table import Table


def fmt(v) -> str:
    """A table cell: integers with thousands separators, anything else as it is."""
    return f"{v:,}" if isinstance(v, int) else str(v)


@dataclass(frozen=True)
class NightLine:
    """A stage's row in gr2 nightly's summary table (None: not applicable, an empty cell)."""

    read: int | None = None
    written: int | None = None
    rejected: int | None = None
    note: str = ""


@dataclass(frozen=True)
class StageResult:
    """Base of every typed result. `details` is the job's summary dict as the job returned it (what
    --json and the reports carry); the subclasses' fields are read from it once, by `of`."""

    details: dict = field(repr=False, compare=False)

    @classmethod
    def of(cls, summary: dict) -> Self:
        raise NotImplementedError

    def headline(self) -> str:
        raise NotImplementedError

    def render(self, console: Console) -> None:
        console.print(self.headline())

    def night(self) -> NightLine:
        return NightLine(note=self.headline())


# -- ETL -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IngestResult(StageResult):
    source: str
    date: str  # YYYY-MM-DD, or "all" without --date
    read: int  # event and item records read
    accepted: int  # events accepted
    rejected: int  # event and item records quarantined
    written: int  # rows written to silver
    other_dates: int
    already_published: int
    report: str | None

    @classmethod
    def of(cls, s: dict) -> Self:
        c, items = s["counts"]["interactions"], s["counts"].get("items", {})
        return cls(s, source=s["source"], date=s["date"], read=c["read"] + items.get("read", 0), accepted=c["accepted"],
                   rejected=c["quarantined"] + items.get("quarantined", 0),
                   written=sum(t["rows_written"] for k, t in s["tables"].items() if k.startswith("silver.")),
                   other_dates=c["other_dates"], already_published=c.get("duplicates_of_published", 0), report=s.get("report"))

    def headline(self) -> str:
        return (f"ingest {self.source} ({self.date}): {self.accepted:,} events accepted, {self.rejected:,} records "
                f"quarantined, {self.written:,} rows written to silver")

    def night(self) -> NightLine:
        other = f"; {self.other_dates:,} events of other dates left for their night" if self.other_dates else ""
        other += f"; {self.already_published:,} already published (not written again)" if self.already_published else ""
        return NightLine(self.read, self.written, self.rejected, f"{self.accepted:,} events of {self.date}{other}")

    def render(self, console: Console) -> None:
        s = self.details
        t = Table(title=f"ingest {s['source']} ({s['date']})", title_justify="left")
        for col in ("records", "read", "accepted", "quarantined", "already published", "other dates"):
            t.add_column(col, justify="right" if col != "records" else "left")
        for kind, c in s["counts"].items():
            t.add_row(kind, *[fmt(c[k]) for k in ("read", "accepted", "quarantined", "duplicates_of_published", "other_dates")])
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
        self._render_files(console)
        for name, r in s["tables"].items():
            state = "unchanged" if r["skipped"] else f"+{r['rows_written']:,} rows"
            console.print(f"  {name}: {state} (version {r['version']})")
        console.print(f"  report: {self.report}")

    def _render_files(self, console: Console) -> None:
        for item in self.details.get("failed_files") or []:
            console.print(f"  [red]failed file:[/] {item['file']} ({item['reason']}); quarantined as a file record, "
                          "the other files were ingested")
        skipped = self.details.get("skipped_files") or []
        for item in skipped[:20]:  # a landing folder can hold thousands: the report lists them all
            console.print(f"  skipped file: {item['file']} ({item['reason']})")
        if len(skipped) > 20:
            console.print(f"  ... and {len(skipped) - 20:,} more skipped files (all in the report)")


@dataclass(frozen=True)
class BuildResult(StageResult):
    users: int
    slates: int
    examples: dict  # per split
    k: int
    protocol: str
    policy: str
    rejected: int  # logged slates quarantined
    report: str | None

    @classmethod
    def of(cls, s: dict) -> Self:
        return cls(s, users=s["users"], slates=s["slates"], examples=s["examples"], k=s["k"], protocol=s["protocol"],
                   policy=s["policy"], rejected=s.get("logged_slates", {}).get("quarantined", 0), report=s.get("report"))

    def headline(self) -> str:
        return (f"build: {self.users:,} users, {self.slates:,} slates published "
                f"(K={self.k}, split {self.protocol}, policy {self.policy})")

    def night(self) -> NightLine:
        return NightLine(sum(self.examples.values()), self.slates + self.users, self.rejected,
                         f"{self.users:,} users, {self.slates:,} slates")

    def render(self, console: Console) -> None:
        s = self.details
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
            t.add_row(split, *[fmt(row[m]) if m == "slates" else f"{row[m]:.4f}" for m in metrics])
        console.print(t)
        console.print(f"  report: {self.report}")


# -- tokenizer -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmbedResult(StageResult):
    encoder: str
    dim: int
    items: int
    embedded: int
    quarantined: int

    @classmethod
    def of(cls, s: dict) -> Self:
        return cls(s, encoder=s["encoder"], dim=s["dim"], items=s["items"], embedded=s["embedded"], quarantined=s["quarantined"])

    def headline(self) -> str:
        return (f"encoder {self.encoder} ({self.dim} dims): items {self.items:,} = embedded {self.embedded:,} "
                f"+ quarantined {self.quarantined:,}")

    def night(self) -> NightLine:
        # nightly embeds only the items without a vector (only_new), so every embedded item is a new one
        return NightLine(self.items, self.embedded, self.quarantined, f"{self.embedded:,} new items embedded ({self.encoder})")


@dataclass(frozen=True)
class TokenizerResult(StageResult):
    """`gr2 tokenizer fit`: a new tokenizer version (the RQ-VAE and its codebooks)."""

    version: str
    encoder: str
    items: int
    model_dir: str
    unique_fraction: float  # of the raw codes, before de-collision
    recon_loss: float
    utilization: tuple[float, ...]  # per level

    @classmethod
    def of(cls, s: dict) -> Self:
        f = s["final"]
        return cls(s, version=s["version"], encoder=s["encoder"], items=s["items"], model_dir=s["model_dir"],
                   unique_fraction=f["unique_fraction"], recon_loss=f["eval_recon_loss"], utilization=tuple(f["utilization"]))

    def headline(self) -> str:
        return (f"tokenizer {self.version} on {self.items:,} items ({self.encoder}): raw uniqueness "
                f"{self.unique_fraction:.4f}, recon loss {self.recon_loss:.4f}, "
                f"utilization per level {[round(u, 3) for u in self.utilization]}")

    def render(self, console: Console) -> None:
        console.print(self.headline())
        console.print(f"  model: {self.model_dir}")

    def night(self) -> NightLine:
        return NightLine(read=self.items, note=f"fitted tokenizer {self.version}")


@dataclass(frozen=True)
class SidsResult(StageResult):
    """`gr2 tokenizer assign`: a SID for every item under one tokenizer version, in gold.sid_codebook."""

    version: str
    levels: int
    codes: int
    items: int
    assigned: int
    without_sid: int
    raw_unique: float
    final_unique: float
    redrawn: int
    extra_level: int
    report: str | None

    @classmethod
    def of(cls, s: dict) -> Self:
        return cls(s, version=s["version"], levels=s["levels"], codes=s["codes"], items=s["items"], assigned=s["assigned"],
                   without_sid=s["without_sid"], raw_unique=s["raw_unique_fraction"], final_unique=s["final_unique_fraction"],
                   redrawn=s["redrawn"], extra_level=s["extra_level"], report=s.get("report"))

    def headline(self) -> str:
        return (f"tokenizer {self.version}: {self.assigned:,} items; uniqueness raw {self.raw_unique:.4f} -> "
                f"{self.final_unique:.4f} after the random last level")

    def night(self) -> NightLine:
        return NightLine(self.items, self.assigned, self.without_sid, f"{self.assigned:,} SIDs, unique {self.final_unique:.4f}")

    def render(self, console: Console) -> None:
        console.print(f"tokenizer {self.version} ({self.levels} x {self.codes}): {self.assigned:,} items with a SID, "
                      f"{self.without_sid:,} without (see quarantine)")
        console.print(f"  uniqueness: raw codes {self.raw_unique:.4f} -> after the random last level "
                      f"{self.final_unique:.4f} ({self.redrawn:,} re-drawn, {self.extra_level:,} given an extra level)")
        console.print(f"  report: {self.report}")

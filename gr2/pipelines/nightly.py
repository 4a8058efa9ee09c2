"""`gr2 nightly --date D`: the scheduled ETL, as steps that are skipped when already done.

    ingest -> build -> embed (new items) -> sids (fit once, then assign new items) -> quality -> publish

Idempotence and resumption come from one record, `<lake>/_nightly/lineage.json`: for every step that
succeeded it keeps the fingerprint of its inputs (the Delta versions of the tables it reads; for ingest,
the source files' names, sizes and mtimes plus the date) and the Delta versions it left its outputs at.
A step is skipped when its inputs have the recorded fingerprint and its outputs are still at the recorded
versions: nothing it would read has changed and nobody has rewritten what it wrote. So

  * rerunning a date that already ran changes no table (every step is up to date), even after later
    dates have run: the derived steps see the same input versions the later run left;
  * after a failure the next run starts at the failed step, because the steps before it are up to date;
  * a late file in the landing folder changes ingest's fingerprint, and everything downstream reruns.

`--force` runs every step anyway (each write is still idempotent: MERGE skips known keys).

The quality step re-validates the newest commit of every table in PUBLISHED (what the next run would
publish anyway, since writers merge into the newest commit). The publish step then points the lake
manifest (`<lake>/_manifest.json`, which `Lake.read` follows) at those validated versions, normally a
no-op because ingest and build already moved it, and writes the same versions to
`<lake>/_nightly/published.json` (atomically) with the date and tokenizer: a consumer that pins them
with Delta time travel never sees a half-finished night, and they equal the manifest's at that moment.
Every run writes its summary to `<lake>/reports/nightly/<date>.json`.

Exit codes a scheduler can act on (gr2.platform.exits, the map every gr2 command uses): 0 done (or already
up to date); 2 bad input or configuration (retrying will not help: fix the data or the config); 3 a quality
gate refused a table (the previous version stays published; read the Data Docs); 4 a step failed otherwise
(retry: the run resumes at it).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import traceback
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

from gr2.config import Config
from gr2.pipelines import stages
from gr2.pipelines.run_results import StepResult
from gr2.platform import exits
from gr2.platform.contracts import RecheckFailed, recheck
from gr2.platform.files import write_json_atomic
from gr2.platform.lake import Lake
from gr2.platform.progress import Steps, console

STEPS = ("ingest", "build", "embed", "sids", "quality", "publish")
# Tables validated again by the quality step and pinned by publish.
PUBLISHED = ("silver.interactions", "silver.items", "gold.sequences", "gold.slates", "gold.cooccurrence",
             "gold.item_embeddings", "gold.sid_codebook")
FAIL_ENV = "GR2_NIGHTLY_FAIL_AT"  # fault injection for tests and drills: the named step raises before it runs


class InjectedFailure(RuntimeError):
    pass


@dataclass
class Step:
    """One step of the night. `inputs` and `outputs` are the tables its lineage record watches: a subset
    of what its registered `stages` read and write (tests/test_stages.py checks that), chosen for
    idempotence (e.g. quarantine, which several stages add to, counts as ingest's output only) and kept
    as they are, so the records earlier nights wrote stay valid."""

    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    run: Callable[["Night"], StepResult]
    stages: tuple[str, ...] = ()  # the stages of gr2/pipelines/stages.py it runs; none for quality and publish


def for_date(cfg: Config, day: date) -> Config:
    """`etl.path` with `{date}` replaced by the date (YYYY-MM-DD): a landing folder partitioned by day
    (`/data/logs/dt={date}`) is read one partition a night instead of whole."""
    path = cfg.etl.path
    if not path or "{date}" not in path:
        return cfg
    return cfg.model_copy(update={"etl": cfg.etl.model_copy(update={"path": path.replace("{date}", day.isoformat())})})


class Night:
    """One date's run: the config, Spark, the lake and the lineage record."""

    def __init__(self, spark, cfg: Config, day: date):
        self.spark, self.cfg, self.day = spark, for_date(cfg, day), day
        self.lake = Lake(cfg.lake_path)
        self.root = cfg.lake_path / "_nightly"
        self.lineage_path = self.root / "lineage.json"
        self.lineage: dict = json.loads(self.lineage_path.read_text()) if self.lineage_path.exists() else {}

    def versions(self, tables) -> dict[str, int | None]:
        return {t: (self.lake.version(self.spark, t) if self.lake.exists(self.spark, t) else None) for t in tables}

    def source_fingerprint(self) -> str:
        """The date plus every source file's path, size and mtime: a late or changed file changes it."""
        e = self.cfg.etl
        h = hashlib.sha256(f"{e.source}|{self.day}".encode())
        if e.source == "synthetic":
            h.update(json.dumps(e.synthetic.model_dump(), sort_keys=True).encode())
        elif e.path:
            p = Path(e.path).expanduser()
            files = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
            for q in files:
                st = q.stat()
                h.update(f"{q}|{st.st_size}|{st.st_mtime_ns}".encode())
        return h.hexdigest()

    def fingerprint(self, step: Step) -> dict:
        fp: dict = {"inputs": self.versions(step.inputs)}
        if step.name == "ingest":
            fp["source"] = self.source_fingerprint()
        if step.name == "sids":
            fp["tokenizer"] = _latest_tokenizer(self.cfg)
        return fp

    def key(self, step: Step) -> str:
        # ingest is per date (each date reads other events); the derived steps are per lake.
        return f"ingest:{self.day}" if step.name == "ingest" else step.name

    def up_to_date(self, step: Step) -> bool:
        rec = self.lineage.get(self.key(step))
        return bool(rec) and rec["fingerprint"] == self.fingerprint(step) and rec["outputs"] == self.versions(step.outputs)

    def record(self, step: Step, fingerprint: dict) -> None:
        self.lineage[self.key(step)] = {"fingerprint": fingerprint, "outputs": self.versions(step.outputs),
                                        "date": str(self.day), "at": _now()}
        write_json_atomic(self.lineage_path, self.lineage)


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _latest_tokenizer(cfg: Config) -> str | None:
    from gr2.platform.run_store import RunStore

    return RunStore(cfg.lake_path, "tokenizer").latest()


# -- the steps -------------------------------------------------------------------------------------


def _line(name: str, result, note_prefix: str = "") -> StepResult:
    """A registered stage's result as the step's row: its figures, and its summary dict as `details`."""
    line = result.night()
    return StepResult(name, read=line.read, written=line.written, rejected=line.rejected, note=note_prefix + line.note,
                      details=result.details)


def _ingest(n: Night) -> StepResult:
    return _line("ingest", stages.run("etl.ingest", n.cfg, n.spark, day=n.day))


def _build(n: Night) -> StepResult:
    return _line("build", stages.run("etl.build", n.cfg, n.spark))


def _embed(n: Night) -> StepResult:
    return _line("embed", stages.run("tokenizer.embed", n.cfg, n.spark, only_new=True))


def _sids(n: Night) -> StepResult:
    # The tokenizer is fitted once, on the first night; later nights assign SIDs to new items with it.
    note = ""
    if _latest_tokenizer(n.cfg) is None:
        fitted = stages.run("tokenizer.fit", n.cfg, n.spark)
        note = f"first night: fitted tokenizer {fitted.version}; "
    return _line("sids", stages.run("tokenizer.assign", n.cfg, n.spark), note)


def _quality(n: Night) -> StepResult:
    from gr2.pipelines.reports import build_index

    # The very checks each table's publish gate applies, on its newest commit (`recheck` says why), the
    # function `gr2 quality run` calls too; `_publish` pins the versions that passed here.
    results = recheck(n.spark, n.lake, PUBLISHED, n.cfg.etl.k, run="nightly")
    index = build_index(n.cfg.lake_path)
    failed = [r for r in results if r.failures]
    if failed:
        raise RecheckFailed(failed, "the previous versions stay published (the publish step did not run)", index)
    return StepResult("quality", read=sum(r.rows for r in results), written=0, rejected=0,
                      note=f"{len(PUBLISHED)} tables pass; reports at {index}", details={"index": str(index)})


def _publish(n: Night) -> StepResult:
    versions = n.versions(PUBLISHED)
    n.lake.pin({t: v for t, v in versions.items() if v is not None}, run=f"nightly {n.day}")
    snapshot = {"date": str(n.day), "published_at": _now(), "tokenizer": _latest_tokenizer(n.cfg), "versions": versions}
    write_json_atomic(n.root / "published.json", snapshot)
    return StepResult("publish", written=len(versions), details=snapshot,
                      note="validated table versions pinned in _manifest.json and _nightly/published.json")


PIPELINE = (
    Step("ingest", (), ("bronze.events", "silver.interactions", "silver.items", "quarantine"), _ingest, ("etl.ingest",)),
    Step("build", ("silver.interactions", "silver.items"), ("gold.sequences", "gold.slates", "gold.cooccurrence"), _build,
         ("etl.build",)),
    Step("embed", ("silver.items",), ("gold.item_embeddings",), _embed, ("tokenizer.embed",)),
    Step("sids", ("gold.item_embeddings",), ("gold.sid_codebook",), _sids, ("tokenizer.fit", "tokenizer.assign")),
    Step("quality", PUBLISHED, (), _quality),
    Step("publish", PUBLISHED, (), _publish),
)


def run_night(spark, cfg: Config, day: date, force: bool = False, quiet: bool = False) -> dict:
    """Run (or resume) one date. Returns the summary; its `exit_code` says how it ended."""
    night = Night(spark, cfg, day)
    steps = Steps(quiet=quiet, title=f"gr2 nightly {day}")
    results: list[StepResult] = []
    started, exit_code = time.perf_counter(), exits.OK
    fail_at = os.environ.get(FAIL_ENV)
    for i, step in enumerate(PIPELINE):
        if exit_code != exits.OK:
            results.append(StepResult(step.name, status="not-run"))
            continue
        if not force and night.up_to_date(step):
            results.append(StepResult(step.name, status="up-to-date", note="inputs and outputs unchanged since its last run"))
            if not quiet:
                console.print(f"[dim]-[/] {step.name}: up to date")
            continue
        t0 = time.perf_counter()
        fingerprint = night.fingerprint(step)  # taken before the step: what it read
        try:
            with steps.step(f"{i + 1}/{len(PIPELINE)} {step.name}"):
                if fail_at == step.name:
                    raise InjectedFailure(f"{FAIL_ENV}={fail_at}: injected failure before {step.name}")
                res = step.run(night)
            res.status = "ok"
            # The input versions are the ones read before the step; the rest (source files, tokenizer
            # version) is taken after it, since the first night's sids step fits the tokenizer it names.
            fingerprint = {**night.fingerprint(step), "inputs": fingerprint["inputs"]}
            night.record(step, fingerprint)
        except Exception as exc:  # noqa: BLE001 - every failure is reported and mapped to an exit code
            exit_code = exits.code_of(exc)
            res = StepResult(step.name, status="failed", error=f"{type(exc).__name__}: {exc}",
                             details={"traceback": traceback.format_exc(limit=8)})
        res.seconds = round(time.perf_counter() - t0, 1)
        results.append(res)
    summary = {
        "date": str(day), "exit_code": exit_code, "seconds": round(time.perf_counter() - started, 1),
        "finished_at": _now(), "lake": str(cfg.lake_path),
        "steps": [asdict(r) for r in results],
    }
    folder = cfg.lake_path / "reports" / "nightly"
    out = folder / f"{day}.json"  # the date's latest run; every run is also kept under runs/
    write_json_atomic(folder / "runs" / f"{day}_{summary['finished_at'].replace(':', '')}.json", summary)
    write_json_atomic(out, summary)
    summary["report"] = str(out)
    return summary


def dates(day: str | None, start: str | None, end: str | None) -> list[date]:
    """--date D, or --from A --to B (inclusive, in order); the default is yesterday (UTC)."""
    if day and (start or end):
        raise ValueError("give --date, or --from and --to for a backfill, not both")
    if start or end:
        if not (start and end):
            raise ValueError("a backfill needs both --from and --to")
        a, b = date.fromisoformat(start), date.fromisoformat(end)
        if b < a:
            raise ValueError(f"--to {b} is before --from {a}")
        return [a + timedelta(days=i) for i in range((b - a).days + 1)]
    if day:
        return [date.fromisoformat(day)]
    return [datetime.now(timezone.utc).date() - timedelta(days=1)]

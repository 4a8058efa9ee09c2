"""`<lake>/_manifest.json`: the Delta version of every table as the last completed run left it.

A Delta commit is atomic per table, but a run publishes several tables one after another (ingest:
bronze, silver.items, silver.interactions, quarantine). Readers that go through the manifest (every
`Lake.read` / `Lake.read_pandas`) read each table at the version it names with Delta time travel, and a
run moves the manifest once, after its last table is committed. So a reader sees all of a run's tables
or none of them, even when the run is killed between two commits.

Layout (`format` 1):

    {"format": 1, "updated_at": "...",
     "last_run": {"id": "ingest-20250601T120000Z-1a2b3c", "name": "ingest", "at": "...", "tables": [...]},
     "tables": {"bronze.events": {"version": 7, "run": "ingest-...", "at": "..."}, ...}}

A table entry with `"version": null` was created by a run that has not completed: readers treat the
table as absent. A table the manifest does not name at all (a lake written before the manifest existed,
a table nobody has published since) is read at its latest commit.

The file is replaced atomically (`write_json_atomic`), and every read-modify-write holds an exclusive
lock on `<lake>/_manifest.lock`, so two processes publishing different tables (a training run's eval
results during a nightly build) never drop each other's entries.
"""

from __future__ import annotations

import fcntl
import json
import re
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from gr2.platform.files import write_json_atomic

NAME = "_manifest.json"
FORMAT = 1
_COMMIT = re.compile(r"^(\d{20})\.json$")


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Run:
    """One publication: its tables move in the manifest together when it ends."""

    name: str
    id: str = ""
    started_at: str = field(default_factory=_now)
    pending: dict[str, int] = field(default_factory=dict)  # table -> version this run committed

    def __post_init__(self):
        if not self.id:
            stamp = self.started_at.replace("-", "").replace(":", "")
            self.id = f"{self.name.replace(' ', '-')}-{stamp}-{uuid.uuid4().hex[:6]}"


def path(root: Path) -> Path:
    return Path(root) / NAME


def load(root: Path) -> dict | None:
    """The manifest, or None for a lake that has none yet (every table is then read at its latest)."""
    p = path(root)
    if not p.exists():
        return None
    return json.loads(p.read_text())


def latest_version(table_path: Path) -> int | None:
    """The newest commit in a Delta log, from the file names alone (no Spark, no log replay).

    Log clean-up removes old commit files only up to a checkpoint, never the newest one.
    """
    log = Path(table_path) / "_delta_log"
    if not log.is_dir():
        return None
    versions = [int(m.group(1)) for f in log.iterdir() if (m := _COMMIT.match(f.name))]
    return max(versions) if versions else None


@contextmanager
def _locked(root: Path):
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "_manifest.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield load(root) or {"format": FORMAT, "tables": {}}
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def commit(root: Path, run: Run, versions: dict[str, int | None]) -> None:
    """Point the manifest at `versions` (table -> Delta version) in one atomic replace.

    Entries already at their version keep the run that moved them there, and a run that changed no
    version (the same input again, MERGE skipped everything) does not rewrite the file at all.
    """
    at = _now()
    with _locked(root) as m:
        versions = {t: v for t, v in versions.items() if m["tables"].get(t, {}).get("version", -1) != v}
        if not versions:
            return
        tables = {**m["tables"], **{t: {"version": v, "run": run.id, "at": at} for t, v in versions.items()}}
        last = {"id": run.id, "name": run.name, "at": at, "tables": sorted(versions)}
        write_json_atomic(path(root), {"format": FORMAT, "updated_at": at, "last_run": last,
                                       "tables": dict(sorted(tables.items()))})


def hold(root: Path, run: Run, table: str, table_path: Path) -> None:
    """Before a run's first commit to a table the manifest does not name, name it at its current version.

    Without this, a table of a lake older than the manifest (or one this run creates) would be read at
    its latest commit: the killed run's half-published state. A table that does not exist yet is held
    at `null`, absent for readers until a run that publishes it completes. `run: null` marks a version
    adopted from before the manifest; `held_by` is the run that added the entry.
    """
    with _locked(root) as m:
        if table in m["tables"]:
            return
        m["tables"][table] = {"version": latest_version(table_path), "run": None, "at": _now(), "held_by": run.id}
        m["updated_at"] = _now()
        write_json_atomic(path(root), m)

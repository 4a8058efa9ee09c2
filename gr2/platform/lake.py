"""Lake tables and write-audit-publish.

Every table lives at `<lake>/<layer>/<name>` as a Delta table. A write goes to a staging Delta table
first (`<lake>/_staging/<table>/<run>`), is validated there by a Great Expectations gate, and only then
reaches the published table in one Delta commit (overwrite, or MERGE for incremental tables). A gate
failure or a killed process therefore leaves the published version exactly as it was; stale staging
folders are removed by the next run. A table's first publish writes nothing twice: the staged table,
once it passes, is renamed into place (a Delta table's log names its files relative to its folder).

A run that publishes several tables does so inside `with lake.publication(name):`; the lake manifest
(`gr2/platform/manifest.py`) moves to all of its versions at once when the block ends without an error.
Readers (`read`, `read_pandas`) follow the manifest, so they never see half of a run. Writers commit
against each table's latest version (`version`), so the run after a killed one completes it: MERGE
finds the killed run's rows already there, an overwrite replaces them.
"""

from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

from gr2.platform import manifest, quality
from gr2.platform.keys import missing_table

TABLES = {
    "bronze.events": "bronze/events",
    "silver.interactions": "silver/interactions",
    "silver.items": "silver/items",
    "quarantine": "quarantine",
    "gold.sequences": "gold/sequences",
    "gold.slates": "gold/slates",
    "gold.cooccurrence": "gold/cooccurrence",
    "gold.item_embeddings": "gold/item_embeddings",
    "gold.sid_codebook": "gold/sid_codebook",
    "gold.sid_centroids": "gold/sid_centroids",
    "gold.traces": "gold/traces",
    "eval.runs": "eval/runs",
}


# The publications open in this thread, innermost last. Keyed by lake root rather than held on one
# `Lake` object, because jobs build their own `Lake(cfg.lake_path)` for the same lake.
_OPEN: ContextVar[tuple[tuple[Path, manifest.Run], ...]] = ContextVar("gr2_publications", default=())


_COMMIT_FILE = re.compile(r"\d{20}\.json")


def log_version(table_path: Path) -> int | None:
    """A Delta table's newest version from its log's file names (every commit is a JSON file named by its
    version, kept until log clean-up, which never removes the newest): a listing instead of a Spark job
    reading the history. None where the log has no commit file."""
    log = Path(table_path) / "_delta_log"
    versions = [int(p.name[:20]) for p in log.glob("*.json") if _COMMIT_FILE.fullmatch(p.name)]
    return max(versions) if versions else None


def first_commit_rows(table_path: Path) -> int | None:
    """The rows a table's only commit (version 0) added, from the record counts Delta writes beside each
    file it adds; None where the table has later commits or a file was added without statistics."""
    import json

    log = Path(table_path) / "_delta_log"
    if log_version(table_path) != 0:
        return None
    rows = 0
    for line in (log / f"{0:020d}.json").read_text().splitlines():
        action = json.loads(line) if line.strip() else {}
        if "add" in action:
            stats = action["add"].get("stats")
            if not stats or "numRecords" not in (parsed := json.loads(stats)):
                return None
            rows += int(parsed["numRecords"])
    return rows


@dataclass
class PublishResult:
    table: str
    rows_written: int
    version: int | None
    skipped: bool = False
    # seconds in the quality gate: Great Expectations' checkpoint, and its Data Docs update outside a
    # publication (a publication renders its gates' pages at its end)
    gate_s: float = 0.0


class Lake:
    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().resolve()

    def path(self, table: str) -> Path:
        if table not in TABLES:
            raise KeyError(f"unknown table {table!r}; known: {', '.join(TABLES)}")
        return self.root / TABLES[table]

    def exists(self, spark, table: str) -> bool:
        from delta.tables import DeltaTable

        p = self.path(table)
        return p.exists() and DeltaTable.isDeltaTable(spark, str(p))

    def read(self, spark, table: str, latest: bool = False, version: int | None = None):
        """The table as readers may rely on it: the version the manifest names (see `read_version`).

        `latest=True` reads the newest commit instead, which may belong to a run that is still going
        or was killed; writers use it for what they merge into, audits to check what the next run
        will publish. `version` reads that commit (an audit that names the version it checked).
        """
        if not self.exists(spark, table):
            raise FileNotFoundError(self._missing(table))
        reader = spark.read.format("delta")
        v = version if version is not None or latest else self.read_version(table)
        if v is not None:
            reader = reader.option("versionAsOf", v)
        return reader.load(str(self.path(table)))

    def read_pandas(self, table: str, columns: list[str] | None = None, filters=None, latest: bool = False):
        """`read` without Spark (deltalake), for the driver-side readers of training and evaluation."""
        from deltalake import DeltaTable

        if manifest.latest_version(self.path(table)) is None:
            raise FileNotFoundError(self._missing(table))
        v = None if latest else self.read_version(table)
        dt = DeltaTable(str(self.path(table))) if v is None else DeltaTable(str(self.path(table)), version=v)
        return dt.to_pandas(columns=columns, filters=filters)

    def read_version(self, table: str) -> int | None:
        """The version `read` reads: this thread's open publication's own commit to the table (a run
        reads what it wrote), else the manifest's; None (= latest) for a table the manifest does not
        name. Raises FileNotFoundError for a table whose creating run has not completed."""
        run = self._open_run()
        if run is not None and table in run.pending:
            return run.pending[table]
        entry = (manifest.load(self.root) or {"tables": {}})["tables"].get(table)
        if entry is None:
            return None
        if entry["version"] is None:
            raise FileNotFoundError(f"table {table} under {self.root} has no completed publication yet "
                                    f"(run {entry.get('held_by')} created it and did not finish); rerun that stage")
        return entry["version"]

    def version(self, spark, table: str) -> int | None:
        """The newest commit (what writers merge into and nightly lineage compares), not necessarily the
        one readers see: that is `read_version`."""
        from delta.tables import DeltaTable

        if not self.exists(spark, table):
            return None
        newest = log_version(self.path(table))
        if newest is not None:
            return newest
        return DeltaTable.forPath(spark, str(self.path(table))).history(1).collect()[0]["version"]

    def _missing(self, table: str) -> str:
        return missing_table(table, self.root)

    # -- publications ----------------------------------------------------------------------------------

    @contextmanager
    def publication(self, name: str):
        """Publish several tables as one run: the manifest moves to all of their versions when the block
        ends, and not at all if it raises or the process dies. A block inside another one for the same
        lake joins it (the outer block decides). The gates' Data Docs pages are rendered once, at the end."""
        outer = self._open_run()
        if outer is not None:
            yield outer
            return
        run = manifest.Run(name)
        token = _OPEN.set(_OPEN.get() + ((self.root, run),))
        try:
            with quality.docs_once(self.root):  # the run's gates render their Data Docs pages together
                yield run
        finally:
            _OPEN.reset(token)
        manifest.commit(self.root, run, run.pending)  # reached only when the block did not raise

    def pin(self, versions: dict[str, int], run: str) -> None:
        """Point the manifest at versions someone validated (the nightly's quality step), as one run."""
        manifest.commit(self.root, manifest.Run(run), versions)

    def _open_run(self) -> manifest.Run | None:
        return next((r for root, r in reversed(_OPEN.get()) if root == self.root), None)

    def _before_commit(self, table: str) -> None:
        run = self._open_run()
        if run is not None:
            manifest.hold(self.root, run, table, self.path(table))

    def _published(self, table: str, version: int | None) -> None:
        run = self._open_run()
        if run is not None:
            run.pending[table] = version
        else:  # a publish on its own is a run of one table
            manifest.commit(self.root, manifest.Run(f"publish {table}"), {table: version})

    # -- staging ---------------------------------------------------------------------------------------

    def _stage(self, spark, df, table: str, partition_by: list[str] | None = None):
        stage = self.root / "_staging" / table / uuid.uuid4().hex[:12]
        writer = df.write.format("delta").mode("overwrite")
        if partition_by:  # laid out as the table will be, so a first publish can move it into place
            writer = writer.partitionBy(*partition_by)
        writer.save(str(stage))
        return stage, spark.read.format("delta").load(str(stage))

    def _move_into_place(self, spark, stage: Path, table: str) -> bool:
        """A table's first publish: rename the passed staged table to the table's folder (one atomic
        rename: staging is under the lake's root, on the same file system) instead of writing its rows
        a second time. False where the
        table exists, or a folder with files in it took its place meanwhile: the caller writes then."""
        target = self.path(table)
        if self.exists(spark, table):
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(stage, target)  # replaces an empty folder; refuses a non-empty one
        except OSError:
            return False
        return True

    def _gate(self, staged, table: str, checks: list, audit=None) -> float:
        """Run the table's quality gate on the staged rows (raises when it refuses them); its seconds."""
        t0 = time.perf_counter()
        quality.gate(audit(staged) if audit else staged, table, checks, self.root)
        return round(time.perf_counter() - t0, 2)

    @staticmethod
    def _written_rows(spark, table_path: Path) -> int:
        """The rows of a one-commit table (a staged table, or one a first publish moved into place): the
        staging write's own count in its Delta log (no job scanning the rows again), or a count where
        the log has no statistics."""
        n = first_commit_rows(table_path)
        return n if n is not None else spark.read.format("delta").load(str(table_path)).count()

    def clean_staging(self, table: str | None = None) -> None:
        base = self.root / "_staging"
        target = base / table if table else base
        shutil.rmtree(target, ignore_errors=True)

    # -- publishing ------------------------------------------------------------------------------------

    def publish_overwrite(
        self, spark, df, table: str, checks: list, partition_by: list[str] | None = None, audit=None,
        replace_where: str | None = None,
    ) -> PublishResult:
        """Replace the table's content with `df` once it passes its gate.

        `audit` (DataFrame -> DataFrame) adds derived columns the checks read (sizes, flags) to the
        staged rows; they are validated but not published. With `replace_where` only the rows matching
        that predicate are replaced (one encoder's or one tokenizer version's partition); the other rows
        are those of the latest commit, like a MERGE's.
        """
        self.clean_staging(table)
        stage, staged = self._stage(spark, df, table, partition_by)
        try:
            gate_s = self._gate(staged, table, checks, audit)
            self._before_commit(table)
            if self._move_into_place(spark, stage, table):
                n = self._written_rows(spark, self.path(table))
            else:
                writer = staged.write.format("delta").mode("overwrite")
                if replace_where and self.exists(spark, table):
                    writer = writer.option("replaceWhere", replace_where)
                else:
                    writer = writer.option("overwriteSchema", "true")
                if partition_by:
                    writer = writer.partitionBy(*partition_by)
                writer.save(str(self.path(table)))
                n = self._written_rows(spark, stage)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        res = PublishResult(table, n, self.version(spark, table), gate_s=gate_s)
        self._published(table, res.version)
        return res

    def publish_merge(
        self,
        spark,
        df,
        table: str,
        keys: list[str],
        checks: list,
        update_columns: list[str] | None = None,
        audit=None,
    ) -> PublishResult:
        """Insert rows whose key is new (and update `update_columns` of existing keys when they differ).

        The gate sees the staged batch (through `audit`, as `publish_overwrite`'s, when given). Running
        the same batch again writes nothing: the table's content and version stay as they are. Keys are matched against the latest commit, so rows a
        killed run already committed count as present.
        """
        res = self._merge(spark, df, table, keys, checks, update_columns, audit)
        self._published(table, res.version)  # a skipped merge too: it may follow a killed run's commit
        return res

    def _merge(self, spark, df, table: str, keys: list[str], checks: list, update_columns: list[str] | None,
               audit=None) -> PublishResult:
        from delta.tables import DeltaTable

        self.clean_staging(table)
        stage, staged = self._stage(spark, df, table)
        try:
            gate_s = self._gate(staged, table, checks, audit)
            self._before_commit(table)
            path = str(self.path(table))
            if self._move_into_place(spark, stage, table):
                return PublishResult(table, self._written_rows(spark, self.path(table)), self.version(spark, table), gate_s=gate_s)
            if not self.exists(spark, table):  # a folder with other files in it: write over them
                staged.write.format("delta").mode("overwrite").save(path)
                return PublishResult(table, self._written_rows(spark, stage), self.version(spark, table), gate_s=gate_s)
            current = spark.read.format("delta").load(path)
            new = staged.join(current.select(*keys), on=keys, how="left_anti")
            changed = None
            if update_columns:
                cols = keys + update_columns
                changed = staged.select(*cols).exceptAll(current.select(*cols)).join(new.select(*keys), keys, "left_anti")
            n_new = new.count()
            n_changed = changed.count() if changed is not None else 0
            if n_new == 0 and n_changed == 0:
                return PublishResult(table, 0, self.version(spark, table), skipped=True, gate_s=gate_s)
            cond = " AND ".join(f"t.`{k}` <=> s.`{k}`" for k in keys)
            merge = DeltaTable.forPath(spark, path).alias("t").merge(staged.alias("s"), cond)
            if update_columns:
                differs = " OR ".join(f"NOT (t.`{c}` <=> s.`{c}`)" for c in update_columns)
                merge = merge.whenMatchedUpdate(condition=differs, set={c: f"s.`{c}`" for c in update_columns})
            merge.whenNotMatchedInsertAll().execute()
            return PublishResult(table, n_new + n_changed, self.version(spark, table), gate_s=gate_s)
        finally:
            shutil.rmtree(stage, ignore_errors=True)

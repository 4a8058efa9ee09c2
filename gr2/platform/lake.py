"""Lake tables and write-audit-publish.

Every table lives at `<lake>/<layer>/<name>` as a Delta table. A write goes to a staging Delta table
first (`<lake>/_staging/<table>/<run>`), is validated there by a Great Expectations gate, and only then
reaches the published table in one Delta commit (overwrite, or MERGE for incremental tables). A gate
failure or a killed process therefore leaves the published version exactly as it was; stale staging
folders are removed by the next run.
"""

from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from gr2.platform import quality

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


@dataclass
class PublishResult:
    table: str
    rows_written: int
    version: int | None
    skipped: bool = False


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

    def read(self, spark, table: str):
        if not self.exists(spark, table):
            raise FileNotFoundError(
                f"table {table} does not exist under {self.root}; run the stage that writes it first "
                f"(bronze/silver/quarantine: `gr2 etl ingest`, gold: `gr2 etl build`)"
            )
        return spark.read.format("delta").load(str(self.path(table)))

    def version(self, spark, table: str) -> int | None:
        from delta.tables import DeltaTable

        if not self.exists(spark, table):
            return None
        return DeltaTable.forPath(spark, str(self.path(table))).history(1).collect()[0]["version"]

    # -- staging ---------------------------------------------------------------------------------------

    def _stage(self, spark, df, table: str):
        stage = self.root / "_staging" / table / uuid.uuid4().hex[:12]
        df.write.format("delta").mode("overwrite").save(str(stage))
        return stage, spark.read.format("delta").load(str(stage))

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
        that predicate are replaced (one encoder's or one tokenizer version's partition).
        """
        self.clean_staging(table)
        stage, staged = self._stage(spark, df, table)
        try:
            quality.gate(audit(staged) if audit else staged, table, checks, self.root)
            writer = staged.write.format("delta").mode("overwrite")
            if replace_where and self.exists(spark, table):
                writer = writer.option("replaceWhere", replace_where)
            else:
                writer = writer.option("overwriteSchema", "true")
            if partition_by:
                writer = writer.partitionBy(*partition_by)
            writer.save(str(self.path(table)))
            n = spark.read.format("delta").load(str(stage)).count()
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        return PublishResult(table, n, self.version(spark, table))

    def publish_merge(
        self,
        spark,
        df,
        table: str,
        keys: list[str],
        checks: list,
        update_columns: list[str] | None = None,
    ) -> PublishResult:
        """Insert rows whose key is new (and update `update_columns` of existing keys when they differ).

        The gate sees the staged batch. Running the same batch again writes nothing: the table's
        content and version stay as they are.
        """
        from delta.tables import DeltaTable

        self.clean_staging(table)
        stage, staged = self._stage(spark, df, table)
        try:
            quality.gate(staged, table, checks, self.root)
            path = str(self.path(table))
            if not self.exists(spark, table):
                staged.write.format("delta").mode("overwrite").save(path)
                return PublishResult(table, staged.count(), self.version(spark, table))
            current = spark.read.format("delta").load(path)
            new = staged.join(current.select(*keys), on=keys, how="left_anti")
            changed = None
            if update_columns:
                cols = keys + update_columns
                changed = staged.select(*cols).exceptAll(current.select(*cols)).join(new.select(*keys), keys, "left_anti")
            n_new = new.count()
            n_changed = changed.count() if changed is not None else 0
            if n_new == 0 and n_changed == 0:
                return PublishResult(table, 0, self.version(spark, table), skipped=True)
            cond = " AND ".join(f"t.`{k}` <=> s.`{k}`" for k in keys)
            merge = DeltaTable.forPath(spark, path).alias("t").merge(staged.alias("s"), cond)
            if update_columns:
                differs = " OR ".join(f"NOT (t.`{c}` <=> s.`{c}`)" for c in update_columns)
                merge = merge.whenMatchedUpdate(condition=differs, set={c: f"s.`{c}`" for c in update_columns})
            merge.whenNotMatchedInsertAll().execute()
            return PublishResult(table, n_new + n_changed, self.version(spark, table))
        finally:
            shutil.rmtree(stage, ignore_errors=True)

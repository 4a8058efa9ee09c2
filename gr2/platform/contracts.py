"""What each published table must hold, whoever writes it and whenever it is checked.

The publish gate of the job that writes a table and the re-validation of published tables (`recheck`:
gr2 nightly's quality step and `gr2 quality run`) both read this one registry, so they cannot drift
apart. A contract is the table's invariants (keys, nulls, value sets) plus, where the checks read derived
columns (slate sizes, code ranges), the audit that adds them. What only one write can know - the exact
row count it staged, the time window of a day's events - the writing job adds to the contract's checks
itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from gr2.platform import quality as qc
from gr2.platform.keys import BRONZE_KEY, EVAL_RUN_KEY, INTERACTION_KEY, SPLITS, TRACE_KEY
from gr2.platform.lake import TABLES, Lake


@dataclass(frozen=True)
class Contract:
    checks: list
    audit: Callable[[DataFrame], DataFrame] | None = None

    def frame(self, df: DataFrame) -> DataFrame:
        """The frame the checks read: the table's rows, audited where the contract needs it."""
        return self.audit(df) if self.audit else df


def _slate_audit(df: DataFrame) -> DataFrame:
    return df.select(
        "slate_id", "split", "target", "user_id",
        F.size("candidates").alias("n_candidates"),
        F.size(F.array_distinct("candidates")).alias("n_distinct_candidates"),
        F.array_contains("labels", 1).alias("has_positive"),
        # a logged slate with several clicks may have no single target; one that has it must show it
        (F.col("target").isNull() | F.array_contains("candidates", F.col("target"))).alias("target_in_candidates"),
    )


def _codebook_audit(df: DataFrame) -> DataFrame:
    return df.select("tokenizer_version", "item_id", "sid", "codes",
                     F.array_min("codes").alias("min_code"), F.array_max("codes").alias("max_code"))


def _trace_audit(df: DataFrame) -> DataFrame:
    # rejection sampling accepts only valid answers: an accepted invalid one would teach SFT a broken format
    bad = F.coalesce(F.col("accepted") & ~F.coalesce(F.col("valid"), F.lit(False)), F.lit(False))
    return df.select(*TRACE_KEY, "prompt", bad.alias("accepted_invalid"))


def contract(table: str, k: int | None = None) -> Contract:
    """The contract of ``table``; ``k`` (candidates per slate) is needed for gold.slates."""
    if table == "gold.slates":
        if k is None:
            raise ValueError("the gold.slates contract needs k, the candidates per slate (etl.k)")
        return Contract([
            qc.not_null("slate_id"), qc.unique("slate_id"), qc.not_null("user_id"), qc.in_set("split", SPLITS),
            qc.in_set("n_candidates", [k]), qc.in_set("n_distinct_candidates", [k]),
            qc.in_set("has_positive", [True]), qc.in_set("target_in_candidates", [True]),
        ], _slate_audit)
    if table == "gold.sid_codebook":
        return Contract([
            qc.compound_unique(["tokenizer_version", "item_id"]), qc.compound_unique(["tokenizer_version", "sid"]),
            qc.not_null("sid"), qc.not_null("codes"), qc.between("min_code", 0, None),
        ], _codebook_audit)
    if table == "gold.traces":
        return Contract([
            *[qc.not_null(c) for c in TRACE_KEY], qc.compound_unique(TRACE_KEY), qc.not_null("prompt"),
            qc.in_set("accepted_invalid", [False]),
        ], _trace_audit)
    checks = _plain_checks()
    if table not in checks:
        raise KeyError(f"no contract for table {table!r}; known: {sorted(CONTRACTED)}")
    return Contract(checks[table])


def _plain_checks() -> dict[str, list]:
    """The contracts that are checks alone (no audit, no parameter)."""
    return {
        "bronze.events": [qc.not_null("file"), qc.not_null("line"), qc.compound_unique(BRONZE_KEY)],
        "silver.items": [qc.not_null("item_id"), qc.unique("item_id")],
        "silver.interactions": [*[qc.not_null(c) for c in INTERACTION_KEY], qc.compound_unique(INTERACTION_KEY)],
        "quarantine": [qc.not_null("reason"), qc.not_null("raw")],
        "gold.sequences": [qc.not_null("user_id"), qc.unique("user_id")],
        "gold.cooccurrence": [qc.compound_unique(["item_id", "neighbor_id"])],
        "gold.item_embeddings": [qc.compound_unique(["encoder", "item_id"]), qc.not_null("vector")],
        "gold.sid_centroids": [qc.compound_unique(["tokenizer_version", "level", "code"])],
        "eval.runs": [*[qc.not_null(c) for c in EVAL_RUN_KEY], qc.compound_unique(EVAL_RUN_KEY), qc.not_null("value")],
    }


# Every table with a contract, in the lake's order (gr2.platform.lake.TABLES): what `gr2 quality run` checks.
CONTRACTED = tuple(t for t in TABLES if t in (*_plain_checks(), "gold.slates", "gold.sid_codebook", "gold.traces"))
# A re-checked table must hold at least one row, but for these: a clean ingest publishes an empty quarantine.
MAY_BE_EMPTY = ("quarantine",)


# -- re-validation of published tables ----------------------------------------------------------------


@dataclass
class Recheck:
    """One table checked again: the commit read, its rows, how many checks ran and which failed."""

    table: str
    version: int | None = None  # the commit checked, the table's newest; None: the table is not built
    rows: int = 0
    checks: int = 0
    failures: list[qc.Failure] = field(default_factory=list)
    readers: str = ""  # set when readers (the lake manifest) see another version than the one checked

    @property
    def built(self) -> bool:
        return self.version is not None


class RecheckFailed(qc.QualityGateError):
    """Published tables that no longer meet their contracts. A QualityGateError (exit 3, gr2.platform.exits)
    whose message names every failed table, each check it failed and how many rows broke it."""

    def __init__(self, failed: list[Recheck], outcome: str, docs: Path | None):
        super().__init__(failed[0].table, failed[0].failures, docs)
        self.failed = failed
        lines = []
        for r in failed:
            lines.append(f"quality gate refused {r.table} (version {r.version}): {len(r.failures)} check(s) failed")
            lines += [f"  - {f}" for f in r.failures]
        lines.append(f"  {outcome}")
        if docs:
            lines.append(f"  details: {docs}")
        self.args = ("\n".join(lines),)


def recheck(spark, lake: Lake, tables: Iterable[str], k: int, run: str, skip_missing: bool = False) -> list[Recheck]:
    """Validate the newest commit of each table with its contract, plus at least one row (but for
    MAY_BE_EMPTY), as the Great Expectations checkpoint `<table>.<run>`: its results land beside the publish
    gates' (Data Docs, `gr2 quality report`). gr2 nightly's quality step and `gr2 quality run` both call this.

    The newest commit, not the manifest's: a commit made outside a completed run (a hand fix, a killed
    run's table) is what writers merge into and the next publish exposes. A table that is not built raises
    FileNotFoundError, or with `skip_missing` comes back with no version. `k` is etl.k (gold.slates).
    """
    out = []
    for table in tables:
        version = lake.version(spark, table)
        if version is None and skip_missing:
            out.append(Recheck(table))
            continue
        df = lake.read(spark, table, version=version)  # a table that is not built: FileNotFoundError saying what to run
        c = contract(table, k)
        checks = c.checks if table in MAY_BE_EMPTY else [qc.min_rows(1), *c.checks]
        n_rows = _delta_rows(lake.path(table), version)
        failures = qc.gate(c.frame(df), f"{table}.{run}", checks, lake.root, raise_on_failure=False)
        out.append(Recheck(table, version, df.count() if n_rows is None else n_rows, len(checks), failures,
                           _readers(lake, table, version)))
    return out


def _readers(lake: Lake, table: str, checked: int) -> str:
    try:
        seen = lake.read_version(table)
    except FileNotFoundError:  # the run that created the table has not completed
        return "readers see no version yet (its first run did not complete)"
    return "" if seen is None or seen == checked else f"readers still see version {seen}"


def _delta_rows(path: Path, version: int) -> int | None:
    """Rows of the table at `version` from the Delta log's file statistics: no data scan."""
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
        from deltalake import DeltaTable

        actions = pa.table(DeltaTable(str(path), version=version).get_add_actions(flatten=True))
        col = actions.column("num_records")
        return None if col.null_count else int(pc.sum(col).as_py() or 0)
    except Exception:  # a store deltalake cannot open, or a log without stats
        return None

"""What each published table must hold, whoever writes it and whenever it is checked.

The publish gate of the job that writes a table and the nightly re-validation both read this one
registry, so the two cannot drift apart. A contract is the table's invariants (keys, nulls, value
sets) plus, where the checks read derived columns (slate sizes, code ranges), the audit that adds
them. What only one write can know - the exact row count it staged, the time window of a day's
events - the writing job adds to the contract's checks itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from gr2.platform import quality as qc
from gr2.platform.keys import BRONZE_KEY, INTERACTION_KEY, SPLITS


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
    checks = {
        "bronze.events": [qc.not_null("file"), qc.not_null("line"), qc.compound_unique(BRONZE_KEY)],
        "silver.items": [qc.not_null("item_id"), qc.unique("item_id")],
        "silver.interactions": [*[qc.not_null(c) for c in INTERACTION_KEY], qc.compound_unique(INTERACTION_KEY)],
        "quarantine": [qc.not_null("reason"), qc.not_null("raw")],
        "gold.sequences": [qc.not_null("user_id"), qc.unique("user_id")],
        "gold.cooccurrence": [qc.compound_unique(["item_id", "neighbor_id"])],
        "gold.item_embeddings": [qc.compound_unique(["encoder", "item_id"]), qc.not_null("vector")],
        "gold.sid_centroids": [qc.compound_unique(["tokenizer_version", "level", "code"])],
    }
    if table not in checks:
        raise KeyError(f"no contract for table {table!r}; known: {sorted([*checks, 'gold.slates', 'gold.sid_codebook'])}")
    return Contract(checks[table])

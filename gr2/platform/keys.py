"""Names the table contracts and the jobs that write the tables must agree on: natural keys and splits.

They sit here, at the bottom, because the stages that write the tables (the ETL, the tokenizer's
quarantine) and the platform's publish checks must agree on them, and the platform may not import a
stage: one definition, imported by all.
"""

import hashlib

# silver.interactions: one deduplicated event.
INTERACTION_KEY = ["user_id", "item_id", "ts", "event"]
# bronze.events: one raw record, located by where it came from.
BRONZE_KEY = ["source", "kind", "file", "line"]
# quarantine: one rejected record. raw is part of the key: one line can hold several rejected records (P5
# tokens), and build-stage rejects (logged slates, embeddings) share file and line 0, told apart only by raw.
QUARANTINE_KEY = ["source", "kind", "file", "line", "raw", "reason"]
# gold.traces: one teacher attempt at one slate.
TRACE_KEY = ["slate_id", "teacher", "attempt"]
# eval.runs: one metric of one re-ranker in one evaluation run.
EVAL_RUN_KEY = ["run_id", "model", "metric"]
# The splits gold.slates and gold.sequences label rows with.
SPLITS = ("train", "valid", "test")
# The command that writes each table: what an error about a missing table tells the user to run.
BUILT_BY = {
    "bronze.events": "gr2 etl ingest", "silver.interactions": "gr2 etl ingest", "silver.items": "gr2 etl ingest",
    "quarantine": "gr2 etl ingest", "gold.sequences": "gr2 etl build", "gold.slates": "gr2 etl build",
    "gold.cooccurrence": "gr2 etl build", "gold.item_embeddings": "gr2 tokenizer embed",
    "gold.sid_codebook": "gr2 tokenizer assign", "gold.sid_centroids": "gr2 tokenizer fit",
    "gold.traces": "gr2 traces", "eval.runs": "gr2 eval",
}


def missing_table(table: str, root) -> str:
    """The message for a table that is not there: where it was looked for and the command that writes it."""
    how = f"`{BUILT_BY[table]}`" if table in BUILT_BY else "the stage that writes it"
    return f"table {table} does not exist under {root}; run {how} first"


def fold(user_id: str) -> int:
    """A user's fold (0 or 1), a hash of the id: the statistical teacher and the sequential evidence models
    for fold f are fitted on the other fold's users, so no training slate is scored by a model that saw it."""
    return hashlib.sha256(str(user_id).encode()).digest()[0] % 2

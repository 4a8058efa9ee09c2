"""Names the table contracts and the jobs that write the tables must agree on: natural keys and splits.

They sit here, at the bottom, because both the publish gates (gr2.platform.contracts) and the ETL
(gr2.etl) read them, and the platform may not import a stage: one definition, imported by both.
"""

# silver.interactions: one deduplicated event.
INTERACTION_KEY = ["user_id", "item_id", "ts", "event"]
# bronze.events: one raw record, located by where it came from.
BRONZE_KEY = ["source", "kind", "file", "line"]
# The splits gold.slates and gold.sequences label rows with.
SPLITS = ("train", "valid", "test")

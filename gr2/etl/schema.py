"""The shapes every source reader produces and every table holds.

Readers turn raw files into *parsed* rows: every raw record becomes exactly one parsed row that keeps
its locator (file, line) and raw text, plus either parsed fields or a `reason` it could not be parsed.
Counting is therefore exact: rows read = rows accepted + rows quarantined (+ rows outside the date).
"""

from pyspark.sql import types as T

# One parsed interaction record (before validation). `reason` is null when the record parsed.
PARSED_INTERACTION = T.StructType(
    [
        T.StructField("source", T.StringType(), False),
        T.StructField("file", T.StringType(), False),
        T.StructField("line", T.LongType(), False),
        T.StructField("raw", T.StringType(), True),
        T.StructField("user_id", T.StringType(), True),
        T.StructField("item_id", T.StringType(), True),
        T.StructField("ts", T.TimestampType(), True),
        T.StructField("event", T.StringType(), True),
        T.StructField("slate_id", T.StringType(), True),
        T.StructField("position", T.IntegerType(), True),
        T.StructField("reason", T.StringType(), True),
    ]
)

# One parsed item metadata record (before validation).
PARSED_ITEM = T.StructType(
    [
        T.StructField("source", T.StringType(), False),
        T.StructField("file", T.StringType(), False),
        T.StructField("line", T.LongType(), False),
        T.StructField("raw", T.StringType(), True),
        T.StructField("item_id", T.StringType(), True),
        T.StructField("title", T.StringType(), True),
        T.StructField("categories", T.ArrayType(T.StringType()), True),
        T.StructField("brand", T.StringType(), True),
        T.StructField("reason", T.StringType(), True),
    ]
)

INTERACTION_COLUMNS = [f.name for f in PARSED_INTERACTION.fields]
ITEM_COLUMNS = [f.name for f in PARSED_ITEM.fields]

# silver.interactions: one deduplicated event. Natural key: INTERACTION_KEY (user_id, item_id, ts, event),
# in gr2.platform.keys since the publish gates check it too.
SILVER_INTERACTION_COLUMNS = ["user_id", "item_id", "ts", "event", "slate_id", "position", "source", "ingest_date"]

# silver.items: one item. Natural key: item_id.
SILVER_ITEM_COLUMNS = ["item_id", "title", "categories", "brand", "text", "source", "ingest_date"]
ITEM_UPDATABLE = ["title", "categories", "brand", "text"]

# bronze.events and quarantine keep the raw record and where it came from.
BRONZE_COLUMNS = ["source", "kind", "file", "line", "raw", "ingest_date"]  # key: gr2.platform.keys.BRONZE_KEY
QUARANTINE_COLUMNS = ["source", "kind", "file", "line", "raw", "reason", "stage", "ingest_date"]
# key: gr2.platform.keys.QUARANTINE_KEY (the ETL and the tokenizer both quarantine)

# Event names that mean "the user engaged with the item": they go into gold.sequences and are a logged
# slate's clicks (gold.is_positive). Impressions do not, nor does any other name (kept in silver, unused
# by gold, counted in the build's summary as unused_events).
POSITIVE_EVENTS = ("purchase", "review", "rating", "click", "view", "add_to_cart")
IMPRESSION_EVENT = "impression"

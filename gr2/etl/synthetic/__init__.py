"""The built-in synthetic data set: purchase logs with structure a re-ranker can learn.

Output (the "events" landing format), under `out_dir`:

    items.jsonl            one JSON object per line: item_id, title, categories, brand
    events/part-NNNNN.jsonl  one JSON object per line: user_id, item_id, ts, event="purchase",
                           plus deliberately broken lines (see below); written by Spark executors

Determinism: the catalog comes from `numpy.random.default_rng([seed, 0x5EED, 0xCA7])`, and every user
from `numpy.random.default_rng([seed, user_index])`, so the same config gives byte-identical files on
any number of executors. User `k` lands in partition `k * partitions // users` in user order, and a
user's lines are in time order.

Structure
---------
* Category tree: departments > subcategories > leaves from a built-in vocabulary
  (Beauty > Hair Care > Shampoo, Makeup > Eyes > Mascara, Electronics > Phones > Phone Case, ...).
  The number of leaves grows with the catalog (about one per 200 items, at most one per 4 items):
  small catalogs take the first vocabulary leaves department by department; large ones add variant
  leaves ("Travel Shampoo", then "Shampoo Line 12"). Every leaf holds at least one item.
* Complementary leaves: a fixed transition map leaf -> 1..2 leaves. Hand-written pairs for the
  vocabulary (Shampoo -> Conditioner, Mascara -> Eye Makeup Remover, Camera -> Memory Card, ...) plus
  seeded random pairs inside the same subcategory or department (all of them for variant leaves).
* Brands: each specializes in one department and has a price tier (budget/mid/premium) shown by a
  tier word in its name ("Lumera Luxe", "Vexa Basics"). A brand has a strength (log-normal).
* Items: a leaf and a brand of the leaf's department; popularity = 1 / rank**zipf (a random rank)
  times the brand's strength. Title = brand + department adjective + leaf noun + size, e.g.
  "Lumera Silk Repair Shampoo 250 ml" (unique-ish, not guaranteed unique).
* Users: a persona of 1-2 departments, 1-3 preferred leaves in them and 1-2 favourite brands.
  A sequence has `min_events_per_user + geometric` items (mean `mean_events_per_user`). The first item
  comes from a persona leaf (70 %) or overall popularity; each next one from a mixture:
  `p_complement` (0.45) a complementary leaf of the previous item's leaf, `p_persona` (0.3) a persona
  leaf, `p_same_brand` (0.1) the previous item's brand, the rest overall popularity. Inside a leaf an
  item is drawn by popularity, from a favourite brand's items in that leaf half of the time when the
  user has one there. An item already bought is redrawn (up to 3 times), so repeats are rare.
* Time: a user starts on a random day in the `days`-day window ending at `end_date` 23:59:59 UTC;
  successive purchases are log-uniformly 1 minute to 3 days apart, strictly increasing, all inside.

Bad records
-----------
After each good event, with probability `bad_record_rate`, one extra broken line of a kind drawn
uniformly from `BAD_KINDS`, each with exactly one defect:

    malformed_json   the good line cut short (never valid JSON)
    empty_user_id    the good event with user_id ""
    unparseable_ts   ts "not-a-date"
    absurd_ts        ts in 1971 ("1971-01-01T<time>Z") or in 2199 (the good ts with year 2199)
    duplicate        an exact copy of the good line just before it
    unknown_item     item_id "ghost-<n>", an id absent from items.jsonl

`generate` returns their counts per kind, which the quarantine must reproduce exactly.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from gr2.config import SyntheticConfig
from gr2.etl.synthetic.items import Catalog, catalog, id_width, item_records
from gr2.etl.synthetic.users import BAD_KINDS, EVENT, event_line, user_events, user_id, window

# The generator's parts (vocabulary.py, items.py, users.py) are pure; this module adds the Spark job that
# writes them. The names above are the package's API (tests and gr2.etl.jobs import them from here).
__all__ = ["BAD_KINDS", "EVENT", "USERS_PER_PARTITION", "Catalog", "catalog", "default_partitions", "event_line",
           "generate", "id_width", "item_records", "user_events", "user_id", "window"]

USERS_PER_PARTITION = 50_000


try:  # executors import this module too; keep Spark optional for the pure parts
    from pyspark.accumulators import AccumulatorParam

    class _VectorSum(AccumulatorParam):
        def zero(self, value):
            return [0] * len(value)

        def addInPlace(self, a, b):
            return [x + y for x, y in zip(a, b)]

except ImportError:  # pragma: no cover
    _VectorSum = None  # type: ignore[assignment,misc]


def default_partitions(cfg: SyntheticConfig) -> int:
    return cfg.partitions or max(2, cfg.users // USERS_PER_PARTITION)


def _generate_partition(users, catalog_bc, cfg: SyntheticConfig, counts_acc):
    cat = catalog_bc.value
    counts = [0] * (1 + len(BAD_KINDS))  # good events, then each bad kind
    kind_index = {k: i + 1 for i, k in enumerate(BAD_KINDS)}
    lines: list[str] = []
    for u in users:
        for rec in user_events(u, cat, cfg):
            counts[kind_index[rec["bad"]] if "bad" in rec else 0] += 1
            lines.append(event_line(rec))
        if len(lines) >= 4096:
            # saveAsTextFile ends every element with a newline: one element per block of users
            # writes the same bytes as one per line, with far fewer Python -> JVM round trips.
            yield "\n".join(lines)
            lines = []
    if lines:
        yield "\n".join(lines)
    counts_acc.add(counts)


def generate(spark, cfg: SyntheticConfig, out_dir: str | Path) -> dict:
    """Write items.jsonl (driver) and events/ (executors) under out_dir; return the counts.

    Counts: {"users", "items", "events" (good ones), "bad_records": {kind: n}, "lines" (all event
    lines), "partitions"}. Reruns replace earlier output and give byte-identical files.
    """
    out = Path(out_dir).expanduser().resolve()
    events_dir = out / "events"
    items_file = out / "items.jsonl"
    if events_dir.exists():
        shutil.rmtree(events_dir)
    items_file.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)

    cat = catalog(cfg)
    tmp = out / ".items.jsonl.tmp"
    with tmp.open("w", encoding="utf-8") as f:
        for rec in item_records(cat):
            f.write(json.dumps(rec, ensure_ascii=False))
            f.write("\n")
    tmp.replace(items_file)

    sc = spark.sparkContext
    parts = default_partitions(cfg)
    catalog_bc = sc.broadcast(cat.for_executors())
    counts_acc = sc.accumulator([0] * (1 + len(BAD_KINDS)), _VectorSum())
    try:
        # parallelize(range) slices lazily and in order: partition p holds users [p*U/P, (p+1)*U/P).
        # One result stage, so each task's accumulator update is merged exactly once.
        rdd = sc.parallelize(range(cfg.users), parts).mapPartitions(
            lambda it: _generate_partition(it, catalog_bc, cfg, counts_acc)
        )
        rdd.saveAsTextFile(events_dir.as_uri())
    finally:
        catalog_bc.unpersist()
    # Stable names with an extension; drop Hadoop's checksum side files.
    for crc in events_dir.glob(".*.crc"):
        crc.unlink()
    for part in sorted(events_dir.glob("part-*")):
        if not part.name.endswith(".jsonl"):
            part.rename(part.with_name(part.name + ".jsonl"))

    counts = counts_acc.value
    bad = {k: int(counts[i + 1]) for i, k in enumerate(BAD_KINDS)}
    return {
        "users": cfg.users,
        "items": cfg.items,
        "events": int(counts[0]),
        "bad_records": bad,
        "lines": int(counts[0]) + sum(bad.values()),
        "partitions": parts,
    }

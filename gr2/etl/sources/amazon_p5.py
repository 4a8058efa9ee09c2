"""Amazon in P5 form: `sequential_data.txt` ("user item item ...", chronological) + `items.jsonl`.

P5 files carry no time. Each interaction gets ts = 2000-01-01 + its 1-based position in the user's
sequence (seconds), which keeps the order, is the same on every run (so re-ingesting is idempotent),
and is far from any absurd-timestamp bound. One line holds many interactions: each is its own parsed
record with the line as locator and "user item @position" as raw.
"""

from __future__ import annotations

import html
import json
from datetime import datetime, timedelta
from pathlib import Path

from gr2.etl.io import InputError, read_lines
from gr2.etl.schema import PARSED_INTERACTION, PARSED_ITEM
from gr2.etl.sources import SourceBatch, flatten_categories, json_type, parse_id

SOURCE = "amazon-p5"
P5_EPOCH = datetime(2000, 1, 1)


def parse_sequence_line(file: str, line: int, raw: str) -> list[tuple]:
    """One `user item item ...` line -> one parsed interaction per item (or one rejected record)."""
    tokens = raw.split()
    if len(tokens) < 2:
        return [(SOURCE, file, line, raw, None, None, None, None, None, None, "sequence line without items")]
    user = tokens[0]
    out = []
    for pos, item in enumerate(tokens[1:], start=1):
        rec_raw = f"{user} {item} @{pos}"
        reason = None
        if not item.lstrip("-").isdigit() and not item.isalnum():
            reason = f"item id {item!r} is not an identifier"
        out.append((SOURCE, file, line, rec_raw, user, item, P5_EPOCH + timedelta(seconds=pos), "purchase", None, None, reason))
    return out


def parse_item_line(file: str, line: int, raw: str) -> tuple:
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        return (SOURCE, file, line, raw, None, None, None, None, f"malformed JSON: {exc.msg} at column {exc.colno}")
    if not isinstance(obj, dict):
        return (SOURCE, file, line, raw, None, None, None, None, "malformed JSON: not an object")
    item, bad = parse_id(obj.get("item_id"), "item_id")
    brand = obj.get("brand")
    if bad is None and brand is not None and not isinstance(brand, str):
        bad = f"brand must be a string, got {json_type(brand)} {json.dumps(brand)[:80]}"
    if bad:  # quarantined with the reason, never passed on as text the source did not write
        return (SOURCE, file, line, raw, None, None, None, None, bad)
    title = obj.get("title")
    title = html.unescape(str(title)).strip() if title is not None else None
    return (SOURCE, file, line, raw, item, title, flatten_categories(obj.get("categories")), brand, None)


def read(spark, path: str, encoding: str | None = None) -> SourceBatch:
    folder = Path(path).expanduser()
    seq_file = folder / "sequential_data.txt"
    items_file = folder / "items.jsonl"
    for f in (seq_file, items_file):
        if not f.exists():
            raise InputError(f"amazon-p5 expects {f.name} in {folder}, and it is not there")
    enc = encoding or "utf-8"
    seq_lines = read_lines(spark, [str(seq_file.resolve())], enc)
    item_lines = read_lines(spark, [str(items_file.resolve())], enc)
    interactions = spark.createDataFrame(
        seq_lines.rdd.flatMap(lambda r: parse_sequence_line(r.file, r.line, r.raw)), PARSED_INTERACTION
    )
    items = spark.createDataFrame(item_lines.rdd.map(lambda r: parse_item_line(r.file, r.line, r.raw)), PARSED_ITEM)
    return SourceBatch(SOURCE, interactions, items, {"interactions": seq_lines, "items": item_lines},
                       files=[str(seq_file.resolve()), str(items_file.resolve())])

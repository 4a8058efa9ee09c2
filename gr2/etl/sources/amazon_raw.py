"""Raw Amazon 2014 files (McAuley et al.): review files + metadata files, one object per line.

Every `*.json`/`*.jsonl` file (plain or `.gz`) under the folder is read. A file whose name starts with
"meta" (`meta_Beauty.json.gz`) holds item metadata; every other one (`reviews_Beauty_5.json.gz`) holds
reviews. Review lines are strict JSON; metadata lines are strict JSON or, in the older dumps, a Python
literal per line (single quotes), so `json.loads` is tried first and `ast.literal_eval` second.

A review is an interaction: user_id = reviewerID, item_id = asin, ts = unixReviewTime (UTC; the
"MM DD, YYYY" reviewTime is used when unixReviewTime is absent), event = "review".
"""

from __future__ import annotations

import ast
import html
import json
import math
from datetime import datetime, timezone
from pathlib import Path

from gr2.etl.io import LINES, InputError, list_files, read_lines
from gr2.etl.schema import PARSED_INTERACTION, PARSED_ITEM
from gr2.etl.sources import SourceBatch, flatten_categories
from gr2.etl.sources import clean_id as _id

SOURCE = "amazon-raw"
EVENT = "review"
DATA_SUFFIXES = (".json", ".jsonl", ".json.gz", ".jsonl.gz")


def is_meta_file(path: str) -> bool:
    return Path(path).name.lower().startswith("meta")


def _load_object(raw: str, allow_literal: bool) -> tuple[dict | None, str | None]:
    """(object, None) or (None, reason). Python-literal lines are accepted only when `allow_literal`."""
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        if not allow_literal:
            return None, f"malformed JSON: {exc.msg} at column {exc.colno}"
        try:
            obj = ast.literal_eval(raw.strip())
        except Exception:  # noqa: BLE001 - any failure of literal_eval means "not a literal"
            return None, f"malformed record: neither JSON ({exc.msg} at column {exc.colno}) nor a Python literal"
    if not isinstance(obj, dict):
        return None, f"malformed record: a {type(obj).__name__}, not an object"
    return obj, None


def _epoch(value) -> datetime | None:
    """unixReviewTime (seconds) -> naive UTC datetime, or None when it is not a usable number."""
    if isinstance(value, bool):
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(seconds):
        return None
    try:
        return datetime.fromtimestamp(seconds, tz=timezone.utc).replace(tzinfo=None)
    except (OverflowError, OSError, ValueError):
        return None


def _review_time(value) -> datetime | None:
    """reviewTime is "MM DD, YYYY" (e.g. "01 30, 2014")."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.strptime(" ".join(value.split()), "%m %d, %Y")
    except ValueError:
        return None


def parse_review_line(file: str, line: int, raw: str) -> tuple:
    """One review line -> one parsed interaction (PARSED_INTERACTION order)."""
    obj, reason = _load_object(raw, allow_literal=True)
    if obj is None:
        return (SOURCE, file, line, raw, None, None, None, None, None, None, reason)
    user, item = _id(obj.get("reviewerID")), _id(obj.get("asin"))
    missing = [name for name, v in (("reviewerID", user), ("asin", item)) if v is None]
    ts = None
    if obj.get("unixReviewTime") is not None:
        ts = _epoch(obj["unixReviewTime"])
        if ts is None:
            reason = f"unparseable timestamp: unixReviewTime {obj['unixReviewTime']!r}"
    elif obj.get("reviewTime") is not None:
        ts = _review_time(obj["reviewTime"])
        if ts is None:
            reason = f"unparseable timestamp: reviewTime {obj['reviewTime']!r}"
    else:
        missing.append("unixReviewTime")
    if missing:
        reason = f"missing field{'s' if len(missing) > 1 else ''}: {', '.join(missing)}"
    return (SOURCE, file, line, raw, user, item, ts, EVENT, None, None, reason)


def _text(value) -> str | None:
    if value is None:
        return None
    text = html.unescape(str(value)).strip()
    return text or None


def parse_meta_line(file: str, line: int, raw: str) -> tuple:
    """One metadata line (JSON or Python literal) -> one parsed item (PARSED_ITEM order)."""
    obj, reason = _load_object(raw, allow_literal=True)
    if obj is None:
        return (SOURCE, file, line, raw, None, None, None, None, reason)
    item = _id(obj.get("asin"))
    reason = None if item is not None else "missing field: asin"
    return (SOURCE, file, line, raw, item, _text(obj.get("title")), flatten_categories(obj.get("categories")), _text(obj.get("brand")), reason)


def read(spark, path: str, encoding: str | None = None) -> SourceBatch:
    folder = Path(path).expanduser()
    if not folder.exists():
        raise InputError(f"amazon-raw expects a folder of review files (reviews_*.json.gz) and metadata files (meta_*.json.gz) "
                         f"at {folder}, and it does not exist")
    try:
        files = [f for f in list_files(folder) if f.lower().endswith(DATA_SUFFIXES)]
    except InputError:
        files = []
    if not files:
        raise InputError(
            f"amazon-raw expects review files (e.g. reviews_Beauty_5.json.gz) and metadata files "
            f"(e.g. meta_Beauty.json.gz) under {folder}; found no .json/.jsonl(.gz) file there"
        )
    enc = encoding or "utf-8"
    review_files = [f for f in files if not is_meta_file(f)]
    meta_files = [f for f in files if is_meta_file(f)]

    if review_files:
        review_lines = read_lines(spark, review_files, enc)
        interactions = spark.createDataFrame(
            review_lines.rdd.map(lambda r: parse_review_line(r.file, r.line, r.raw)), PARSED_INTERACTION
        )
    else:
        review_lines = spark.createDataFrame([], LINES)
        interactions = spark.createDataFrame([], PARSED_INTERACTION)
    lines = {"interactions": review_lines}
    items = None
    if meta_files:
        meta_lines = read_lines(spark, meta_files, enc)
        items = spark.createDataFrame(meta_lines.rdd.map(lambda r: parse_meta_line(r.file, r.line, r.raw)), PARSED_ITEM)
        lines["items"] = meta_lines
    return SourceBatch(SOURCE, interactions, items, lines, files=sorted(files))

"""A company's own logs: event files and item metadata files, as JSON lines, CSV or Parquet.

`path` is a folder (searched recursively) or a single file. Data files are `.jsonl`/`.json`/`.csv`
(plain or `.gz`) and `.parquet`; other files, and every file or folder whose name starts with "_" or "."
(`_SUCCESS`, `.part-0000.crc`, `_temporary/`), are ignored.

Which file holds what:
- ITEM METADATA when its own name, or the name of any folder between `path` and it, starts with
  "items" (case-insensitive): `items.jsonl`, `items_2024-01-01.csv`, `items/part-0000.json`.
- EVENTS otherwise.

Event columns: user_id, item_id, ts, event (default "click"), slate_id (optional), position (optional int,
for logged impressions). ts is ISO-8601 (with "Z", an offset or none: a time without zone is UTC) or an
epoch number (seconds when below 1e11, else milliseconds); it becomes a naive UTC datetime.
Item columns: item_id, title, categories (a JSON list; in CSV a "a|b|c" string or a JSON list), brand.

JSON files hold one object per line. CSV files start with a header line naming the columns; the header is
not a record (it is in neither the lines nor the parsed rows) and every later line is parsed with the
csv module (so a quoted field cannot span lines). A Parquet row is a record whose line is its 1-based
row index in the file and whose raw text is the row as JSON (timestamps as ISO-8601 UTC).
"""

from __future__ import annotations

import csv
import gzip
import json
import math
import os
import re
from datetime import date, datetime, timezone
from functools import reduce
from pathlib import Path

from gr2.etl.io import InputError, line_records, local_path, parse_text_files, read_parquet_rows, scan_files, whole_file_tasks_fit
from gr2.etl.schema import PARSED_INTERACTION, PARSED_ITEM
from gr2.etl.sources import SourceBatch, flatten_categories, json_type, parse_id

SOURCE = "events"
DEFAULT_EVENT = "click"
EPOCH_MILLIS_FROM = 1e11  # epoch numbers at or above this are milliseconds (1e11 s is the year 5138)
INT32 = 2**31

JSON_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz")
CSV_SUFFIXES = (".csv", ".csv.gz")
PARQUET_SUFFIXES = (".parquet",)
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


# ---------------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------------


def file_format(path: str) -> str | None:
    """"json", "csv", "parquet" or None (not a data file) from the file name."""
    name = path.lower()
    if name.endswith(JSON_SUFFIXES):
        return "json"
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    return None


def is_csv(path: str) -> bool:
    return path.lower().endswith(CSV_SUFFIXES)


def _relative_parts(root: Path, file: str) -> tuple[str, ...]:
    """The names from below `root` down to `file` (just the file name when root is a file or a glob)."""
    if root.is_dir():
        rel = os.path.relpath(file, root.resolve())
        if not rel.startswith(".."):
            return Path(rel).parts
    return (Path(file).name,)


NOT_DATA = "not a data file (.jsonl, .json or .csv, plain or .gz, or .parquet)"


def classify_files(path: str | Path) -> dict[str, list[tuple[str, str]]]:
    """{"interactions": [(file, format)], "items": [(file, format)], "skipped": [(file, reason)]} for
    the files under `path`: every file is read or skipped with its reason."""
    root = Path(path).expanduser()
    if not root.exists() and not any(ch in str(root) for ch in "*?["):
        raise InputError(f"events expects a folder or file of event logs (.jsonl/.json/.csv/.parquet) at {root}, and it does not exist")
    files, skipped = scan_files(root)
    out: dict[str, list[tuple[str, str]]] = {"interactions": [], "items": [], "skipped": list(skipped)}
    for f in files:
        parts = _relative_parts(root, f)
        fmt = file_format(parts[-1])
        if fmt is None:
            out["skipped"].append((f, NOT_DATA))
            continue
        kind = "items" if any(p.lower().startswith("items") for p in parts) else "interactions"
        out[kind].append((f, fmt))
    out["skipped"].sort()
    if not out["interactions"] and not out["items"]:
        raise InputError(
            f"events expects event and item files (.jsonl/.json/.csv, plain or .gz, or .parquet) under {root}; "
            f"found none (item files are those named items* or inside an items* folder)"
        )
    return out


def _csv_fields(raw: str) -> list[str]:
    return next(csv.reader([raw], strict=True), [])


def read_csv_header(file: str, encoding: str) -> list[str] | None:
    """The column names on line 1 of a CSV file (plain or .gz), or None when line 1 is blank."""
    opener = gzip.open if file.lower().endswith(".gz") else open
    with opener(file, "rb") as fh:
        first = fh.readline()
    text = first.decode(encoding, errors="replace").lstrip("\ufeff").rstrip("\r\n")
    if not text.strip():
        return None
    try:
        return [name.strip() for name in _csv_fields(text)]
    except csv.Error:
        return None


# ---------------------------------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------------------------------


def _epoch(number: float) -> datetime | None:
    if not math.isfinite(number):
        return None
    seconds = number if abs(number) < EPOCH_MILLIS_FROM else number / 1000.0
    try:
        return datetime.fromtimestamp(seconds, tz=timezone.utc).replace(tzinfo=None)
    except (OverflowError, OSError, ValueError):
        return None


def parse_timestamp(value) -> datetime | None:
    """ISO-8601 text or epoch seconds/milliseconds -> naive UTC datetime; None when it is neither."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).replace(tzinfo=None) if value.tzinfo else value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    if isinstance(value, (int, float)):
        return _epoch(float(value))
    if not isinstance(value, str):
        return None
    text = value.strip()
    if _NUMBER.match(text):
        return _epoch(float(text))
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        return None
    return ts.astimezone(timezone.utc).replace(tzinfo=None) if ts.tzinfo else ts


def _opt_text(value) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _position(value) -> tuple[int | None, str | None]:
    """(position, None) or (None, reason)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None, None
    number = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"[+-]?\d+", text):
            number = int(text)
        elif _NUMBER.match(text) and float(text).is_integer():
            number = int(float(text))
    if number is None:
        return None, f"position is not an integer: {value!r}"
    if not -INT32 <= number < INT32:
        return None, f"position out of range: {number}"
    return number, None


def _categories(value) -> list[str]:
    """A list (nested lists are flattened), a JSON list text or "a|b|c" -> distinct names, first seen first."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                return flatten_categories(json.loads(text))
            except json.JSONDecodeError:
                pass
        value = text.split("|")
    return flatten_categories(value)


def _missing(names: list[str]) -> str:
    return f"missing field{'s' if len(names) > 1 else ''}: {', '.join(names)}"


# ---------------------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------------------


def event_record(file: str, line: int, raw: str, obj: dict) -> tuple:
    """A decoded event (dict) -> one parsed interaction (PARSED_INTERACTION order)."""
    (user, bad_user), (item, bad_item) = parse_id(obj.get("user_id"), "user_id"), parse_id(obj.get("item_id"), "item_id")
    ts_value = obj.get("ts")
    if isinstance(ts_value, str) and not ts_value.strip():
        ts_value = None
    missing = [n for n, v in (("user_id", user), ("item_id", item), ("ts", ts_value)) if v is None]
    ts = parse_timestamp(ts_value)
    raw_event = obj.get("event")
    event = _opt_text(raw_event) if isinstance(raw_event, str) else None
    event = event.lower() if event else DEFAULT_EVENT
    position, reason = _position(obj.get("position"))
    if ts is None and ts_value is not None:
        reason = f"unparseable timestamp: {ts_value!r}"
    if raw_event is not None and not isinstance(raw_event, str):
        reason = f"event must be a string, got {json_type(raw_event)} {json.dumps(raw_event)[:80]}"
    if missing:
        reason = _missing(missing)
    reason = bad_user or bad_item or reason
    return (SOURCE, file, line, raw, user, item, ts, event, _opt_text(obj.get("slate_id")), position, reason)


def item_record(file: str, line: int, raw: str, obj: dict) -> tuple:
    """A decoded item (dict) -> one parsed item (PARSED_ITEM order)."""
    item, reason = parse_id(obj.get("item_id"), "item_id")
    reason = reason or (None if item is not None else _missing(["item_id"]))
    title = _opt_text(obj.get("title"))
    return (SOURCE, file, line, raw, item, title, _categories(obj.get("categories")), _opt_text(obj.get("brand")), reason)


def _load_json(raw: str) -> tuple[dict | None, str | None]:
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        return None, f"malformed JSON: {exc.msg} at column {exc.colno}"
    if not isinstance(obj, dict):
        return None, f"malformed JSON: a {type(obj).__name__}, not an object"
    return obj, None


def _load_csv(raw: str, header: list[str] | None) -> tuple[dict | None, str | None]:
    if not header:
        return None, "CSV file has no header line (line 1 must name the columns)"
    try:
        fields = _csv_fields(raw)
    except csv.Error as exc:
        return None, f"malformed CSV: {exc}"
    if len(fields) != len(header):
        return None, f"expected {len(header)} CSV fields ({', '.join(header)}), found {len(fields)}"
    return {name: (value if value.strip() else None) for name, value in zip(header, fields)}, None


_BAD_EVENT = (None,) * 6  # user_id .. position
_BAD_ITEM = (None,) * 4  # item_id .. brand


def parse_event_json(file: str, line: int, raw: str) -> tuple:
    obj, reason = _load_json(raw)
    return event_record(file, line, raw, obj) if obj is not None else (SOURCE, file, line, raw, *_BAD_EVENT, reason)


def parse_event_csv(file: str, line: int, raw: str, header: list[str] | None) -> tuple:
    obj, reason = _load_csv(raw, header)
    return event_record(file, line, raw, obj) if obj is not None else (SOURCE, file, line, raw, *_BAD_EVENT, reason)


def parse_item_json(file: str, line: int, raw: str) -> tuple:
    obj, reason = _load_json(raw)
    return item_record(file, line, raw, obj) if obj is not None else (SOURCE, file, line, raw, *_BAD_ITEM, reason)


def parse_item_csv(file: str, line: int, raw: str, header: list[str] | None) -> tuple:
    obj, reason = _load_csv(raw, header)
    return item_record(file, line, raw, obj) if obj is not None else (SOURCE, file, line, raw, *_BAD_ITEM, reason)


def parse_line(kind: str, file: str, line: int, raw: str, headers: dict) -> tuple:
    """Dispatch on the file: CSV lines with their file's header, JSON lines and Parquet rows (JSON) as JSON."""
    if is_csv(file):
        header = headers.get(file) or headers.get(local_path(file))
        return (parse_event_csv if kind == "interactions" else parse_item_csv)(file, line, raw, header)
    return (parse_event_json if kind == "interactions" else parse_item_json)(file, line, raw)


# ---------------------------------------------------------------------------------------------------
# Reader
# ---------------------------------------------------------------------------------------------------


_CSV_FILE = re.compile(r"(?i)\.csv(\.gz)?$")


def _records(spark, kind: str, files: list[tuple[str, str]], encoding: str, headers: dict):
    """Parsed rows of `kind` for these files, in one Python pass over their lines (read and parse in the
    same task: no round trip of every line through the JVM between the two); CSV headers left out."""
    schema = PARSED_INTERACTION if kind == "interactions" else PARSED_ITEM
    parts = []
    text = [f for f, fmt in files if fmt in ("json", "csv")]
    if text and whole_file_tasks_fit(spark, text):
        csv_files = frozenset(f for f, fmt in files if fmt == "csv")
        parts.append(parse_text_files(spark, text, encoding, lambda f, n, raw: parse_line(kind, f, n, raw, headers),
                                      schema, header_files=csv_files))
    elif text:
        recs = line_records(spark, text, encoding)
        if any(fmt == "csv" for _, fmt in files):
            recs = recs.filter(lambda r: not (r[1] == 1 and _CSV_FILE.search(r[0])))
        parts.append(spark.createDataFrame(recs.map(lambda r: parse_line(kind, r[0], r[1], r[2], headers)), schema))
    for f, fmt in files:
        if fmt == "parquet":
            rows = read_parquet_rows(spark, f)
            parts.append(spark.createDataFrame(rows.rdd.map(lambda r: parse_line(kind, r.file, r.line, r.raw, headers)), schema))
    if not parts:
        return spark.createDataFrame([], schema)
    return reduce(lambda a, b: a.unionByName(b), parts)


def probe_file(path: str, fmt: str) -> str | None:
    """Why a data file cannot be read (None when it can), found on the driver before Spark reads it, so
    one corrupt or unreadable file is reported by name and the others still ingest (in a Spark task it
    would fail the whole job, and a broken gzip stream does not even name its file there). A .gz file is
    decompressed to its end; a Parquet file is decoded batch by batch."""
    import zlib

    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            for _ in pq.ParquetFile(path).iter_batches(batch_size=65536):
                pass
        elif path.lower().endswith(".gz"):
            with gzip.open(path, "rb") as fh:
                while fh.read(1 << 20):
                    pass
        else:
            with open(path, "rb") as fh:
                fh.read(1)
    except PermissionError as exc:
        return f"unreadable: {exc.strerror or exc}"
    except (OSError, EOFError, zlib.error) as exc:
        kind = "gzip" if path.lower().endswith(".gz") else fmt
        return f"corrupt {kind} file: {exc}"
    except Exception as exc:  # pyarrow raises its own errors for a damaged footer or page
        return f"corrupt {fmt} file: {type(exc).__name__}: {exc}"
    return None


def read(spark, path: str, encoding: str | None = None) -> SourceBatch:
    enc = encoding or "utf-8"
    files = classify_files(path)
    failed = []
    for kind in ("interactions", "items"):
        good = []
        for f, fmt in files[kind]:
            why = probe_file(f, fmt)
            if why is None:
                good.append((f, fmt))
            else:
                failed.append((f, why))
        files[kind] = good
    if failed and not files["interactions"] and not files["items"]:
        raise InputError(f"no file under {path} could be read: " + "; ".join(f"{f}: {why}" for f, why in failed))
    headers = {f: read_csv_header(f, enc) for kind in files for f, fmt in files[kind] if fmt == "csv"}

    # One parsed row per line, carrying its file, line and raw text: bronze comes from the parsed rows
    # (records_are_lines), so the files are read and parsed once.
    interactions = _records(spark, "interactions", files["interactions"], enc, headers)
    lines = {"interactions": interactions.select("file", "line", "raw")}
    items = None
    if files["items"]:
        items = _records(spark, "items", files["items"], enc, headers)
        lines["items"] = items.select("file", "line", "raw")
    read_files = sorted(f for kind in ("interactions", "items") for f, _ in files[kind])
    return SourceBatch(SOURCE, interactions, items, lines, files=read_files, skipped=files["skipped"], failed=sorted(failed),
                       records_are_lines=True)

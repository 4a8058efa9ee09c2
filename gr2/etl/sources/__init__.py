"""Source readers: one per input format, all producing the same parsed shape (gr2.etl.schema).

A reader is a function `read(spark, path, encoding) -> SourceBatch`. Parsing of single records is done
by pure functions (raw text -> tuples) so they are tested without Spark; the reader only maps them over
the lines that `gr2.etl.io.read_lines` gives.
"""

from __future__ import annotations

import html
import json
import math
import unicodedata
from dataclasses import dataclass, field
from typing import Callable


@dataclass
class SourceBatch:
    """What one reader call produced. `lines` holds every raw record (for bronze), by kind."""

    source: str
    interactions: object  # DataFrame[PARSED_INTERACTION]
    items: object | None  # DataFrame[PARSED_ITEM] or None when the source carries no item metadata
    lines: dict  # kind ("interactions" | "items") -> DataFrame[file, line, raw]
    files: list = field(default_factory=list)  # [file]: the data files read
    skipped: list = field(default_factory=list)  # [(file, reason)]: files under the input path not read
    failed: list = field(default_factory=list)  # [(file, reason)]: data files that could not be read
    # Each parsed row is one line, with its file, line and raw text: bronze can be taken from the parsed
    # rows (already cached by the ingest) instead of reading the files again.
    records_are_lines: bool = False


Reader = Callable[..., SourceBatch]


def flatten_categories(value) -> list[str]:
    """Category paths (a name, a list, or nested lists of names) -> distinct names, first seen first.

    Names are HTML-unescaped (Amazon titles and categories keep &amp; and friends) and stripped.
    """
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        value = [value]
    seen: list[str] = []
    for entry in value:
        names = flatten_categories(entry) if isinstance(entry, (list, tuple)) else [entry]
        for name in names:
            if name is None:
                continue
            name = html.unescape(str(name)).strip()
            if name and name not in seen:
                seen.append(name)
    return seen


def clean_id(value) -> str | None:
    """An id as text: 42.0 from a JSON number is "42", whitespace is stripped, None stays None. For
    values already known to be ids (a CSV field, a Parquet column); `parse_id` judges decoded JSON."""
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return unicodedata.normalize("NFC", str(value).strip())


def json_type(value) -> str:
    """How JSON wrote `value`, for reasons: "a boolean", "a list", ..."""
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "an object"}.get(type(value), type(value).__name__)


def parse_id(value, field: str) -> tuple[str | None, str | None]:
    """(id, None) or (None, reason) for a decoded JSON value. An id is a string or an integer (an integral
    number such as 42.0, as pandas exports write integers, counts as 42), nothing else: str() of a list,
    object or boolean would invent an id the source never wrote. Text is Unicode-normalised to NFC, so
    the composed and decomposed spellings of "café" are one id. None (absent) is (None, None)."""
    if value is None:
        return None, None
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return clean_id(value), None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return clean_id(value), None
    return None, f"{field} must be a string or an integer, got {json_type(value)} {json.dumps(value)[:80]}"


def get_reader(source: str) -> Reader:
    import importlib

    modules = {"amazon-p5": "amazon_p5", "amazon-raw": "amazon_raw", "movielens": "movielens", "events": "events"}
    if source not in modules:
        raise ValueError(f"unknown source {source!r}; choose one of {', '.join(sorted(modules))} or synthetic")
    return importlib.import_module(f"gr2.etl.sources.{modules[source]}").read

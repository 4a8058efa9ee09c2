"""MovieLens 100K and 1M, told apart by the files in the folder.

- 100K: `u.data` ("user<TAB>item<TAB>rating<TAB>unix_ts") + `u.item`
  ("id|title|release date|video release date|IMDb url|19 genre flags").
- 1M: `ratings.dat` ("UserID::MovieID::Rating::Timestamp") + `movies.dat` ("MovieID::Title::Genres",
  genres separated by "|").

Both are Latin-1 (accented titles), so that is the default encoding. Every rating is an interaction
with event "rating"; the genres are the item's categories; there is no brand.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from pathlib import Path

from gr2.etl.io import InputError, read_lines
from gr2.etl.schema import PARSED_INTERACTION, PARSED_ITEM
from gr2.etl.sources import SourceBatch

SOURCE = "movielens"
EVENT = "rating"
DEFAULT_ENCODING = "ISO-8859-1"

# u.genre order: the 19 flags at the end of every u.item line.
GENRES_100K = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip

LAYOUTS = {
    "100k": ("u.data", "u.item"),
    "1m": ("ratings.dat", "movies.dat"),
}


def _epoch(text: str) -> datetime | None:
    try:
        seconds = float(text.strip())
        if not math.isfinite(seconds):
            return None
        return datetime.fromtimestamp(seconds, tz=timezone.utc).replace(tzinfo=None)
    except (ValueError, OverflowError, OSError):
        return None


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _rating(file: str, line: int, raw: str, fields: list[str], what: str) -> tuple:
    if len(fields) != 4:
        return (SOURCE, file, line, raw, None, None, None, None, None, None,
                f"expected 4 {what} fields (user, item, rating, timestamp), found {len(fields)}")  # fmt: skip
    user, item, rating, ts_text = (f.strip() for f in fields)
    ts = _epoch(ts_text)
    reason = None
    if ts is None:
        reason = f"unparseable timestamp: {ts_text!r}"
    elif not _is_number(rating):
        reason = f"unparseable rating: {rating!r}"
    return (SOURCE, file, line, raw, user, item, ts, EVENT, None, None, reason)


def parse_100k_rating(file: str, line: int, raw: str) -> tuple:
    """One `u.data` line -> one parsed interaction."""
    return _rating(file, line, raw, raw.split("\t"), "tab-separated")


def parse_1m_rating(file: str, line: int, raw: str) -> tuple:
    """One `ratings.dat` line -> one parsed interaction."""
    return _rating(file, line, raw, raw.split("::"), '"::"-separated')


def _title(text: str) -> str | None:
    text = text.strip()
    return text or None


def parse_100k_item(file: str, line: int, raw: str) -> tuple:
    """One `u.item` line -> one parsed item; the genre flags become category names."""
    fields = raw.split("|")
    want = 5 + len(GENRES_100K)
    if len(fields) != want:
        return (SOURCE, file, line, raw, None, None, None, None, f"expected {want} '|'-separated fields, found {len(fields)}")
    flags = [f.strip() for f in fields[5:]]
    bad = [f for f in flags if f not in ("0", "1")]
    reason = f"genre flags must be 0 or 1, found {bad[0]!r}" if bad else None
    genres = [g for g, flag in zip(GENRES_100K, flags) if flag == "1"]
    return (SOURCE, file, line, raw, fields[0].strip(), _title(fields[1]), genres, None, reason)


def parse_1m_item(file: str, line: int, raw: str) -> tuple:
    """One `movies.dat` line -> one parsed item."""
    fields = raw.split("::")
    if len(fields) != 3:
        return (SOURCE, file, line, raw, None, None, None, None, f'expected 3 "::"-separated fields (id, title, genres), found {len(fields)}')
    genres = []
    for g in fields[2].split("|"):
        g = g.strip()
        if g and g != "(no genres listed)" and g not in genres:
            genres.append(g)
    return (SOURCE, file, line, raw, fields[0].strip(), _title(fields[1]), genres, None, None)


PARSERS = {
    "100k": (parse_100k_rating, parse_100k_item),
    "1m": (parse_1m_rating, parse_1m_item),
}


def detect_layout(folder: Path) -> str:
    """"100k" or "1m" from the ratings file present; InputError when neither (or its item file) is there."""
    for layout, (ratings, items) in LAYOUTS.items():
        if (folder / ratings).is_file():
            if not (folder / items).is_file():
                raise InputError(f"movielens: {folder / ratings} is there but its item file {items} is not in {folder}")
            return layout
    raise InputError(
        f"movielens expects u.data + u.item (MovieLens 100K) or ratings.dat + movies.dat (MovieLens 1M) "
        f"in the folder {folder}, and neither is there"
    )


def read(spark, path: str, encoding: str | None = None) -> SourceBatch:
    folder = Path(path).expanduser()
    if not folder.exists():
        raise InputError(f"movielens expects a folder with u.data + u.item (100K) or ratings.dat + movies.dat (1M) at {folder}, and it does not exist")
    if folder.is_file():
        folder = folder.parent
    layout = detect_layout(folder)
    ratings_name, items_name = LAYOUTS[layout]
    parse_rating, parse_item = PARSERS[layout]
    enc = encoding or DEFAULT_ENCODING
    rating_lines = read_lines(spark, [str((folder / ratings_name).resolve())], enc)
    item_lines = read_lines(spark, [str((folder / items_name).resolve())], enc)
    interactions = spark.createDataFrame(
        rating_lines.rdd.map(lambda r: parse_rating(r.file, r.line, r.raw)), PARSED_INTERACTION
    )
    items = spark.createDataFrame(item_lines.rdd.map(lambda r: parse_item(r.file, r.line, r.raw)), PARSED_ITEM)
    return SourceBatch(SOURCE, interactions, items, {"interactions": rating_lines, "items": item_lines},
                       files=[str((folder / n).resolve()) for n in (ratings_name, items_name)])

"""A corpus of hostile input for the ETL, generated (never checked in), each class with its expected outcome.

`corpus()` returns the classes of bad input for the `events` source, `p5_corpus()` those for `amazon-p5`.
A class is a few files; each file says whether the ETL must read it, skip it or fail it (with the start
of the reason), and each record of a read file what must happen to it:

- ``accepted``: merged into silver (its silver key is given, so the test finds it there);
- ``quarantined``: one quarantine row at (file, line) whose reason starts with the given text;
- ``published``: a duplicate of a record a previous run published (`D0`'s events, which the seed run
  publishes; and every valid item, which the seed run publishes too): counted as a duplicate of published,
  written nowhere.

`write()` lays the corpus out in one landing folder; tests/test_hostile_input.py ingests it and checks
every expectation, and `markdown()` is the table in docs/tables.md.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from gr2.etl.io import HIDDEN, OUTSIDE
from gr2.etl.sources.events import NOT_DATA
from gr2.etl.transforms import INVALID_TEXT

D0 = datetime(2024, 3, 1)  # the day the seed run publishes
D1 = datetime(2024, 3, 2)  # every other good event
ITEMS = [f"i{n}" for n in range(1, 10)]


@dataclass
class Rec:
    outcome: str  # accepted | quarantined | published
    reason: str | None = None  # quarantined: the reason starts with this
    key: tuple | None = None  # accepted / published: (user_id, item_id, ts, event), or (item_id,) for items


@dataclass
class File:
    path: str  # relative to the landing folder
    content: bytes = b""
    records: dict[int, Rec] = field(default_factory=dict)  # line (or Parquet row) -> expected outcome
    fate: str = "read"  # read | skipped | failed
    why: str = ""  # skipped / failed: the reason starts with this
    kind: str = "interactions"
    link: str | None = None  # a symlink to this path (relative to the landing folder) instead of content
    mode: int | None = None  # chmod after writing


@dataclass
class Case:
    name: str
    input: str  # what the hostile input is
    outcome: str  # what the ETL does with it (the docs table)
    files: list[File]
    build: dict[str, str] = field(default_factory=dict)  # logged slate id -> the build stage's reason (None: kept)


def ok(user, item="i1", ts=None, event="purchase") -> Rec:
    return Rec("accepted", key=(user, item, ts or D1 + timedelta(hours=10), event))


def bad(reason: str) -> Rec:
    return Rec("quarantined", reason)


_D1_10 = (D1 + timedelta(hours=10)).isoformat() + "Z"


def ev(user, item="i1", ts=_D1_10, event="purchase", **extra) -> str:
    """One event line (JSON); ts defaults to D1 10:00 UTC."""
    return json.dumps({"user_id": user, "item_id": item, "ts": ts, "event": event, **extra}, ensure_ascii=False)


def text_file(path: str, lines: list[tuple[str | bytes, Rec | None]], end: bytes = b"\n", last_end: bool = True,
              kind: str = "interactions", head: bytes = b"") -> File:
    """A text file of `lines` (each with its expected outcome; None for a line that is no record)."""
    raw = [x.encode("utf-8") if isinstance(x, str) else x for x, _ in lines]
    content = head + end.join(raw) + (end if last_end and raw else b"")
    records = {n: rec for n, (_, rec) in enumerate(lines, start=1) if rec is not None}
    return File(path, content, records, kind=kind)


def parquet_file(path: str, columns: dict, types: dict | None = None, records: dict | None = None) -> File:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({c: pa.array(v, (types or {}).get(c)) for c, v in columns.items()})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return File(path, buf.getvalue(), records or {})


def _ts(hours: float, day: datetime = D1) -> datetime:
    return day + timedelta(hours=hours)


def _good_pair(prefix: str) -> list[tuple[str, Rec]]:
    return [(ev(f"{prefix}-1"), ok(f"{prefix}-1")), (ev(f"{prefix}-2", "i2"), ok(f"{prefix}-2", "i2"))]


def _name_case(name: str, file_names: list[str], what: str) -> Case:
    files = [text_file(n, _good_pair(f"{name}{k}")) for k, n in enumerate(file_names)]
    return Case(name, what, "read literally: each file gives exactly its own lines; records accepted", files)


def _parquet_events(path: str, prefix: str) -> File:
    import pyarrow as pa

    ts = [_ts(11), _ts(12)]
    return parquet_file(
        path,
        {"user_id": [f"{prefix}-1", f"{prefix}-2"], "item_id": ["i1", "i2"], "ts": ts, "event": ["view", "view"],
         "position": [None, 2], "seen_at": [datetime(2024, 3, 2, 9), None]},
        {"ts": pa.timestamp("ms", tz="UTC"), "position": pa.int32(), "seen_at": pa.timestamp("us")},
        {1: ok(f"{prefix}-1", "i1", ts[0], "view"), 2: ok(f"{prefix}-2", "i2", ts[1], "view")},
    )


def corpus(now: datetime, unreadable: bool | None = None) -> list[Case]:
    """Every class of hostile input for the `events` source. `now` (UTC) dates the future timestamps;
    `unreadable` (default: not root) includes the chmod 000 class, which root reads anyway."""
    unreadable = os.geteuid() != 0 if unreadable is None else unreadable
    nfd = unicodedata.normalize("NFD", "caf\u00e9-u")
    future = (now + timedelta(days=30)).replace(microsecond=0, tzinfo=None)
    good_gz = gzip.compress(b"\n".join(ev(f"gz-{n}").encode() for n in range(200)) + b"\n")
    cases = [
        Case("catalog", "the item catalog (good records)", "read; items accepted by the seed run, duplicates of published after",
             [text_file("items.jsonl", [(json.dumps({"item_id": i, "title": f"Item {i}", "categories": ["Dept"]}),
                                         Rec("published", key=(i,))) for i in ITEMS], kind="items")]),
        Case("duplicate_of_published", "events already in silver.interactions (published by an earlier run)",
             "read; counted as duplicates of published, written nowhere",
             [text_file("published.jsonl", [(ev(f"pub-{n}", ts=_ts(10 + n, D0).isoformat() + "Z"),
                                             Rec("published", key=(f"pub-{n}", "i1", _ts(10 + n, D0), "purchase")))
                                            for n in range(3)])]),
        _name_case("name_brackets", ["x1.jsonl", "x[1].jsonl"], "`x[1].jsonl` beside `x1.jsonl` (a Hadoop glob would match the other)"),
        _name_case("name_braces", ["{x1,y}.jsonl"], "`{x1,y}.jsonl` (a glob alternation)"),
        _name_case("name_wildcards", ["any*?.jsonl"], "`*` and `?` in a name"),
        _name_case("name_comma", ["a,b.jsonl"], "a comma in a name (Hadoop splits path lists at commas)"),
        _name_case("name_colon", ["events-2024-03-02T10:00.jsonl"], "a colon in a name (not a valid Hadoop path)"),
        _name_case("name_space_non_ascii", ["caf\u00e9 d\u00e9j\u00e0 vu.jsonl"], "spaces and non-ASCII letters in a name"),
        Case("name_odd_gz_csv", "a `.jsonl.gz` and a `.csv` with glob characters in their names",
             "read literally on the driver (gunzipped; CSV header dropped); records accepted",
             [File("odd[1].jsonl.gz", gzip.compress((ev("oddgz-1") + "\n").encode()), {1: ok("oddgz-1")}),
              text_file("odd{1},x.csv", [("user_id,item_id,ts,event", None),
                                         ("oddcsv-1,i1,2024-03-02T10:00:00Z,purchase", ok("oddcsv-1"))])]),
        Case("name_odd_parquet", "a Parquet file named `part[0] {x},y:z \u00e9.parquet` beside a plainly named one",
             "read literally (pyarrow on the driver); the same column types and raw JSON as Spark's reader; records accepted",
             [_parquet_events("part[0] {x},y:z \u00e9.parquet", "pq-odd"), _parquet_events("plain.parquet", "pq-plain")]),
        Case("non_utf8", "bytes that are not UTF-8 inside a user id", f"quarantined: {INVALID_TEXT}",
             [text_file("latin1.jsonl", [(ev("l1-ok"), ok("l1-ok")),
                                         (b'{"user_id": "caf\xe9", "item_id": "i1", "ts": "2024-03-02T10:00:00Z"}', bad(INVALID_TEXT)),
                                         (b'{"user_id": "caf\xe8", "item_id": "i1", "ts": "2024-03-02T10:00:00Z"}', bad(INVALID_TEXT))])]),
        Case("invalid_json", "a line that is not JSON, and JSON that is not an object",
             "quarantined: malformed JSON",
             [text_file("badjson.jsonl", [('{"user_id": "ij-1", "item_id": ', bad("malformed JSON")),
                                          ('["ij-2", "i1"]', bad("malformed JSON: a list, not an object")),
                                          ("'single quotes'", bad("malformed JSON"))])]),
        Case("truncated_last_line", "a file cut in the middle of its last record (no final newline)",
             "earlier lines accepted; the cut line quarantined: malformed JSON",
             [text_file("cut.jsonl", [(ev("cut-1"), ok("cut-1")), (ev("cut-2")[:25], bad("malformed JSON"))], last_end=False)]),
        Case("empty_and_blank", "an empty file; a file of blank and whitespace-only lines",
             "read; no records (blank lines are layout)",
             [File("empty.jsonl"), text_file("blank.jsonl", [("", None), ("   ", None), ("\t", None), ("", None)])]),
        Case("bom", "a UTF-8 byte-order mark at the start of a JSON file, a CSV file and an odd-named JSON file",
             "read; the mark is not part of line 1; records accepted",
             [text_file("bom.jsonl", [(ev("bom-1"), ok("bom-1"))], head=b"\xef\xbb\xbf"),
              text_file("bom[1].jsonl", [(ev("bom-2"), ok("bom-2"))], head=b"\xef\xbb\xbf"),
              text_file("bom.csv", [("user_id,item_id,ts", None), ("bom-3,i1,2024-03-02T10:00:00Z", ok("bom-3", event="click"))],
                        head=b"\xef\xbb\xbf")]),
        Case("crlf", "Windows line ends (CRLF)", "read; lines cut at CRLF, no \\r in raw; records accepted",
             [text_file("crlf.jsonl", _good_pair("crlf"), end=b"\r\n")]),
        Case("separators_in_values", "\\x85 (NEL), U+2028 and \\x0c inside values, through Hadoop and the driver",
             "one record per line (never cut there); NEL and U+2028 accepted in an id; a raw \\x0c in a JSON string "
             "quarantined: malformed JSON",
             [text_file(name, [(ev(f"{p}-nel\x85x"), ok(f"{p}-nel\x85x")), (ev(f"{p}-ls\u2028x"), ok(f"{p}-ls\u2028x")),
                               # json.dumps would escape it as \f: the raw character is written instead
                               (ev(f"{p}-ffx").replace("ffx", "ff\x0cx"), bad("malformed JSON: Invalid control character"))])
              for p, name in (("sep", "separators.jsonl"), ("sepd", "separators[d].jsonl"))]),
        Case("id_list", "a user id that is a list", "quarantined: user_id must be a string or an integer, got a list",
             [text_file("id_list.jsonl", [(ev(["u1", "u2"]), bad("user_id must be a string or an integer, got a list"))])]),
        Case("id_object", "an item id that is an object", "quarantined: item_id must be a string or an integer, got an object",
             [text_file("id_object.jsonl", [(ev("ido-1", {"id": 1}), bad("item_id must be a string or an integer, got an object"))])]),
        Case("id_bool", "a user id that is a boolean", "quarantined: user_id must be a string or an integer, got a boolean",
             [text_file("id_bool.jsonl", [(ev(True), bad("user_id must be a string or an integer, got a boolean"))])]),
        Case("id_float", "a fractional number as an item id", "quarantined: item_id must be a string or an integer, got a number",
             [text_file("id_float.jsonl", [(ev("idf-1", 2.5), bad("item_id must be a string or an integer, got a number"))])]),
        Case("id_integral_float", "an id written as an integral number (`7001.0`, as pandas exports integers)",
             "accepted as the integer (`7001`)", [text_file("id_intfloat.jsonl", [(ev(7001.0), ok("7001"))])]),
        Case("id_blank_or_padded", "a user id of spaces; a user id with spaces around it",
             "blank: quarantined (missing or empty user_id); padded: accepted stripped",
             [text_file("id_space.jsonl", [(ev("   "), bad("missing or empty user_id")), (ev("  pad-1 "), ok("pad-1"))])]),
        Case("nfc_nfd", "the composed and the decomposed spelling of one user id, same event",
             "one user (NFC): the first accepted, the second quarantined as a duplicate event",
             [text_file("nfc.jsonl", [(ev("caf\u00e9-u"), ok("caf\u00e9-u")), (ev(nfd), bad("duplicate event"))])]),
        Case("event_type", "an event name that is a number, a list, null; an unknown event name",
             "number / list: quarantined (event must be a string); null: accepted as `click`; `dislike`: accepted "
             "(in silver, in no sequence or slate: the build counts it under unused_events)",
             [text_file("event_type.jsonl", [(ev("et-1", event=5), bad("event must be a string, got an integer")),
                                             (ev("et-2", event=["click"]), bad("event must be a string, got a list")),
                                             (ev("et-3", event=None), ok("et-3", event="click")),
                                             (ev("et-4", event="Dislike"), ok("et-4", event="dislike"))])]),
        Case("missing_fields", "a record without item_id; an empty object", "quarantined: missing field(s)",
             [text_file("missing.jsonl", [(json.dumps({"user_id": "mf-1", "ts": "2024-03-02T10:00:00Z"}), bad("missing field: item_id")),
                                          ("{}", bad("missing fields: user_id, item_id, ts"))])]),
        Case("null_fields", "user_id null; ts null; ts empty", "quarantined: missing field",
             [text_file("nulls.jsonl", [(ev(None), bad("missing field: user_id")), (ev("nf-2", ts=None), bad("missing field: ts")),
                                        (ev("nf-3", ts=""), bad("missing field: ts"))])]),
        Case("timestamps", "negative epoch, year 1, year 9999, 1e300, 30 days ahead, `yesterday`",
             "quarantined: absurd timestamp (before 1990-01-01) / (too far in the future) / unparseable timestamp",
             [text_file("ts.jsonl", [(ev("ts-1", ts=-1), bad("absurd timestamp (before 1990-01-01)")),
                                     (ev("ts-2", ts="0001-01-01T00:00:00Z"), bad("absurd timestamp (before 1990-01-01)")),
                                     (ev("ts-3", ts="9999-12-31T00:00:00Z"), bad("absurd timestamp (too far in the future)")),
                                     (ev("ts-4", ts=1e300), bad("unparseable timestamp")),
                                     (ev("ts-5", ts=future.isoformat() + "Z"), bad("absurd timestamp (too far in the future)")),
                                     (ev("ts-6", ts="yesterday"), bad("unparseable timestamp")),
                                     (ev("ts-7", ts=int(_ts(10).replace(tzinfo=timezone.utc).timestamp() * 1000)),
                                      ok("ts-7"))])]),
        Case("unknown_item", "an event for an item the catalog does not have", "quarantined: event for an item with no metadata",
             [text_file("ghost.jsonl", [(ev("gh-1", "ghost"), bad("event for an item with no metadata"))])]),
        Case("duplicate_in_batch", "the same event twice, in two files", "the first (by file, line) accepted, the other "
             "quarantined: duplicate event",
             [text_file("dup-a.jsonl", [(ev("dup-1"), ok("dup-1"))]), text_file("dup-b.jsonl", [(ev("dup-1"), bad("duplicate event"))])]),
        Case("csv_rows", "CSV rows with too few fields, an unclosed quote; a CSV file whose first line is blank",
             "quarantined: expected N CSV fields / malformed CSV / CSV file has no header line",
             [text_file("rows.csv", [("user_id,item_id,ts,event", None), ("csv-1,i1,2024-03-02T10:00:00Z,view", ok("csv-1", event="view")),
                                     ("csv-2,i1", bad("expected 4 CSV fields")), ('"csv-3,i1,2024-03-02T10:00:00Z,view', bad("malformed CSV"))]),
              text_file("headless.csv", [("", None), ("csv-4,i1,2024-03-02T10:00:00Z,view", bad("CSV file has no header line"))])]),
        Case("parquet_ids", "Parquet ids as pandas floats (`501.0`, `501.5`) and as a list column",
             "501.0: accepted as `501`; 501.5 and the list: quarantined (must be a string or an integer)",
             [parquet_file("floats.parquet", {"user_id": [501.0, 501.5], "item_id": ["i1", "i1"], "ts": ["2024-03-02T10:00:00Z"] * 2},
                           records={1: ok("501", event="click"), 2: bad("user_id must be a string or an integer, got a number")}),
              parquet_file("lists.parquet", {"user_id": [["a", "b"]], "item_id": ["i1"], "ts": ["2024-03-02T10:00:00Z"]},
                           records={1: bad("user_id must be a string or an integer, got a list")})]),
        Case("items_bad", "item records: a list id, a repeated item, an id with bad bytes, no id, broken JSON",
             "quarantined (items): item_id must be ..., duplicate item record (a later one wins), bytes that are not valid, "
             "missing field, malformed JSON; the later record of the repeated item accepted",
             [text_file("items-bad.jsonl", [(json.dumps({"item_id": ["i1", "i2"]}), bad("item_id must be a string or an integer, got a list")),
                                            (json.dumps({"item_id": "i10", "title": "Old"}), bad("duplicate item record (a later one wins)")),
                                            (json.dumps({"item_id": "i10", "title": "New"}), Rec("published", key=("i10",))),
                                            (b'{"item_id": "caf\xe9-item"}', bad(INVALID_TEXT)),
                                            (json.dumps({"title": "no id"}), bad("missing field: item_id")),
                                            ('{"item_id": ', bad("malformed JSON"))], kind="items")]),
        Case("logged_slates", "logged slates: clicks without impressions, one slate id for two users, a position twice, "
             "a position that is not an integer or out of range, only a non-positive event",
             "ingest: events accepted (positions quarantined: position is not an integer / out of range); build: each "
             "bad slate rejected with its reason, the good one kept", [_slates_file()],
             build={"sl-ok": None, "sl-noimp": "slate has clicks but no impressions",
                    "sl-shared": "slate id logged for more than one user", "sl-pos": "slate lists a position twice",
                    "sl-dislike": "slate without the clicked item"}),
        Case("corrupt_gzip", "a `.gz` that is not gzip; a gzip stream cut short", "failed: corrupt gzip file (one quarantine "
             "row of kind file); the other files ingested",
             [File("broken.jsonl.gz", b"\x1f\x8b\x08\x00 not a gzip stream" * 4, fate="failed", why="corrupt gzip file"),
              File("cut.jsonl.gz", good_gz[:-30], fate="failed", why="corrupt gzip file")]),
        Case("corrupt_parquet", "a Parquet file cut in half", "failed: corrupt parquet file (one quarantine row of kind file)",
             [_torn_parquet()]),
        Case("symlinks", "a symlink to a file outside the input folder; a symlink to a file inside it",
             "outside: skipped (symlink to a file outside the input folder); inside: its target read once",
             [File("leak.jsonl", link="../outside/secret.jsonl", fate="skipped", why=OUTSIDE),
              File("alias.jsonl", link="x1.jsonl", fate="read")]),
        Case("hidden_and_temporary", "`.hidden.jsonl`, `_tmp.jsonl`, `_SUCCESS`, `_temporary/part-0.jsonl`, `.part-0.crc`",
             f"skipped: {HIDDEN}",
             [File(n, (ev("hidden") + "\n").encode(), fate="skipped", why=HIDDEN)
              for n in (".hidden.jsonl", "_tmp.jsonl", "_SUCCESS", "_temporary/part-0.jsonl", ".part-0.crc")]),
        Case("unsupported_extension", "`notes.txt`, `events.jsonl.bz2`, `events.xml`", f"skipped: {NOT_DATA}",
             [File(n, b"whatever\n", fate="skipped", why=NOT_DATA) for n in ("notes.txt", "events.jsonl.bz2", "events.xml")]),
    ]
    if unreadable:
        cases.append(Case("unreadable", "a data file without read permission (chmod 000; root reads it anyway, so the class "
                          "is left out when the tests run as root)", "failed: unreadable (one quarantine row of kind file)",
                          [File("locked.jsonl", (ev("locked-1") + "\n").encode(), fate="failed", why="unreadable", mode=0)]))
    return cases


def _slates_file() -> File:
    t = lambda s: (D1 + timedelta(hours=20, seconds=s)).isoformat() + "Z"  # noqa: E731
    lines: list[tuple[str, Rec | None]] = []

    def shown(sid, user, items, positions=(1, 2, 3)):
        for p, i in zip(positions, items):
            lines.append((ev(user, i, t(0), "impression", slate_id=sid, position=p), ok(user, i, D1 + timedelta(hours=20), "impression")))

    def event(sid, user, item, name="click"):
        lines.append((ev(user, item, t(5), name, slate_id=sid), ok(user, item, D1 + timedelta(hours=20, seconds=5), name)))

    shown("sl-ok", "sl-u1", ["i1", "i2", "i3"])
    event("sl-ok", "sl-u1", "i2")
    event("sl-noimp", "sl-u2", "i1")
    shown("sl-shared", "sl-u3", ["i1", "i2", "i3"])
    event("sl-shared", "sl-u4", "i3")
    shown("sl-pos", "sl-u5", ["i1", "i2", "i3"], positions=(1, 2, 2))
    event("sl-pos", "sl-u5", "i1")
    shown("sl-dislike", "sl-u6", ["i4", "i5", "i6"])
    event("sl-dislike", "sl-u6", "i5", "dislike")
    lines.append((ev("sl-u7", "i1", t(0), "impression", slate_id="sl-badpos", position="top"), bad("position is not an integer")))
    lines.append((ev("sl-u7", "i2", t(0), "impression", slate_id="sl-badpos", position=2**40), bad("position out of range")))
    return text_file("slates.jsonl", lines)


def _torn_parquet() -> File:
    full = parquet_file("x", {"user_id": [f"torn-{n}" for n in range(500)], "item_id": ["i1"] * 500})
    return File("torn.parquet", full.content[: len(full.content) // 2], fate="failed", why="corrupt parquet file")


def write(cases: list[Case], landing: Path) -> None:
    """Lay the corpus out under `landing` (and the outside target of the leaking symlink beside it)."""
    outside = landing.parent / "outside"
    outside.mkdir(parents=True, exist_ok=True)
    (outside / "secret.jsonl").write_text(ev("secret") + "\n")
    landing.mkdir(parents=True, exist_ok=True)
    for case in cases:
        for f in case.files:
            target = landing / f.path
            target.parent.mkdir(parents=True, exist_ok=True)
            if f.link is not None:
                target.symlink_to(f.link)
            else:
                target.write_bytes(f.content)
            if f.mode is not None:
                target.chmod(f.mode)


def markdown(cases: list[Case]) -> str:
    """The docs table: every class, its input and its outcome."""
    rows = ["| class | hostile input | what the ETL does |", "|---|---|---|"]
    for c in cases:
        rows.append(f"| `{c.name}` | {c.input} | {c.outcome} |".replace("\n", " "))
    return "\n".join(rows) + "\n"


# ---------------------------------------------------------------------------------------------------
# amazon-p5: sequential_data.txt ("user item item ...") + items.jsonl
# ---------------------------------------------------------------------------------------------------


def p5_corpus() -> tuple[list[tuple[bytes, list[Rec]]], list[tuple[bytes, Rec]]]:
    """(sequence lines with one expected outcome per item token, item lines with theirs) for amazon-p5.
    A P5 record's key is (user, item, 2000-01-01 + position seconds, "purchase")."""
    p5 = lambda u, i, pos: Rec("accepted", key=(u, i, datetime(2000, 1, 1) + timedelta(seconds=pos), "purchase"))  # noqa: E731
    seq = [
        (b"\xef\xbb\xbfpu1 1 2 3", [p5("pu1", "1", 1), p5("pu1", "2", 2), p5("pu1", "3", 3)]),  # a BOM before line 1
        (b"pu2", [bad("sequence line without items")]),
        (b"pu3 1 x!y 2", [p5("pu3", "1", 1), bad("item id 'x!y' is not an identifier"), p5("pu3", "2", 3)]),
        (b"pu4 1 \xff2", [p5("pu4", "1", 1), bad(INVALID_TEXT)]),  # a bad byte in one token: that record only
        (b"p\xffu5 1 2", [bad(INVALID_TEXT), bad(INVALID_TEXT)]),  # in the user: every record of the line
        (b"pu6 1 999", [p5("pu6", "1", 1), bad("event for an item with no metadata")]),
        (b"pu1 1 2 3", [bad("duplicate event")] * 3),  # the same user line again
        (b"pu7 3 1\r", [p5("pu7", "3", 1), p5("pu7", "1", 2)]),  # a CRLF line end
    ]
    items = [
        (json.dumps({"item_id": "1", "title": "One"}).encode(), Rec("accepted", key=("1",))),
        (json.dumps({"item_id": 2, "title": "Two", "brand": "B"}).encode(), Rec("accepted", key=("2",))),
        (json.dumps({"item_id": 3.0, "title": "Three"}).encode(), Rec("accepted", key=("3",))),
        (json.dumps({"item_id": ["4"]}).encode(), bad("item_id must be a string or an integer, got a list")),
        (json.dumps({"item_id": "5", "brand": ["A", "B"]}).encode(), bad("brand must be a string, got a list")),
        (b'{"item_id": "6", ', bad("malformed JSON")),
        (b"[1, 2]", bad("malformed JSON: not an object")),
    ]
    return seq, items


if __name__ == "__main__":  # the table for docs/tables.md (every class, the unreadable one included)
    print(markdown(corpus(datetime.now(timezone.utc), unreadable=True)), end="")

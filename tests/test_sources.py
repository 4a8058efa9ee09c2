"""Source readers: pure per-record parsers (table-driven) and one real-Spark read per reader."""

from __future__ import annotations

import gzip
import json
from datetime import datetime

import pytest
from conftest import dataset

from gr2.etl.io import InputError
from gr2.etl.sources import amazon_raw, events, get_reader, movielens

# Column positions in PARSED_INTERACTION / PARSED_ITEM tuples.
I_USER, I_ITEM, I_TS, I_EVENT, I_SLATE, I_POS, I_REASON = 4, 5, 6, 7, 8, 9, 10
M_ITEM, M_TITLE, M_CATS, M_BRAND, M_REASON = 4, 5, 6, 7, 8


def _reason_ok(reason, expected):
    """expected None: parsed; else the reason starts with `expected`."""
    if expected is None:
        assert reason is None
    else:
        assert reason is not None and reason.startswith(expected), reason


# --------------------------------------------------------------------------------------------------
# amazon-raw
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, user, item, ts, reason",
    [
        ('{"reviewerID": "A1", "asin": "B01", "overall": 5.0, "unixReviewTime": 1400000000, "reviewTime": "05 13, 2014"}',
         "A1", "B01", datetime(2014, 5, 13, 16, 53, 20), None),
        ('{"reviewerID": " A1 ", "asin": "B01", "reviewTime": "01 30, 2014"}', "A1", "B01", datetime(2014, 1, 30), None),
        ('{"reviewerID": "A1", "asin": "B01", "unixReviewTime": 14000', None, None, None, "malformed"),
        ('[1, 2]', None, None, None, "malformed record: a list"),
        ('{"asin": "B01", "unixReviewTime": 1400000000}', None, "B01", datetime(2014, 5, 13, 16, 53, 20), "missing field: reviewerID"),
        ('{"reviewerID": "A1", "asin": "B01"}', "A1", "B01", None, "missing field: unixReviewTime"),
        ('{"reviewerID": "A1", "asin": "B01", "unixReviewTime": "soon"}', "A1", "B01", None, "unparseable timestamp: "),
        ('{"reviewerID": "A1", "asin": "B01", "reviewTime": "yesterday"}', "A1", "B01", None, "unparseable timestamp: "),
    ],
)  # fmt: skip
def test_amazon_raw_review_lines(raw, user, item, ts, reason):
    row = amazon_raw.parse_review_line("f", 7, raw)
    assert row[:4] == ("amazon-raw", "f", 7, raw) and len(row) == 11
    assert (row[I_USER], row[I_ITEM], row[I_TS]) == (user, item, ts)
    _reason_ok(row[I_REASON], reason)
    if reason is None:
        assert row[I_EVENT] == "review"


@pytest.mark.parametrize(
    "raw, item, title, cats, brand, reason",
    [
        ('{"asin": "B01", "title": "Tom &amp; Jerry", "categories": [["Beauty", "Nails"], ["Beauty", "Tools &amp; Kits"]], "brand": "X"}',
         "B01", "Tom & Jerry", ["Beauty", "Nails", "Tools & Kits"], "X", None),
        ("{'asin': 'B02', 'title': 'It\\'s Python', 'salesRank': {'Beauty': 3}, 'categories': [['Beauty']]}",
         "B02", "It's Python", ["Beauty"], None, None),
        ('{"asin": "B03", "categories": [["Beauty"]]}', "B03", None, ["Beauty"], None, None),
        ("{'asin': 'B04', 'title': ", None, None, None, None, "malformed record: neither JSON"),
        ('{"title": "no id"}', None, "no id", [], None, "missing field: asin"),
    ],
)  # fmt: skip
def test_amazon_raw_meta_lines(raw, item, title, cats, brand, reason):
    row = amazon_raw.parse_meta_line("f", 1, raw)
    assert len(row) == 9
    assert (row[M_ITEM], row[M_TITLE], row[M_BRAND]) == (item, title, brand)
    if cats is not None:
        assert row[M_CATS] == cats
    _reason_ok(row[M_REASON], reason)


# --------------------------------------------------------------------------------------------------
# movielens
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "parse, raw, user, item, ts, reason",
    [
        (movielens.parse_100k_rating, "196\t242\t3\t881250949", "196", "242", datetime(1997, 12, 4, 15, 55, 49), None),
        (movielens.parse_100k_rating, "196\t242\t3", None, None, None, "expected 4 tab-separated fields"),
        (movielens.parse_100k_rating, "196\t242\t3\tlater", "196", "242", None, "unparseable timestamp: 'later'"),
        (movielens.parse_100k_rating, "196\t242\tx\t881250949", "196", "242", datetime(1997, 12, 4, 15, 55, 49), "unparseable rating"),
        (movielens.parse_1m_rating, "1::1193::5::978300760", "1", "1193", datetime(2000, 12, 31, 22, 12, 40), None),
        (movielens.parse_1m_rating, "1::1193::5", None, None, None, 'expected 4 "::"-separated fields'),
    ],
)  # fmt: skip
def test_movielens_rating_lines(parse, raw, user, item, ts, reason):
    row = parse("f", 1, raw)
    assert (row[I_USER], row[I_ITEM], row[I_TS]) == (user, item, ts)
    _reason_ok(row[I_REASON], reason)
    if reason is None:
        assert row[I_EVENT] == "rating"


_FLAGS = "|".join(["0", "1", "1"] + ["0"] * 13 + ["1", "0", "0"])  # Action, Adventure, Thriller


@pytest.mark.parametrize(
    "parse, raw, item, title, cats, reason",
    [
        (movielens.parse_100k_item, f"2|GoldenEye (1995)|01-Jan-1995||http://x|{_FLAGS}", "2", "GoldenEye (1995)",
         ["Action", "Adventure", "Thriller"], None),
        (movielens.parse_100k_item, "2|GoldenEye (1995)|01-Jan-1995", None, None, None, "expected 24 '|'-separated fields"),
        (movielens.parse_100k_item, f"2|x|||u|{_FLAGS[:-1]}7", "2", "x", None, "genre flags must be 0 or 1"),
        (movielens.parse_1m_item, "1::Toy Story (1995)::Animation|Children's|Comedy", "1", "Toy Story (1995)",
         ["Animation", "Children's", "Comedy"], None),
        (movielens.parse_1m_item, "1::Toy Story (1995)", None, None, None, 'expected 3 "::"-separated fields'),
    ],
)  # fmt: skip
def test_movielens_item_lines(parse, raw, item, title, cats, reason):
    row = parse("f", 1, raw)
    assert (row[M_ITEM], row[M_TITLE], row[M_BRAND]) == (item, title, None)
    if cats is not None:
        assert row[M_CATS] == cats
    _reason_ok(row[M_REASON], reason)


# --------------------------------------------------------------------------------------------------
# events
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [
        ("2024-03-01T10:00:00Z", datetime(2024, 3, 1, 10)),
        ("2024-03-01T12:00:00+02:00", datetime(2024, 3, 1, 10)),
        ("2024-03-01T05:30:00-04:30", datetime(2024, 3, 1, 10)),
        ("2024-03-01 10:00:00.250", datetime(2024, 3, 1, 10, 0, 0, 250000)),
        ("2024-03-01", datetime(2024, 3, 1)),
        (1709287200, datetime(2024, 3, 1, 10)),  # epoch seconds
        (1709287200500, datetime(2024, 3, 1, 10, 0, 0, 500000)),  # epoch milliseconds
        ("1709287200", datetime(2024, 3, 1, 10)),
        ("1709287200000", datetime(2024, 3, 1, 10)),
        (1709287200.5, datetime(2024, 3, 1, 10, 0, 0, 500000)),
        ("yesterday", None),
        ("2024-13-01T00:00:00", None),
        (True, None),
        ({"t": 1}, None),
        (float("nan"), None),
        (1e300, None),
    ],
)
def test_event_timestamps(value, expected):
    assert events.parse_timestamp(value) == expected


@pytest.mark.parametrize(
    "raw, user, item, ts, event, slate, pos, reason",
    [
        ('{"user_id": "u1", "item_id": "i1", "ts": "2024-03-01T10:00:00Z", "event": "Purchase"}',
         "u1", "i1", datetime(2024, 3, 1, 10), "purchase", None, None, None),
        ('{"user_id": 7, "item_id": 9, "ts": 1709287200000}', "7", "9", datetime(2024, 3, 1, 10), "click", None, None, None),
        ('{"user_id": "u1", "item_id": "i1", "ts": 1709287200, "event": "impression", "slate_id": "s1", "position": 3}',
         "u1", "i1", datetime(2024, 3, 1, 10), "impression", "s1", 3, None),
        ('{"user_id": "u1", "item_id": "i1", "ts": ', None, None, None, None, None, None, "malformed JSON"),
        ('"just text"', None, None, None, None, None, None, "malformed JSON: a str, not an object"),
        ('{"user_id": "u1", "ts": 1709287200}', "u1", None, datetime(2024, 3, 1, 10), "click", None, None, "missing field: item_id"),
        ('{"user_id": "u1"}', "u1", None, None, "click", None, None, "missing fields: item_id, ts"),
        ('{"user_id": "u1", "item_id": "i1", "ts": "31/12/2024"}', "u1", "i1", None, "click", None, None,
         "unparseable timestamp: '31/12/2024'"),
        ('{"user_id": "u1", "item_id": "i1", "ts": 1709287200, "position": "top"}', "u1", "i1", datetime(2024, 3, 1, 10),
         "click", None, None, "position is not an integer"),
        # ids are strings or integers, nothing else; text ids are NFC
        ('{"user_id": ["u01", "u02"], "item_id": "i1", "ts": 1709287200}', None, "i1", datetime(2024, 3, 1, 10), "click",
         None, None, 'user_id must be a string or an integer, got a list ["u01", "u02"]'),
        ('{"user_id": {"id": 1}, "item_id": "i1", "ts": 1709287200}', None, "i1", datetime(2024, 3, 1, 10), "click",
         None, None, 'user_id must be a string or an integer, got an object {"id": 1}'),
        ('{"user_id": true, "item_id": "i1", "ts": 1709287200}', None, "i1", datetime(2024, 3, 1, 10), "click",
         None, None, "user_id must be a string or an integer, got a boolean true"),
        ('{"user_id": "u1", "item_id": 2.5, "ts": 1709287200}', "u1", None, datetime(2024, 3, 1, 10), "click",
         None, None, "item_id must be a string or an integer, got a number 2.5"),
        ('{"user_id": "cafe\u0301", "item_id": 9.0, "ts": 1709287200}', "caf\u00e9", "9", datetime(2024, 3, 1, 10), "click",
         None, None, None),
        ('{"user_id": "u1", "item_id": "i1", "ts": 1709287200, "event": 123}', "u1", "i1", datetime(2024, 3, 1, 10), "click",
         None, None, "event must be a string, got an integer 123"),
        ('{"user_id": "u1", "item_id": "i1", "ts": 1709287200, "event": ["click"]}', "u1", "i1", datetime(2024, 3, 1, 10),
         "click", None, None, 'event must be a string, got a list ["click"]'),
    ],
)  # fmt: skip
def test_event_json_lines(raw, user, item, ts, event, slate, pos, reason):
    row = events.parse_event_json("f", 2, raw)
    assert len(row) == 11 and row[:4] == ("events", "f", 2, raw)
    assert (row[I_USER], row[I_ITEM], row[I_TS], row[I_EVENT], row[I_SLATE], row[I_POS]) == (user, item, ts, event, slate, pos)
    _reason_ok(row[I_REASON], reason)


HEADER = ["user_id", "item_id", "ts", "event", "position"]


@pytest.mark.parametrize(
    "raw, header, user, ts, pos, reason",
    [
        ("u1,i1,2024-03-01T12:00:00+02:00,view,", HEADER, "u1", datetime(2024, 3, 1, 10), None, None),
        ('"u,1",i1,1709287200,,2', HEADER, "u,1", datetime(2024, 3, 1, 10), 2, None),
        ("u1,i1,1709287200", HEADER, None, None, None, "expected 5 CSV fields"),
        ("u1,i1,1709287200,view,1,extra", HEADER, None, None, None, "expected 5 CSV fields"),
        ('u1,"i1,1709287200,view,1', HEADER, None, None, None, "malformed CSV"),
        ("u1,i1,1709287200,view,1", None, None, None, None, "CSV file has no header line"),
        ("u1,i1,,view,1", HEADER, "u1", None, 1, "missing field: ts"),
    ],
)
def test_event_csv_lines(raw, header, user, ts, pos, reason):
    row = events.parse_event_csv("f", 3, raw, header)
    assert (row[I_USER], row[I_TS], row[I_POS]) == (user, ts, pos)
    _reason_ok(row[I_REASON], reason)
    if reason is None:
        assert row[I_EVENT] in ("view", "click")


@pytest.mark.parametrize(
    "parse, raw, item, title, cats, reason",
    [
        (events.parse_item_json, '{"item_id": "i1", "title": "Lamp", "categories": ["Home", "Light"], "brand": "B"}',
         "i1", "Lamp", ["Home", "Light"], None),
        (events.parse_item_json, '{"item_id": 5, "categories": "Home|Light"}', "5", None, ["Home", "Light"], None),
        (events.parse_item_json, '{"title": "x"}', None, "x", [], "missing field: item_id"),
        (events.parse_item_json, "{oops", None, None, None, "malformed JSON"),
        (lambda f, n, r: events.parse_item_csv(f, n, r, ["item_id", "title", "categories", "brand"]),
         'i2,"Desk, oak",Home|Office|Home,', "i2", "Desk, oak", ["Home", "Office"], None),
        (lambda f, n, r: events.parse_item_csv(f, n, r, ["item_id", "categories"]),
         'i3,"[""Home"", ""Office""]"', "i3", None, ["Home", "Office"], None),
        (lambda f, n, r: events.parse_item_csv(f, n, r, ["item_id", "title"]), "i2", None, None, None, "expected 2 CSV fields"),
    ],
)  # fmt: skip
def test_event_item_lines(parse, raw, item, title, cats, reason):
    row = parse("f", 1, raw)
    assert (row[M_ITEM], row[M_TITLE]) == (item, title)
    if cats is not None:
        assert row[M_CATS] == cats
    _reason_ok(row[M_REASON], reason)


def test_event_files_are_classified_by_name_and_folder(tmp_path):
    for rel in ["events.jsonl", "day=1/clicks.csv.gz", "items.jsonl", "Items_2024.csv", "items/part-0000.json",
                "imp.parquet/part-0.parquet", "imp.parquet/_SUCCESS", "imp.parquet/.part-0.parquet.crc",
                "_temporary/x.jsonl", "README.md"]:  # fmt: skip
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("")
    files = events.classify_files(tmp_path)
    rel = {k: sorted(str(__import__("pathlib").Path(f).relative_to(tmp_path.resolve())) for f, _ in v) for k, v in files.items()}
    assert rel == {
        "interactions": ["day=1/clicks.csv.gz", "events.jsonl", "imp.parquet/part-0.parquet"],
        "items": ["Items_2024.csv", "items.jsonl", "items/part-0000.json"],
        "skipped": ["README.md", "_temporary/x.jsonl", "imp.parquet/.part-0.parquet.crc", "imp.parquet/_SUCCESS"],
    }
    with pytest.raises(InputError, match="does not exist"):
        events.classify_files(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="found none"):
        events.classify_files(tmp_path / "empty")


def test_readers_refuse_missing_input(tmp_path):
    for source in ("amazon-raw", "movielens", "events"):
        with pytest.raises(InputError):
            get_reader(source)(None, str(tmp_path / "absent"))
    (tmp_path / "u.data").write_text("1\t2\t3\t4\n")
    with pytest.raises(InputError, match="u.item"):
        movielens.read(None, str(tmp_path))


# --------------------------------------------------------------------------------------------------
# Readers on Spark
# --------------------------------------------------------------------------------------------------


def _by_line(rows):
    return {(r["file"].rsplit("/", 1)[-1], r["line"]): r for r in rows}


def _line_keys(lines: dict) -> dict:
    """{kind: {(file name, line)}} of a batch's `lines`, in one Spark job (every job costs ~1 s here)."""
    from functools import reduce

    from pyspark.sql import functions as F

    both = reduce(lambda a, b: a.unionByName(b), [df.select(F.lit(k).alias("kind"), "file", "line") for k, df in lines.items()])
    out: dict = {k: set() for k in lines}
    for r in both.collect():
        out[r.kind].add((r.file.rsplit("/", 1)[-1], r.line))
    return out


def test_amazon_raw_reader(spark, tmp_path):
    reviews = [
        json.dumps({"reviewerID": "A1", "asin": "B01", "overall": 5.0, "unixReviewTime": 1400000000}),
        json.dumps({"reviewerID": "A2", "asin": "B02", "unixReviewTime": 1400086400}),
        '{"reviewerID": "A3", "asin": ',
        "",  # blank lines are layout, not records
        json.dumps({"reviewerID": "A4", "asin": "B01", "unixReviewTime": "x"}),
    ]
    with gzip.open(tmp_path / "reviews_Beauty_5.json.gz", "wt", encoding="utf-8") as fh:
        fh.write("\n".join(reviews) + "\n")
    meta = [
        json.dumps({"asin": "B01", "title": "Caf\u00e9 &amp; Cr\u00e8me", "categories": [["Beauty", "Skin"], ["Beauty"]]}),
        "{'asin': 'B02', 'categories': [['Beauty', 'Hair']], 'brand': 'Acme'}",
        "not a record",
    ]
    (tmp_path / "meta_Beauty.json").write_text("\n".join(meta) + "\n", encoding="utf-8")
    (tmp_path / "README.txt").write_text("ignored")

    batch = amazon_raw.read(spark, str(tmp_path))
    assert batch.source == "amazon-raw"
    inter = _by_line(batch.interactions.collect())
    items = _by_line(batch.items.collect())
    lines = _line_keys(batch.lines)
    assert set(inter) == lines["interactions"] and len(inter) == 4
    assert set(items) == lines["items"] and len(items) == 3

    a1 = inter[("reviews_Beauty_5.json.gz", 1)]
    assert (a1.user_id, a1.item_id, a1.ts, a1.event, a1.reason) == ("A1", "B01", datetime(2014, 5, 13, 16, 53, 20), "review", None)
    assert inter[("reviews_Beauty_5.json.gz", 3)].reason.startswith("malformed")
    assert inter[("reviews_Beauty_5.json.gz", 5)].reason.startswith("unparseable timestamp")
    assert sum(r.reason is None for r in inter.values()) == 2

    b1, b2, bad = (items[("meta_Beauty.json", n)] for n in (1, 2, 3))
    assert (b1.title, b1.categories, b1.reason) == ("Caf\u00e9 & Cr\u00e8me", ["Beauty", "Skin"], None)
    assert (b2.item_id, b2.title, b2.categories, b2.brand, b2.reason) == ("B02", None, ["Beauty", "Hair"], "Acme", None)
    assert bad.reason.startswith("malformed record")


def test_movielens_1m_reader(spark, tmp_path):
    (tmp_path / "ratings.dat").write_bytes(b"1::1193::5::978300760\n1::661::3::978302109\n2::1193::4\n")
    (tmp_path / "movies.dat").write_bytes(
        "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n661::Misérables, Les (1995)::Drama|Musical\n".encode("latin-1")
    )
    batch = movielens.read(spark, str(tmp_path))
    inter = _by_line(batch.interactions.collect())
    items = {r.item_id: r for r in batch.items.collect()}
    assert len(inter) == 3 and sum(r.reason is None for r in inter.values()) == 2
    assert inter[("ratings.dat", 3)].reason.startswith("expected 4")
    assert inter[("ratings.dat", 1)].ts == datetime(2000, 12, 31, 22, 12, 40)
    assert items["661"].title == "Misérables, Les (1995)" and items["661"].categories == ["Drama", "Musical"]
    assert {k: len(v) for k, v in _line_keys(batch.lines).items()} == {"interactions": 3, "items": 2}


@pytest.mark.dataset
def test_movielens_100k_reader_on_real_data(spark):
    from pyspark.sql import functions as F

    batch = movielens.read(spark, str(dataset("movielens_100k")))
    (inter,) = batch.interactions.agg(
        F.count("*").alias("n"), F.count("reason").alias("bad"), F.min("ts").alias("first"), F.max("user_id").alias("u")
    ).collect()
    assert (inter.n, inter.bad, inter.u) == (100_000, 0, "99")
    assert inter.first.year == 1997
    items = batch.items.collect()
    assert len(items) == 1682 and all(r.reason is None for r in items)
    titles = {r.item_id: r.title for r in items}
    assert any("é" in t for t in titles.values() if t)
    assert titles["543"] == "Misérables, Les (1995)"
    assert next(r for r in items if r.item_id == "1").categories == ["Animation", "Children's", "Comedy"]


def test_events_reader(spark, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "events.jsonl").write_text(
        "\n".join(
            [
                json.dumps({"user_id": "u1", "item_id": "i1", "ts": "2024-03-01T10:00:00Z", "event": "view"}),
                json.dumps({"user_id": "u1", "item_id": "i2", "ts": 1709287260000}),
                '{"user_id": "u2", ',
                json.dumps({"user_id": "u2", "item_id": "i1", "ts": "soon"}),
            ]
        )
        + "\n"
    )
    with gzip.open(tmp_path / "clicks.csv.gz", "wt") as fh:
        fh.write("user_id,item_id,ts,event\nu3,i2,2024-03-01T12:00:00+02:00,purchase\nu3,i1\n")
    imp = tmp_path / "impressions.parquet"
    imp.mkdir()
    table = pa.table(
        {
            "user_id": ["u1", "u1", "u2"],
            "item_id": ["i1", "i2", None],
            "ts": pa.array([datetime(2024, 3, 1, 9), datetime(2024, 3, 1, 9), datetime(2024, 3, 1, 9)], pa.timestamp("ms", tz="UTC")),
            "event": ["impression"] * 3,
            "slate_id": ["s1", "s1", "s2"],
            "position": pa.array([1, 2, 1], pa.int32()),
        }
    )
    pq.write_table(table, imp / "part-00000.parquet")
    (imp / "_SUCCESS").write_text("")
    (imp / ".part-00000.parquet.crc").write_text("x")
    (tmp_path / "items").mkdir()
    (tmp_path / "items" / "part-0000.json").write_text(
        json.dumps({"item_id": "i1", "title": "Lamp", "categories": ["Home", "Light"], "brand": "B"}) + "\n"
    )
    (tmp_path / "items.csv").write_text('item_id,title,categories,brand\ni2,"Desk, oak",Home|Office,\ni3,too,many,fields,here\n')

    batch = events.read(spark, str(tmp_path))
    inter = _by_line(batch.interactions.collect())
    items = _by_line(batch.items.collect())
    lines = _line_keys(batch.lines)
    # one parsed row per record (the CSV headers are not records), and the same records in `lines`
    assert set(inter) == set(lines["interactions"]) and len(inter) == 4 + 2 + 3
    assert set(items) == set(lines["items"]) and len(items) == 1 + 2
    assert ("clicks.csv.gz", 1) not in inter and ("items.csv", 1) not in items

    assert inter[("events.jsonl", 2)].ts == datetime(2024, 3, 1, 10, 1) and inter[("events.jsonl", 2)].event == "click"
    assert inter[("events.jsonl", 3)].reason.startswith("malformed JSON")
    assert inter[("events.jsonl", 4)].reason == "unparseable timestamp: 'soon'"
    c2 = inter[("clicks.csv.gz", 2)]
    assert (c2.user_id, c2.item_id, c2.ts, c2.event, c2.reason) == ("u3", "i2", datetime(2024, 3, 1, 10), "purchase", None)
    assert inter[("clicks.csv.gz", 3)].reason.startswith("expected 4 CSV fields")
    p2 = inter[("part-00000.parquet", 2)]
    assert (p2.item_id, p2.ts, p2.event, p2.slate_id, p2.position, p2.reason) == (
        "i2", datetime(2024, 3, 1, 9), "impression", "s1", 2, None)  # fmt: skip
    assert json.loads(p2.raw)["position"] == 2
    assert inter[("part-00000.parquet", 3)].reason == "missing field: item_id"
    assert sum(r.reason is None for r in inter.values()) == 2 + 1 + 2

    assert items[("part-0000.json", 1)].categories == ["Home", "Light"]
    desk = items[("items.csv", 2)]
    assert (desk.item_id, desk.title, desk.categories, desk.brand, desk.reason) == ("i2", "Desk, oak", ["Home", "Office"], None, None)
    assert items[("items.csv", 3)].reason.startswith("expected 4 CSV fields")


@pytest.mark.parametrize("text, lines", [
    ("a\x85b\nc\x0cd\x1ce\u2028f\n", ["a\x85b", "c\x0cd\x1ce\u2028f"]),  # ordinary characters inside a record
    ("a\r\nb\rc\n\nd", ["a", "b", "c", "", "d"]),  # Hadoop's line ends; a blank line stays a (blank) line
    ("", []),
])
def test_the_non_utf8_reader_cuts_lines_where_hadoops_reader_does(text, lines):
    from gr2.etl.io import split_lines

    assert split_lines(text) == lines


@pytest.mark.parametrize("data, encoding", [
    (b"a\r\nb\rc\n\nd", "utf-8"),
    (b"\xef\xbb\xbfone\r\ntwo\xff\xfe bad\r\r\n\nthree\n", "utf-8"),  # BOM, invalid bytes, CR CR LF
    ("caf\u00e9\r\n\u20ac 5\n".encode("utf-8"), "utf-8"),  # multi-byte characters cut by a chunk
    ("caf\u00e9\rna\u00efve\n".encode("latin-1"), "latin-1"),
    (b"", "utf-8"),
    (b"no newline at the end", "utf-8"),
])
def test_streamed_lines_are_cut_as_split_lines_cuts_the_whole_file_at_every_chunk_size(tmp_path, data, encoding):
    """iter_lines reads a chunk at a time: a \r\n, a multi-byte character or a BOM split between two
    chunks must give the lines (and numbers) the whole-file reader gives. Plain and gzipped."""
    from gr2.etl.io import _decode_file, iter_lines

    plain, packed = tmp_path / "f.txt", tmp_path / "f.txt.gz"
    plain.write_bytes(data)
    packed.write_bytes(gzip.compress(data))
    want = [(n, raw) for _, n, raw in _decode_file((str(plain), data), encoding)]
    for chunk in (1, 2, 3, 5, 1 << 20):
        assert list(iter_lines(str(plain), encoding, chunk)) == want, chunk
        assert list(iter_lines(str(packed), encoding, chunk)) == want, chunk


def test_parsed_lines_through_arrow_equal_hadoops_reader_row_for_row(spark, tmp_path):
    """The events reader parses whole files in Python tasks and hands Spark Arrow batches
    (`parse_text_files`); on hostile lines its rows are those of Hadoop's reader + createDataFrame."""
    from gr2.etl.io import line_records, parse_text_files
    from gr2.etl.schema import PARSED_INTERACTION

    (tmp_path / "a.jsonl").write_bytes(
        b'{"user_id": "u1", "item_id": "i1", "ts": "2026-01-02T03:04:05Z"}\r\n\n  \t\n'
        b'{"user_id": "u2", "item_id": "i2", "ts": 1767323045000, "event": "view", "position": 3}\n'
        b'not json\r{"user_id": "u\xff", "item_id": "i3", "ts": "9999-12-31T23:59:59"}\n[1, 2]\n{"ts": null}')
    (tmp_path / "b.jsonl.gz").write_bytes(gzip.compress(
        "".join(json.dumps({"user_id": f"u{i}", "item_id": f"i{i % 7}", "ts": 1700000000 + i}) + "\n" for i in range(2500)).encode()))
    files = sorted(str(f) for f in tmp_path.iterdir())

    def parse(f, n, raw):
        return events.parse_line("interactions", f, n, raw, {})

    hadoop = spark.createDataFrame(line_records(spark, files, "utf-8").map(lambda r: parse(*r)), PARSED_INTERACTION)
    arrow = parse_text_files(spark, files, "utf-8", parse, PARSED_INTERACTION)
    assert arrow.count() == hadoop.count() == 2500 + 6
    assert arrow.exceptAll(hadoop).count() == 0 and hadoop.exceptAll(arrow).count() == 0
    reasons = {r.line: r.reason for r in arrow.where(arrow.file.endswith("a.jsonl")).collect()}
    assert sorted(reasons) == [1, 4, 5, 6, 7, 8] and reasons[1] is None and reasons[5].startswith("malformed")


def test_every_file_under_the_input_is_read_or_skipped_with_its_reason(tmp_path):
    """Nothing is passed over in silence: a file that is not read is listed with why, and a symlink is
    followed only to a file inside the input folder."""
    from gr2.etl.io import HIDDEN, OUTSIDE

    root, outside = tmp_path / "in", tmp_path / "elsewhere"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    for rel in ["a.jsonl", "notes.txt", "b.jsonl.bz2", ".hidden.jsonl", "_tmp.jsonl", "sub/c.csv"]:
        (root / rel).write_text("")
    (outside / "secret.jsonl").write_text("")
    (root / "leak.jsonl").symlink_to(outside / "secret.jsonl")
    (root / "alias.jsonl").symlink_to(root / "a.jsonl")
    files = events.classify_files(root)
    read = sorted(__import__("pathlib").Path(f).name for k in ("interactions", "items") for f, _ in files[k])
    skipped = {__import__("pathlib").Path(f).name: why for f, why in files["skipped"]}
    assert read == ["a.jsonl", "c.csv"], "a link inside the folder is its target, read once"
    assert skipped == {"notes.txt": events.NOT_DATA, "b.jsonl.bz2": events.NOT_DATA, ".hidden.jsonl": HIDDEN,
                       "_tmp.jsonl": HIDDEN, "leak.jsonl": OUTSIDE}


def test_a_corrupt_or_unreadable_data_file_is_named_before_spark_reads_it(tmp_path):
    import gzip
    import os

    import pyarrow as pa
    import pyarrow.parquet as pq

    good_gz, bad_gz, cut_gz = tmp_path / "a.jsonl.gz", tmp_path / "b.jsonl.gz", tmp_path / "c.jsonl.gz"
    good_gz.write_bytes(gzip.compress(b'{"user_id": "u1"}\n' * 1000))
    bad_gz.write_bytes(b"\x1f\x8b\x08\x00garbage" * 10)
    cut_gz.write_bytes(good_gz.read_bytes()[:-20])  # truncated stream
    table = tmp_path / "t.parquet"
    pq.write_table(pa.table({"user_id": ["u1"] * 100}), table)
    torn = tmp_path / "torn.parquet"
    torn.write_bytes(table.read_bytes()[: len(table.read_bytes()) // 2])
    locked = tmp_path / "locked.jsonl"
    locked.write_text("{}\n")
    locked.chmod(0)
    assert events.probe_file(str(good_gz), "json") is None and events.probe_file(str(table), "parquet") is None
    assert events.probe_file(str(bad_gz), "json").startswith("corrupt gzip file")
    assert events.probe_file(str(cut_gz), "json").startswith("corrupt gzip file")
    assert events.probe_file(str(torn), "parquet").startswith("corrupt parquet file")
    if os.geteuid() != 0:  # root reads any file
        assert events.probe_file(str(locked), "json").startswith("unreadable")


def test_file_names_with_glob_characters_commas_and_colons_are_read_literally(spark, tmp_path):
    """Hadoop would read x[1].jsonl as a pattern matching x1.jsonl, split a,b.jsonl at its comma and
    refuse a colon; each file here must give exactly its own lines."""
    from gr2.etl.io import list_files, read_lines

    names = ["x1.jsonl", "x[1].jsonl", "events-2026-11-26T10:00.jsonl", "a,b.jsonl", "{c}.jsonl", "caf\u00e9 2.jsonl",
             "star*.jsonl"]
    for i, name in enumerate(names):
        (tmp_path / name).write_text(f"line one of {i}\nline two of {i}\n")
    for encoding in ("utf-8", "latin-1"):
        rows = read_lines(spark, list_files(tmp_path), encoding).collect()
        got = sorted((__import__("pathlib").Path(r.file).name, r.line, r.raw) for r in rows)
        assert got == sorted((n, j + 1, f"line {w} of {i}") for i, n in enumerate(names) for j, w in enumerate(("one", "two")))

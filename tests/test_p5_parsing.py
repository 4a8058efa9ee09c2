import pytest

from gr2.etl.sources.amazon_p5 import P5_EPOCH, parse_item_line, parse_sequence_line


def test_sequence_line_explodes_into_ordered_interactions():
    rows = parse_sequence_line("f", 3, "7 10 11 10")
    assert [(r[4], r[5], r[10]) for r in rows] == [("7", "10", None), ("7", "11", None), ("7", "10", None)]
    assert [r[6] for r in rows] == sorted(r[6] for r in rows) and rows[0][6] > P5_EPOCH
    assert all(r[2] == 3 for r in rows)


@pytest.mark.parametrize(
    "raw, reason",
    [("7", "sequence line without items"), ("", "sequence line without items")],
)
def test_bad_sequence_lines_are_rejected_with_reason(raw, reason):
    (row,) = parse_sequence_line("f", 1, raw)
    assert row[-1] == reason


@pytest.mark.parametrize(
    "raw, item, title, cats, reason",
    [
        ('{"item_id": 5, "title": "A &amp; B", "categories": [["Beauty", "Nails"], ["Beauty", "Tools"]]}',
         "5", "A & B", ["Beauty", "Nails", "Tools"], None),
        ('{"item_id": 5, "title": "x"', None, None, None, "malformed JSON"),
        ('[1, 2]', None, None, None, "malformed JSON: not an object"),
        ('{"item_id": "B00X", "title": "t", "brand": "Acme"}', "B00X", "t", None, None),
        ('{"item_id": 19.0, "title": "t"}', "19", "t", None, None),  # an integer written as a number: item 19 of the sequences
        ('{"item_id": 19.5, "title": "t"}', None, None, None, "item_id must be a string or an integer, got a number 19.5"),
        ('{"item_id": "cafe\u0301", "title": "t"}', "caf\u00e9", "t", None, None),  # NFC
        ('{"item_id": true, "title": "t"}', None, None, None, "item_id must be a string or an integer, got a boolean true"),
        ('{"item_id": ["a"], "title": "t"}', None, None, None, 'item_id must be a string or an integer, got a list ["a"]'),
        ('{"item_id": 3, "brand": {"a": 1}}', None, None, None, 'brand must be a string, got an object {"a": 1}'),
    ],
)
def test_item_lines(raw, item, title, cats, reason):
    row = parse_item_line("f", 1, raw)
    assert row[4] == item and row[5] == title
    if cats is not None:
        assert row[6] == cats
    assert (row[-1] or "").startswith(reason or "")
    if reason is None:
        assert row[-1] is None

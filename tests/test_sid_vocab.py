"""The shared SID vocabulary: tokens, SID strings, the strict parser (table-driven)."""

import pytest

from gr2.platform.sids import (
    DEFAULT_CODES,
    DEFAULT_LEVELS,
    SID_BEGIN,
    SID_END,
    all_tokens,
    level_token,
    parse_sid,
    parse_token,
    sid_string,
    unwrap,
    wrap,
)


@pytest.mark.parametrize(
    "level, code, token",
    [(0, 0, "<a_0>"), (0, 12, "<a_12>"), (1, 200, "<b_200>"), (2, 7, "<c_7>"), (3, 31, "<d_31>"), (25, 1, "<z_1>")],
)
def test_level_token(level, code, token):
    assert level_token(level, code) == token


@pytest.mark.parametrize("level, code", [(-1, 0), (26, 0), (0, -1), (0, 1.5), (True, 0), ("a", 0)])
def test_level_token_rejects_bad_input(level, code):
    with pytest.raises(ValueError):
        level_token(level, code)


@pytest.mark.parametrize(
    "codes, sid",
    [
        ([12, 200, 7, 31], "<a_12><b_200><c_7><d_31>"),
        ([0], "<a_0>"),
        ((5, 0, 255), "<a_5><b_0><c_255>"),
        ([1, 2, 3, 4, 5], "<a_1><b_2><c_3><d_4><e_5>"),
    ],
)
def test_sid_string_round_trips(codes, sid):
    assert sid_string(codes) == sid
    assert parse_sid(sid) == list(codes)
    assert parse_sid(wrap(sid)) == list(codes)
    assert wrap(sid) == f"<|sid_begin|>{sid}<|sid_end|>"
    assert unwrap(wrap(sid)) == sid


def test_sid_string_accepts_numpy_ints():
    np = pytest.importorskip("numpy")
    assert sid_string(np.array([3, 4], dtype=np.int64)) == "<a_3><b_4>"


@pytest.mark.parametrize(
    "text, kwargs, message",
    [
        ("", {}, "empty"),
        ("<a_1><c_2>", {}, "level 'c' but level 'b'"),
        ("<b_1>", {}, "level 'b' but level 'a'"),
        ("<a_1><a_2>", {}, "level 'a' but level 'b'"),
        ("<a_1> <b_2>", {}, "malformed"),
        ("<a_1><b_2>x", {}, "malformed"),
        ("<a_01>", {}, "malformed"),
        ("<a_-1>", {}, "malformed"),
        ("<A_1>", {}, "malformed"),
        ("<a1>", {}, "malformed"),
        ("a_1", {}, "malformed"),
        ("<a_1><b_2>", {"levels": 3}, "has 2 levels, expected 3"),
        ("<a_1><b_256>", {"codes": 256}, "out of range"),
        ("<a_256>", {"levels": 1, "codes": 256}, "out of range"),
        ("<|sid_begin|><a_1>", {}, "expected <|sid_begin|>"),
        ("<|sid_begin|><|sid_end|>", {}, "empty"),
    ],
)
def test_parse_sid_is_strict(text, kwargs, message):
    with pytest.raises(ValueError, match=message.replace("|", r"\|")):
        parse_sid(text, **kwargs)


def test_parse_sid_with_limits_accepts_valid():
    assert parse_sid("<a_255><b_0><c_1><d_9>", levels=4, codes=256) == [255, 0, 1, 9]


@pytest.mark.parametrize("levels, codes", [(1, 2), (2, 3), (4, 256)])
def test_all_tokens(levels, codes):
    toks = all_tokens(levels, codes)
    assert len(toks) == levels * codes + 2 == len(set(toks))
    assert toks[0] == "<a_0>" and toks[codes - 1] == f"<a_{codes - 1}>"
    assert toks[-2:] == [SID_BEGIN, SID_END]
    assert toks == all_tokens(levels, codes)  # deterministic
    assert toks[:-2] == [level_token(lv, c) for lv in range(levels) for c in range(codes)]
    assert [parse_token(t) for t in toks[:-2]] == [(lv, c) for lv in range(levels) for c in range(codes)]


@pytest.mark.parametrize("token", ["<a_01>", "<a_1><b_2>", "a_1", "<|sid_begin|>", "<a_1> "])
def test_parse_token_rejects(token):
    with pytest.raises(ValueError):
        parse_token(token)


def test_all_tokens_defaults_and_errors():
    assert len(all_tokens()) == DEFAULT_LEVELS * DEFAULT_CODES + 2
    for bad in [(0, 4), (27, 4), (2, 0)]:
        with pytest.raises(ValueError):
            all_tokens(*bad)


@pytest.mark.parametrize("text, expected", [
    ("<a_12><b_200>", "<a_12><b_200>"),
    ("  <a_12><b_200>\n", "<a_12><b_200>"),  # surrounding whitespace, as a model writes it
    ("<|sid_begin|><a_12><b_200><|sid_end|>", "<a_12><b_200>"),
    ("<a_12> <b_200>", ValueError),  # whitespace inside is not a SID
    ("item 12", ValueError),
])
def test_canonical_sid_is_the_one_form_every_comparison_reads(text, expected):
    from gr2.platform.sids import canonical_sid

    if expected is ValueError:
        with pytest.raises(ValueError):
            canonical_sid(text)
    else:
        assert canonical_sid(text) == expected

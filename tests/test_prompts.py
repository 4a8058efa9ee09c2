"""The re-rank prompt and its answer parser."""

from __future__ import annotations

import json

import pytest

from gr2.platform.sids import SID_BEGIN, SID_END, wrap
from gr2.rerank.permutations import ranking_positions
from gr2.rerank.prompt import SYSTEM_PROMPT, build_rerank_messages, format_response, parse_response, render_rerank_prompt
from gr2.rerank.slate import ItemText

HISTORY = [
    ItemText("h1", "<a_1><b_2><c_3><d_4>", "Rose face serum", "Serums"),
    ItemText("h2", "<a_1><b_2><c_3><d_5>", "Night cream\nwith retinol", "Moisturizers"),
]
# SIDs of different lengths, one a prefix of another: matching must be exact
CANDS = [
    ItemText("c1", "<a_7><b_0><c_1><d_2>", "Vitamin C serum", "Serums"),
    ItemText("c2", "<a_7><b_0><c_1><d_2><e_1>", "Argan hair oil", "Hair Oils"),
    ItemText("c3", "<a_9><b_9><c_9><d_9>", "Sunscreen SPF 50", ""),
]
C1, C2, C3 = (c.sid for c in CANDS)
SIDS = [C1, C2, C3]


def test_prompt_contains_slate_and_instructions():
    msgs = build_rerank_messages(HISTORY, CANDS, knowledge="Serums are often bought after cleansers.")
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert msgs[0]["content"] == SYSTEM_PROMPT
    user = msgs[1]["content"]
    for it in HISTORY + CANDS:
        assert wrap(it.sid) in user
    for title in ["Rose face serum", "Night cream with retinol", "Vitamin C serum", "Argan hair oil"]:
        assert title in user  # the newline in a title is flattened to keep one item per line
    assert "category: Serums" in user and "Hair Oils" in user
    assert "Serums are often bought after cleansers." in user
    assert '"ranking"' in user and '"reasoning"' in user and "ONLY" in user and "3 candidate" in user
    # history oldest first, candidates in the given order
    assert user.index(wrap(HISTORY[0].sid)) < user.index(wrap(HISTORY[1].sid)) < user.index(wrap(C1))
    assert user.index(wrap(C1)) < user.index(wrap(C2)) < user.index(wrap(C3))
    assert "Domain knowledge" not in build_rerank_messages(HISTORY, CANDS)[1]["content"]


def test_candidate_listing_is_written_like_the_answers_ranking():
    user = build_rerank_messages(HISTORY, CANDS)[1]["content"]
    answer = format_response("keep the order", SIDS)
    listing = answer[answer.index('"ranking":') + len('"ranking":'):-1]
    assert f"Candidate SIDs in this order: {listing}\n" in user  # copying it verbatim answers the incoming order
    assert parse_response(answer, SIDS).ranking == SIDS


@pytest.mark.parametrize(
    "cands, match",
    [([], "at least one candidate"), ([CANDS[0], CANDS[0]], "unique"),
     ([ItemText("x", "<b_1>", "t", "")], "level")],
)
def test_prompt_rejects_bad_slates(cands, match):
    with pytest.raises(ValueError, match=match):
        build_rerank_messages(HISTORY, cands)


def test_render_plain_text_prompt():
    msgs = build_rerank_messages(HISTORY, CANDS)
    text = render_rerank_prompt(msgs)
    assert text.startswith("### System:\n" + SYSTEM_PROMPT)
    assert "\n\n### User:\n" in text and text.endswith("### Assistant:\n")
    assert not render_rerank_prompt(msgs, add_generation_prompt=False).endswith("### Assistant:\n")


def _answer(ranking, reasoning="because"):
    return json.dumps({"reasoning": reasoning, "ranking": ranking})


VALID = _answer([C2, C1, C3])


@pytest.mark.parametrize(
    "text, ranking, error",
    [
        (VALID, [C2, C1, C3], None),
        ("```json\n" + VALID + "\n```", [C2, C1, C3], None),
        ("Let me think {about it}.\n" + VALID + "\nHope this helps!", [C2, C1, C3], None),
        (_answer([wrap(C3), C1, f" {wrap(C2)} "]), [C3, C1, C2], None),
        (_answer([C1, C2, C3]) + " and finally " + VALID, [C2, C1, C3], None),  # the last object wins
        ('{"answer": ' + VALID + "}", [C2, C1, C3], None),
        (_answer([C1]), None, "ranking has 1 entry, expected 3; missing 2 candidates: "),
        (_answer([C1, C1, C3]), None, f"duplicate SID {C1} (2 times)"),
        (_answer([C1, C2, C3, "<a_5><b_5>"]), None, "unknown SID (not a candidate): <a_5><b_5>"),
        (_answer([C1, C2, "<a_7><b_0><c_1>"]), None, "unknown SID"),  # prefix of a candidate
        (_answer([C1, C2, "not a sid"]), None, "malformed SID 'not a sid'"),
        (_answer([C1, C2, 3]), None, "ranking entry 3 is not a string"),
        ("I would rank the serum first.", None, "no JSON object"),
        ('{"reasoning": "x", "ranking": [', None, "no JSON object"),
        ('{"reasoning": "x"}', None, 'no "ranking" key'),
        ('{"reasoning": "x", "ranking": "<a_1>"}', None, "ranking is not a list (got str)"),
    ],
)
def test_parse_response_table(text, ranking, error):
    parsed = parse_response(text, SIDS)
    assert parsed.ranking == ranking
    assert parsed.ok is (error is None)
    if error is None:
        assert parsed.error is None
    else:
        assert error in parsed.error


def test_parse_reports_every_problem():
    parsed = parse_response(_answer([C1, C1, "<a_5>"]), SIDS)
    assert not parsed.ok and parsed.reasoning == "because"
    assert "missing 2 candidates" in parsed.error and "duplicate" in parsed.error and "unknown SID" in parsed.error


def test_parse_accepts_wrapped_candidate_sids():
    assert parse_response(VALID, [wrap(s) for s in SIDS]).ranking == [C2, C1, C3]


def test_round_trip():
    text = format_response("1. likes serums\n2. ...\n3. \"quoted\" décision", [wrap(C3), C2, C1])
    assert SID_BEGIN not in text and SID_END not in text and "\n" not in text  # compact, unwrapped
    parsed = parse_response(text, SIDS)
    assert parsed.ok and parsed.ranking == [C3, C2, C1]
    assert parsed.reasoning == "1. likes serums\n2. ...\n3. \"quoted\" décision"
    assert format_response(parsed.reasoning, parsed.ranking) == text


def test_ranking_positions():
    assert ranking_positions([C3, wrap(C1), C2], SIDS) == [2, 0, 1]
    with pytest.raises(ValueError, match="not one of the 3 candidates"):
        ranking_positions(["<a_0>"], SIDS)


@pytest.mark.parametrize("row, history, expected", [
    # the most recent `history` items, oldest first; candidates in their incoming order; the target's SID
    ({"slate_id": "s1", "history": ["a", "b", "c"], "candidates": ["c", "d"], "target": "d"}, 2, (["b", "c"], ["c", "d"], "<d>")),
    # history items without a SID are left out; history 0 shows none
    ({"slate_id": "s2", "history": ["a", "zz", "b"], "candidates": ["d", "c"], "target": "c"}, 5, (["a", "b"], ["d", "c"], "<c>")),
    ({"slate_id": "s3", "history": ["a"], "candidates": ["d", "c"], "target": "c"}, 0, ([], ["d", "c"], "<c>")),
    # a candidate or the target without a SID: no slate (its answer could not be checked)
    ({"slate_id": "s4", "history": ["a"], "candidates": ["d", "zz"], "target": "d"}, 5, None),
    ({"slate_id": "s5", "history": ["a"], "candidates": ["d", "c"], "target": "zz"}, 5, None),
])
def test_a_gold_slates_row_becomes_a_slate(row, history, expected):
    from collections import namedtuple

    from gr2.rerank.slate import slate_of_row

    Item = namedtuple("Item", "item_id sid title category")
    catalog = {i: Item(i, f"<{i}>", f"title {i}", "cat") for i in "abcd"}
    s = slate_of_row(row, catalog, history)
    if expected is None:
        assert s is None
        return
    hist, cands, target = expected
    assert s.slate_id == row["slate_id"] and s.target_sid == target
    assert [h.item_id for h in s.history] == hist and [c.item_id for c in s.candidates] == cands

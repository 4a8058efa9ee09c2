"""Student re-rank formats: SID spelling, citation by slate number, compact prompts, and the round trip
teacher answer -> student target -> canonical ranking (gr2/rerank/formats.py)."""

from __future__ import annotations

import json

import pytest

from gr2.rerank.formats import RerankFormat, parse_text_sid, text_sid
from gr2.rerank.prompt import build_rerank_messages, format_response, render_rerank_prompt
from gr2.rerank.slate import ItemText

HISTORY = [ItemText("h1", "<a_1><b_2><c_3><d_4>", "Rose face serum with a very long marketing title indeed", "Serums")]
CANDS = [
    ItemText("c1", "<a_7><b_0><c_1><d_2>", "Vitamin C serum", "Serums"),
    ItemText("c2", "<a_7><b_0><c_1><d_3>", "Argan hair oil", "Hair Oils"),
    ItemText("c3", "<a_9><b_9><c_9><d_9>", "Sunscreen SPF 50", ""),
]
SIDS = [c.sid for c in CANDS]
TEACHER = format_response("3. Decision: first [3] <a_9><b_9><c_9><d_9>, then [1] <a_7><b_0><c_1><d_2>; last was "
                          "<a_1><b_2><c_3><d_4>.", [SIDS[2], SIDS[0], SIDS[1]])

PAPER = RerankFormat()
TEXT_SLATE = RerankFormat(sid="text", cite="slate", style="compact", history=5, title_words=4)
TEXT_SID = RerankFormat(sid="text", cite="sid", style="compact")
TOKENS_SLATE = RerankFormat(sid="tokens", cite="slate", style="paper")


def test_text_sid_round_trip_and_strictness():
    assert text_sid([12, 200, 7, 31]) == "a12 b200 c7 d31"
    assert parse_text_sid("a12 b200 c7 d31") == [12, 200, 7, 31]
    for bad in ("b12 a3", "a012", "a1  b2", "a1 c2", ""):
        with pytest.raises(ValueError):
            parse_text_sid(bad)


def test_paper_format_is_the_canonical_contract():
    msgs = PAPER.messages(HISTORY, CANDS)
    assert msgs == build_rerank_messages(HISTORY, CANDS)
    assert PAPER.prompt(HISTORY, CANDS) == render_rerank_prompt(msgs)  # no tokenizer: no chat template
    assert PAPER.answer("r", SIDS, SIDS) == format_response("r", SIDS)


@pytest.mark.parametrize("fmt, target", [
    (PAPER, None),  # unchanged
    (TEXT_SLATE, {"reasoning": "3. Decision: first [3], then [1]; last was a1 b2 c3 d4.", "ranking": [3, 1, 2]}),
    (TEXT_SID, {"reasoning": "3. Decision: first [3] a9 b9 c9 d9, then [1] a7 b0 c1 d2; last was a1 b2 c3 d4.",
                "ranking": ["a9 b9 c9 d9", "a7 b0 c1 d2", "a7 b0 c1 d3"]}),
    (TOKENS_SLATE, {"reasoning": "3. Decision: first [3], then [1]; last was <a_1><b_2><c_3><d_4>.",
                    "ranking": [3, 1, 2]}),
])
def test_teacher_answer_becomes_the_student_target_and_parses_back(fmt, target):
    parsed_teacher = PAPER.parse(TEACHER, SIDS)
    answer = fmt.answer(parsed_teacher.reasoning, parsed_teacher.ranking, SIDS)
    if target is not None:
        assert json.loads(answer) == target
    back = fmt.parse(answer, SIDS)
    assert back.ok and back.ranking == [SIDS[2], SIDS[0], SIDS[1]]
    assert fmt.ranking_marker() in answer


@pytest.mark.parametrize("text, error", [
    ('{"reasoning":"x","ranking":[3,1]}', "expected 3"),
    ('{"reasoning":"x","ranking":[3,1,1]}', "duplicate"),
    ('{"reasoning":"x","ranking":[3,1,4]}', "slate number 4 (of 3)"),
    ('{"reasoning":"x","ranking":[3,1,true]}', "slate number True"),
    ('{"reasoning":"x","ranking":[3,1,"two"]}', "slate number 'two'"),
    ("no json here", "no JSON object"),
])
def test_slate_citations_name_what_is_wrong(text, error):
    parsed = TEXT_SLATE.parse(text, SIDS)
    assert not parsed.ok and error in parsed.error


def test_slate_numbers_as_strings_are_read():
    assert TEXT_SLATE.parse('{"ranking":["[2]","3","1"]}', SIDS).ranking == [SIDS[1], SIDS[2], SIDS[0]]


def test_text_sid_answers_with_a_look_alike_are_invalid():
    parsed = TEXT_SID.parse('{"ranking":["a9 b9 c9 d9","a7 b0 c1 d2","a7 b0 c1 d4"]}', SIDS)
    assert not parsed.ok and "unknown SID" in parsed.error


def test_compact_prompt_keeps_the_content_in_fewer_characters():
    hist = HISTORY * 10
    compact = TEXT_SLATE.prompt(hist, CANDS)
    paper = PAPER.prompt(hist, CANDS)
    assert len(compact) < len(paper) / 2
    assert compact.count("a1 b2 c3 d4") == 5  # the history is capped at the format's 5 items
    assert "[1] a7 b0 c1 d2 Vitamin C serum (Serums)" in compact
    assert "Rose face serum with..." in compact  # titles cut to 4 words
    assert "<a_" not in compact and "3 candidate numbers" in compact


def test_paper_prompt_with_slate_citations_swaps_only_the_answer_rule():
    user = TOKENS_SLATE.messages(HISTORY, CANDS)[1]["content"]
    assert "<|sid_begin|><a_7><b_0><c_1><d_2><|sid_end|>" in user
    assert "Cite candidates by their number [n]." in user and "all 3 candidate numbers" in user


def test_options_for_constrained_decoding():
    assert TEXT_SLATE.options(SIDS) == ["1", "2", "3"]
    assert TEXT_SID.options(SIDS)[0] == '"a7 b0 c1 d2"'
    assert PAPER.options(SIDS)[0] == '"<a_7><b_0><c_1><d_2>"'


def test_a_model_folder_carries_its_format(tmp_path):
    TEXT_SLATE.save(tmp_path)
    assert RerankFormat.of_model(tmp_path) == TEXT_SLATE
    assert RerankFormat.of_model(tmp_path / "elsewhere", PAPER) == PAPER
    with pytest.raises(ValueError, match="cite must be one of"):
        RerankFormat(cite="title")


def test_answer_shape_of_slate_citations_counts_numbers():
    assert TEXT_SLATE.answer_shape('{"reasoning":"r","ranking":[3,1,3]}', 3), "shape, not validity"
    assert not TEXT_SLATE.answer_shape('{"reasoning":"r","ranking":[3,1]}', 3)
    assert not TEXT_SLATE.answer_shape('{"reasoning":"r","ranking":["a","b","c"]}', 3)
    assert TEXT_SID.answer_shape('{"ranking":["a","b","c"]}', 3)

"""Prompt-lookup drafting (`serve.prompt_lookup`, gr2.models.llamacpp.lookup_draft): a pure function of
the token ids so far, so it is tested without llama.cpp."""

import pytest

from gr2.models.llamacpp import lookup_draft


@pytest.mark.parametrize("seq, k, want", [
    ([1, 2, 3, 4, 5, 1, 2], 3, [3, 4, 5]),  # the last 2-gram seen before: what followed it
    ([1, 2, 3, 1, 2, 3, 9, 2, 3], 2, [9, 2]),  # the latest earlier occurrence wins
    ([4, 1, 2, 8, 2, 9, 1, 2], 2, [8, 2]),  # the longest n-gram first: (1, 2) before (2,)
    ([5, 6, 7], 4, []),  # nothing recurs
    ([7, 7], 2, [7]),  # a continuation may run into the tail itself
    ([1], 2, []),
    ([], 2, []),
    ([3, 1, 2, 3], 5, [1, 2, 3]),  # fewer than k tokens left after the match
])
def test_lookup_draft_table(seq, k, want):
    assert lookup_draft(seq, k) == want

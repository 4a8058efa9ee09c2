"""`serve.compute_type` with the Hugging Face engine: float32 weights (the reference) or cast once to
bfloat16, in the serving engine itself (no Ray), on a tiny Llama saved into a lake the way training saves
it (training_lake.tiny_llama_serving_lake)."""

from __future__ import annotations

import pytest
import torch
from training_lake import answers_of, serving_engine, tiny_llama_serving_lake

from gr2.config import ConfigError, load_config
from gr2.serve import launch

K = 4


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    return tiny_llama_serving_lake(tmp_path_factory.mktemp("hfprec") / "lake", K)


@pytest.mark.parametrize("decoder", ["first", "slots"])
def test_bfloat16_weights_answer_permutations_in_both_modes(lake, decoder):
    _, _, _, reqs = lake
    fp32, bf16 = (serving_engine(lake, ranking_decoder=decoder, compute_type=t) for t in ("float32", "bfloat16"))
    assert {p.dtype for p in bf16.model.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in fp32.model.parameters()} == {torch.float32}
    want, got = answers_of(fp32, reqs), answers_of(bf16, reqs)
    assert len(got) == len(reqs) == len(want)
    for r, g in zip(sorted(reqs, key=lambda r: r.mode != "reasoning"), got):
        assert sorted(g.order) == list(range(K))  # a fallback is a permutation too
        assert g.fallback_reason in (None, "invalid") and (g.fallback_reason is None or r.mode == "reasoning")
    ranked = [(w.order, g.order) for w, g in zip(want, got) if w.text is None]  # the ranking-mode answers
    assert len(ranked) == len(reqs) // 2
    # rounding may flip a close call on a random model, not most of them
    assert sum(w[0] == g[0] for w, g in ranked) >= len(ranked) / 2


def test_a_compute_type_hf_does_not_run_is_refused_with_the_reason(lake):
    with pytest.raises(ValueError, match="compute_type 'int8' is not one Hugging Face runs"):
        serving_engine(lake, compute_type="int8")
    # before anything starts: `gr2 serve` refuses it from the config
    with pytest.raises(ConfigError, match="serve.compute_type=int8 needs serve.engine ctranslate2 or llamacpp"):
        launch.settings(load_config(overrides=["serve.compute_type=int8"], lake=str(lake[0].parents[3])))

"""`serve.compute_type` with the Hugging Face engine: float32 weights (the reference), cast once to
bfloat16, or int8 dynamically quantized Linears, in the serving engine itself (no Ray), on a tiny Llama
saved into a lake the way training saves it (training_lake.tiny_llama_serving_lake)."""

from __future__ import annotations

import pytest
import torch
from training_lake import answers_of, serving_engine, tiny_llama_serving_lake

from gr2.config import ConfigError, load_config
from gr2.platform.precision import INFERENCE_TYPES, for_inference
from gr2.serve import engine, launch

K = 4


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    return tiny_llama_serving_lake(tmp_path_factory.mktemp("hfprec") / "lake", K)


def _linears(model) -> set[type]:
    return {type(m) for m in model.modules() if type(m).__name__ == "Linear"}


@pytest.mark.parametrize("compute_type, decoder", [("bfloat16", "first"), ("int8", "first"), ("int8", "slots")])
def test_faster_weights_answer_permutations_in_both_modes(lake, decoder, compute_type):
    _, _, _, reqs = lake
    fp32, fast = (serving_engine(lake, ranking_decoder=decoder, compute_type=t) for t in ("float32", compute_type))
    assert {p.dtype for p in fp32.model.parameters()} == {torch.float32} and _linears(fp32.model) == {torch.nn.Linear}
    if compute_type == "bfloat16":
        assert {p.dtype for p in fast.model.parameters()} == {torch.bfloat16}
    else:  # every Linear quantized, the LM head included
        from torch.ao.nn.quantized.dynamic import Linear as Int8Linear

        assert _linears(fast.model) == {Int8Linear}
    want, got = answers_of(fp32, reqs), answers_of(fast, reqs)
    assert len(got) == len(reqs) == len(want)
    for r, g in zip(sorted(reqs, key=lambda r: r.mode != "reasoning"), got):
        assert sorted(g.order) == list(range(K))  # a fallback is a permutation too
        assert g.fallback_reason in (None, "invalid") and (g.fallback_reason is None or r.mode == "reasoning")
    ranked = [(w.order, g.order) for w, g in zip(want, got) if w.text is None]  # the ranking-mode answers
    assert len(ranked) == len(reqs) // 2
    # rounding may flip a close call on a random model, not most of them
    assert sum(w[0] == g[0] for w, g in ranked) >= len(ranked) / 2


def test_int8_runs_without_autocast_and_bfloat16_with_it(lake):
    model = torch.nn.Sequential(torch.nn.Linear(4, 4))
    assert for_inference(model, "float32") == (model, True)
    assert for_inference(torch.nn.Sequential(torch.nn.Linear(4, 4)), "bfloat16")[1] is True
    assert for_inference(torch.nn.Sequential(torch.nn.Linear(4, 4)), "int8")[1] is False
    model_dir, catalog, fmt, _ = lake
    assert engine.Reranker(model_dir, catalog, fmt, 24, True, 4, ranking_decoder="first", compute_type="bfloat16").autocast
    assert not engine.Reranker(model_dir, catalog, fmt, 24, True, 4, ranking_decoder="first", compute_type="int8").autocast
    assert engine.HF_COMPUTE_TYPES == INFERENCE_TYPES  # the service's list without importing torch, kept equal


def test_a_compute_type_hf_does_not_run_is_refused_with_the_reason(lake):
    with pytest.raises(ValueError, match="compute_type 'int16' is not one Hugging Face runs"):
        serving_engine(lake, compute_type="int16")
    with pytest.raises(ValueError, match="not one PyTorch runs"):
        for_inference(torch.nn.Linear(2, 2), "float16")
    # before anything starts: `gr2 serve` refuses it from the config
    with pytest.raises(ConfigError, match="serve.compute_type=int8_float32 needs serve.engine ctranslate2 or llamacpp"):
        launch.settings(load_config(overrides=["serve.compute_type=int8_float32"], lake=str(lake[0].parents[3])))

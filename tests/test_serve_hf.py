"""The serving engine on Hugging Face, without Ray, on a tiny Llama saved into a lake the way training
saves it (training_lake.tiny_llama_serving_lake): `serve.compute_type` (float32 weights, the reference;
cast once to bfloat16; int8 dynamically quantized Linears) and `serve.prefix_cache` (users' prompt heads
kept as KV caches)."""

from __future__ import annotations

import pytest
import torch
from training_lake import answers_of, serving_engine, tiny_llama_serving_lake

from gr2.config import ConfigError, load_config
from gr2.platform.precision import INFERENCE_TYPES, for_inference
from gr2.serve import engine, launch
from gr2.serve.prefix_cache import candidate_free_head

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
    else:  # every Linear of the body quantized; the LM head stays float (INT8_SCHEMES' default)
        from torch.ao.nn.quantized.dynamic import Linear as Int8Linear

        assert {type(m) for n, m in fast.model.named_modules() if type(m).__name__ == "Linear" and n != "lm_head"} == {Int8Linear}
        assert type(fast.model.lm_head) is torch.nn.Linear
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


class _Head(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 8))
        self.lm_head = torch.nn.Linear(8, 16)

    def forward(self, x):
        return self.lm_head(self.body(x))


@pytest.mark.parametrize("scheme, weight_scales, head_quantized", [
    ("per_channel_head_float", torch.per_channel_affine, False),
    ("per_channel", torch.per_channel_affine, True),
    ("per_tensor", torch.per_tensor_affine, True),
])
def test_int8_schemes_quantize_the_weights_they_name(scheme, weight_scales, head_quantized):
    torch.manual_seed(0)
    model = _Head().eval()
    x = torch.randn(5, 8)
    want = model(x)
    q, autocast_ok = for_inference(model, "int8", scheme)
    assert not autocast_ok
    assert q.body[0].weight().qscheme() == weight_scales and q.body[2].weight().qscheme() == weight_scales
    assert isinstance(q.lm_head, torch.nn.Linear) is not head_quantized
    assert torch.allclose(q(x), want, atol=0.05)  # int8 rounding, not a different function


def test_a_compute_type_hf_does_not_run_is_refused_with_the_reason(lake):
    with pytest.raises(ValueError, match="int8_scheme 'per_row' is not one of"):
        for_inference(torch.nn.Linear(2, 2), "int8", "per_row")
    with pytest.raises(ValueError, match="compute_type 'int16' is not one Hugging Face runs"):
        serving_engine(lake, compute_type="int16")
    with pytest.raises(ValueError, match="not one PyTorch runs"):
        for_inference(torch.nn.Linear(2, 2), "float16")
    # before anything starts: `gr2 serve` refuses it from the config
    with pytest.raises(ConfigError, match="serve.compute_type=int8_float32 needs serve.engine ctranslate2 or llamacpp"):
        launch.settings(load_config(overrides=["serve.compute_type=int8_float32"], lake=str(lake[0].parents[3])))


@pytest.mark.parametrize("prompt, reordered, head", [
    ("role\ntask\nhistory a\nCandidates:\n[1] x\n[2] y\n", "role\ntask\nhistory a\nCandidates:\n[1] y\n[2] x\n", 32),
    ("role\nCandidates: [1] x [2] y", "role\nCandidates: [1] y [2] x", 5),  # back to the line start
    ("Candidates: [1] x [2] y", "Candidates: [1] y [2] x", 0),  # no line break before the candidates
    ("same text", "same text", 0),  # the candidates are not in the text at all
])
def test_the_head_is_everything_before_the_first_line_that_depends_on_the_candidates(prompt, reordered, head):
    assert candidate_free_head(prompt, reordered) == head
    assert prompt[:head] == reordered[:head] and (head == 0 or prompt[head - 1] == "\n")


@pytest.mark.parametrize("decoder", ["first", "slots"])
def test_a_cached_prompt_head_ranks_as_the_whole_prompt_does(lake, decoder):
    _, _, _, reqs = lake
    ranking = [r for r in reqs if r.mode == "ranking"]
    plain = serving_engine(lake, ranking_decoder=decoder)
    cached = serving_engine(lake, ranking_decoder=decoder, prefix_cache=4)
    assert plain.prefix_cache is None and cached.prefix_cache is not None
    want = [plain.answer([r])[0].order for r in ranking]
    again = [engine.RerankRequest(r.history, r.candidates[::-1], "ranking", False, 60000) for r in ranking]
    for r, w, a in zip(ranking, want, again):  # each user twice: a new head, then the same head, new candidates
        assert cached.answer([r])[0].order == w
        assert cached.answer([a])[0].order == plain.answer([a])[0].order
    pc = cached.prefix_cache
    assert pc.unsplit == 0 and pc.hits >= len(ranking) and pc.misses >= 1 and len(pc._heads) <= 4


def test_a_cached_head_gives_the_whole_prompts_logits(lake):
    """The KV cache of the head, copied and extended by the rest, is the whole prompt's (float32)."""
    from gr2.models.generation import with_bos
    from gr2.models.ranking import Prefix

    rr = serving_engine(lake, prefix_cache=2)
    req = next(r for r in lake[3] if r.mode == "ranking")
    hist, cands = rr._items(req)
    prompt = rr.fmt.prompt(hist, cands, rr.tok)
    text = with_bos(rr.tok, prompt)
    head = len(text) - len(prompt) + candidate_free_head(prompt, rr.fmt.prompt(hist, cands[::-1], rr.tok))
    with torch.inference_mode():
        whole = Prefix(rr.model, rr.tok(text, add_special_tokens=False)["input_ids"])
        for _ in range(2):  # a miss runs the head, a hit copies it
            prefix, rest = rr.prefix_cache.split(text, head)
            assert prefix is not None and 0 < len(rest) < len(text) and text.endswith(rest)
            prefix.extend(rr.tok(rest, add_special_tokens=False)["input_ids"])
            assert prefix.length == whole.length
            assert torch.allclose(prefix.last, whole.last, atol=1e-4)
    assert (rr.prefix_cache.misses, rr.prefix_cache.hits) == (1, 1)
    # a cut inside a token is not a token boundary: the whole prompt runs, and it is counted
    enc = lambda t: rr.tok(t, add_special_tokens=False)["input_ids"]  # noqa: E731
    inside = next(c for c in range(head - 1, 0, -1) if enc(text[:c]) + enc(text[c:]) != enc(text))
    assert rr.prefix_cache.split(text, inside) == (None, text) and rr.prefix_cache.unsplit == 1


def test_the_least_recently_used_head_is_evicted(lake):
    rr = serving_engine(lake, prefix_cache=1)
    users = {}
    for r in (r for r in lake[3] if r.mode == "ranking"):
        users.setdefault(tuple(r.history[-3:]), r)
    a, b = list(users.values())[:2]
    for r in (a, b, a, b):  # one entry, two users alternating: each push evicts the other
        rr.answer([r])
    assert (rr.prefix_cache.hits, rr.prefix_cache.misses, len(rr.prefix_cache._heads)) == (0, 4, 1)
    rr.answer([b])
    assert rr.prefix_cache.hits == 1
    assert "gr2_prefix_cache_lookups_total{result=\"hit\"} 1" in rr.prefix_cache.metrics_text()

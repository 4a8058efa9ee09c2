"""`serve.engine: llamacpp` (and `eval.engine`) against Hugging Face, the reference: a tiny random Llama
in a lake (training_lake.tiny_llama_serving_lake), exported once to GGUF beside the model and run by
llama.cpp. Skipped where llama-cpp-python is not installed (`pip install 'gr2[llamacpp]'` compiles it)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from training_lake import answers_of, assert_eval_answers_are_hfs, serving_engine, tiny_llama_serving_lake

from gr2.config import ConfigError, load_config

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install 'gr2[llamacpp]')")
from gr2.models import llamacpp  # noqa: E402

K = 4


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    return tiny_llama_serving_lake(tmp_path_factory.mktemp("llamacpp") / "lake", K)


def test_the_exported_model_scores_every_token_as_hf_does(lake):
    """The GGUF export (names, q/k re-ordering, tied output, tokenizer) read back by llama.cpp gives HF's
    log-probabilities: continuations of different lengths after a prompt, float32."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = lake[0]
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    gen = llamacpp.LlamaCppGenerator(model_dir, tok, "float32", threads=1)
    prefix = tok("Skin Hair product i03 a3 b3 c3 ranking", add_special_tokens=False)["input_ids"]
    conts = [tok(t, add_special_tokens=False)["input_ids"] for t in (" [1],", " [2] reasoning", " Nails", " [1] [3]")]
    got = gen.score_continuations(prefix, conts)
    want = []
    with torch.no_grad():
        for c in conts:
            logp = torch.log_softmax(model(torch.tensor([prefix + c])).logits[0].double(), -1)
            want.append(float(sum(logp[len(prefix) - 1 + j, c[j]] for j in range(len(c)))))
    assert np.allclose(got, want, atol=2e-3), (got, want)
    assert len(set(np.round(want, 3))) == len(want), "continuations scored alike: a weak comparison"
    # the same prefix again reuses the KV cache, and gives the same scores
    assert np.allclose(gen.score_continuations(prefix, conts), got, atol=1e-6)


def test_float32_answers_as_hf_in_both_modes(lake):
    model_dir, _, _, reqs = lake
    want = answers_of(serving_engine(lake), reqs)
    fast = serving_engine(lake, engine="llamacpp", compute_type="float32", threads=1)
    assert fast.model is None and fast.fast is not None  # one-pass ranking and reasoning: no HF weights loaded
    got = answers_of(fast, reqs)
    assert len(got) == len(reqs)
    for w, g in zip(want, got):
        assert sorted(g.order) == list(range(K))
        assert (g.order, g.fallback_reason, g.text) == (w.order, w.fallback_reason, w.text)
    assert len({g.text for g in got if g.text is not None}) > 1, "every answer was the same text: a weak comparison"
    assert len({tuple(g.order) for g in got}) > 1, "every ranking was the same order: a weak comparison"
    assert (model_dir / "gguf-float32" / llamacpp.FILE).is_file()
    assert not [p.name for p in model_dir.iterdir() if p.name.startswith(".gguf-")]  # no temporary folder left


def test_int8_and_bfloat16_answers_are_permutations(lake):
    reqs = lake[3]
    for compute_type in ("int8", "bfloat16"):
        got = answers_of(serving_engine(lake, engine="llamacpp", compute_type=compute_type, threads=1), reqs)
        assert len(got) == len(reqs) and all(sorted(g.order) == list(range(K)) for g in got)
    sizes = {t: (lake[0] / f"gguf-{t}" / llamacpp.FILE).stat().st_size for t in ("float32", "bfloat16", "int8")}
    assert sizes["int8"] < sizes["bfloat16"] < sizes["float32"], sizes


def test_fewer_threads_per_generated_token_answer_the_same(lake):
    """serve.decode_threads: prompts on `threads`, each generated token on `decode_threads`; each thread
    computes whole rows of a matmul, so the answers are the same whatever the split."""
    reqs = lake[3]
    both = serving_engine(lake, engine="llamacpp", compute_type="float32", threads=2)
    split = serving_engine(lake, engine="llamacpp", compute_type="float32", threads=2, decode_threads=1)
    assert (both.fast.llm.n_threads, both.fast.llm.n_threads_batch) == (2, 2)
    assert (split.fast.llm.n_threads, split.fast.llm.n_threads_batch) == (1, 2)
    want, got = answers_of(both, reqs), answers_of(split, reqs)
    assert [(g.order, g.text) for g in got] == [(w.order, w.text) for w in want]
    assert load_config(overrides=["serve.decode_threads=1"]).serve.decode_threads == 1
    with pytest.raises(ConfigError, match="serve.decode_threads"):
        load_config(overrides=["serve.decode_threads=-1"])


def test_prompt_lookup_drafts_write_the_same_greedy_answers(lake):
    """serve.prompt_lookup: drafted tokens are checked in one pass and kept only where the model would
    have written them, so the answers are the plain greedy ones (float32), in fewer passes."""
    reqs = [r for r in lake[3] if r.mode == "reasoning"]
    plain = serving_engine(lake, engine="llamacpp", compute_type="float32", threads=1)
    drafting = serving_engine(lake, engine="llamacpp", compute_type="float32", threads=1, prompt_lookup=4)
    want, got = answers_of(plain, reqs), answers_of(drafting, reqs)
    assert [(g.order, g.text) for g in got] == [(w.order, w.text) for w in want]
    gen = drafting.fast
    assert gen.steps > 0 and gen.drafted >= gen.steps and 0 < gen.accepted < gen.drafted  # both paths taken
    assert plain.fast.steps == 0  # off by default


def test_the_export_is_reused_and_redone_when_the_model_changes(lake, monkeypatch):
    model_dir = lake[0]
    out = llamacpp.converted(model_dir, "float32")
    stamp = (out.parent / llamacpp.STAMP).read_text()

    def refuse(*a, **kw):
        raise AssertionError("exported again although nothing changed")

    monkeypatch.setattr(llamacpp, "export_gguf", refuse)
    assert llamacpp.converted(model_dir, "float32") == out
    monkeypatch.undo()
    st = (model_dir / "config.json").stat()
    os.utime(model_dir / "config.json", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a re-saved model
    assert llamacpp.converted(model_dir, "float32") == out and (out.parent / llamacpp.STAMP).read_text() != stamp


def test_bad_settings_are_refused_with_the_reason(lake, tmp_path):
    with pytest.raises(ValueError, match="llamacpp runs compute types"):
        llamacpp.converted(lake[0], "int16")
    (tmp_path / "config.json").write_text('{"model_type": "gpt2", "n_embd": 8, "n_layer": 1, "n_head": 1}')
    with pytest.raises(ValueError, match="exports Llama-family models"):
        llamacpp.export_gguf(tmp_path, tmp_path / "x.gguf")
    assert load_config(overrides=["serve.engine=llamacpp", "serve.compute_type=bfloat16"]).serve.engine == "llamacpp"
    with pytest.raises(ConfigError, match="eval.engine"):
        load_config(overrides=["eval.engine=llama"])


def test_evaluation_answers_written_by_llamacpp_are_hfs(lake):
    """`eval.engine: llamacpp`: `rerank_answers` with a LlamaCppGenerator writes HF's free answers."""
    assert_eval_answers_are_hfs(lake, "llamacpp", threads=1)

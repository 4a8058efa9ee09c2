"""`serve.engine: ctranslate2` against Hugging Face, the reference, in the serving engine itself (no Ray):
a tiny Llama saved into a lake the way training saves it (training_lake.tiny_llama_serving_lake),
converted once beside the model."""

from __future__ import annotations

import os

import pytest
from training_lake import answers_of, assert_eval_answers_are_hfs, serving_engine, tiny_llama_serving_lake

from gr2.config import ConfigError, load_config

ct2mod = pytest.importorskip("gr2.models.ct2")
K = 4


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    return tiny_llama_serving_lake(tmp_path_factory.mktemp("ct2") / "lake", K)


@pytest.fixture(scope="module")
def reference(lake):
    """HF's answers to every request: the reference both compute types are held to."""
    return answers_of(serving_engine(lake), lake[3])


def test_float32_answers_exactly_as_hf_in_both_modes(lake, reference):
    model_dir, _, _, reqs = lake
    ct2 = serving_engine(lake, engine="ctranslate2", compute_type="float32")
    assert ct2.model is None and ct2.fast is not None  # one-pass ranking and reasoning: no HF weights loaded
    want, got = reference, answers_of(ct2, reqs)
    assert len(got) == len(reqs)
    for w, g in zip(want, got):
        assert sorted(g.order) == list(range(K))
        assert (g.order, g.fallback_reason, g.text, g.reasoning) == (w.order, w.fallback_reason, w.text, w.reasoning)
    assert len({g.text for g in got if g.text is not None}) > 1, "every answer was the same text: a weak comparison"
    assert len({tuple(g.order) for g in got}) > 1, "every ranking was the same order: a weak comparison"
    assert (model_dir / "ct2-float32" / ct2mod.STAMP).is_file()
    assert not [p.name for p in model_dir.iterdir() if p.name.startswith(".ct2-")]  # no temporary folder left


def test_int8_answers_are_permutations_and_the_agreement_is_counted(lake, reference):
    _, _, _, reqs = lake
    want, got = reference, answers_of(serving_engine(lake, engine="ctranslate2", compute_type="int8"), reqs)
    assert all(sorted(g.order) == list(range(K)) for g in got)
    same = sum((g.order, g.text) == (w.order, w.text) for w, g in zip(want, got))
    print(f"int8 against HF: {same} of {len(reqs)} answers the same")  # shown with -s; a random tiny model, not a measurement


def test_the_slot_by_slot_decoder_stays_on_hf(lake):
    _, _, _, reqs = lake
    ranking = [r for r in reqs if r.mode == "ranking"][:3]  # HF slot by slot is the slow part of this file
    hf, mixed = serving_engine(lake, ranking_decoder="slots"), serving_engine(lake, ranking_decoder="slots", engine="ctranslate2")
    assert mixed.model is not None and mixed.fast is not None
    assert [a.order for a in mixed.answer(ranking)] == [a.order for a in hf.answer(ranking)]


def test_the_conversion_is_reused_and_redone_when_the_model_changes(lake, monkeypatch):
    model_dir = lake[0]
    out = ct2mod.converted(model_dir, "float32")
    stamp = (out / ct2mod.STAMP).read_text()

    def refuse(*a, **kw):
        raise AssertionError("converted again although nothing changed")

    monkeypatch.setattr("ctranslate2.converters.TransformersConverter.convert", refuse)
    assert ct2mod.converted(model_dir, "float32") == out
    monkeypatch.undo()
    st = (model_dir / "config.json").stat()
    os.utime(model_dir / "config.json", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a re-saved model
    assert ct2mod.converted(model_dir, "float32") == out and (out / ct2mod.STAMP).read_text() != stamp
    assert not [p.name for p in model_dir.iterdir() if p.name.startswith(".ct2-")]


def test_bad_engine_settings_are_refused_with_the_reason(lake):
    with pytest.raises(ValueError, match="engine must be one of"):
        serving_engine(lake, engine="vllm")
    with pytest.raises(ValueError, match="compute_type must be one of"):
        ct2mod.converted(lake[0], "float8")
    with pytest.raises(ConfigError, match="serve.engine"):
        load_config(overrides=["serve.engine=onnx"])
    with pytest.raises(ConfigError, match="serve.compute_type"):
        load_config(overrides=["serve.compute_type=float16"])


def test_evaluation_answers_written_by_ct2_are_hfs(lake):
    """`eval.engine: ctranslate2`: `rerank_answers` with a CT2Generator writes the same free answers, and so
    the same orders, as Hugging Face generate on the same model (float32, greedy)."""
    assert_eval_answers_are_hfs(lake, "ctranslate2")
    with pytest.raises(ConfigError, match="eval.engine"):
        load_config(overrides=["eval.engine=vllm"])


def test_an_engine_whose_package_is_missing_is_refused_before_anything_starts(monkeypatch):
    from gr2.models import engines

    engines.check_installed("hf", "serve.engine")
    engines.check_installed("ctranslate2", "eval.engine")  # installed with gr2
    monkeypatch.setitem(engines.PACKAGES, "llamacpp", ("gr2_no_such_package", "pip install 'gr2[llamacpp]'"))
    with pytest.raises(ConfigError, match=r"serve.engine=llamacpp needs the gr2_no_such_package package: pip install"):
        engines.check_installed("llamacpp", "serve.engine")

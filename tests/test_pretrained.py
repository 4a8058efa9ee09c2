"""The pretrained base through the real stages: SmolLM2-135M-Instruct (pulled from the package registry)
fine-tuned on Ray Train + DeepSpeed in the compact format (text SIDs, slate-number rankings, its chat
template), then asked validation slates. Skips where the base is not pulled."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from training_lake import make_training_lake

from gr2.config import load_config
from gr2.eval import heldout
from gr2.models.slates import rerank_cases
from gr2.training import bases, jobs

pytestmark = [pytest.mark.timeout(900),
              pytest.mark.skipif(not bases.is_pulled("smollm2-135m"), reason="smollm2-135m is not pulled here "
                                 "(`gr2 model pull smollm2-135m`; scripts/bootstrap.sh does it)")]

PRETRAINED = [
    "train.model.base=smollm2-135m", "train.prompt.sid_format=text", "train.prompt.cite=slate",
    "train.prompt.style=compact", "train.prompt.history=3", "train.prompt.title_words=6", "train.num_workers=1",
    "train.cpus_per_worker=2", "train.max_len=768", "train.checkpoint_every=1000", "traces.reasoning=brief",
]


def test_sft_from_the_pretrained_base_in_the_compact_format(spark, tmp_path):
    """With the sequence model's evidence in the prompt (configs/beauty.yaml's form): traces fits and stores
    the models and its teacher weighs them, SFT and evaluation annotate their slates from the stored ones."""
    from gr2.rerank.formats import RerankFormat
    from gr2.training import traces

    lake = make_training_lake(tmp_path / "lake")
    cfg = load_config(overrides=PRETRAINED + ["traces.max_slates=40", "train.sft.init=base", "train.sft.max_steps=2",
                                              "train.sft.batch_size=2", "train.sft.lr=0.0002", "train.freeze_layers=20",
                                              "train.prompt.evidence=sequential", "traces.weights.sequential=1",
                                              "traces.sequential_epochs=3"],
                      lake=str(lake))
    t = traces.run(spark, cfg)
    assert "-brief-seq-w" in t["teacher"] and t["sequential_models"]["all"]["epoch"] == 3
    assert (lake / "models/sequential" / t["sequential_models"]["run"] / "fold0.pt").exists()
    s = jobs.sft(cfg)
    model_dir = lake / "models/sft" / s["run"] / "model"
    assert RerankFormat.of_model(model_dir) == RerankFormat.from_config(cfg.train.prompt), "the model carries its format"
    init = json.loads((lake / "models/sft" / s["run"] / "init" / "gr2.json").read_text())
    assert init["added"] == 0 and "smollm2-135m" in init["source"], "text SIDs add no tokens to the vocabulary"
    assert (lake / "models/sft/LATEST").read_text() == s["run"] and not (lake / "models/sft/IN_PROGRESS").exists()
    assert int(s["final"]["last"]["step"]) == 2
    # train.freeze_layers=20 through DeepSpeed: the embeddings and layers 0-19 are the base's, bit for bit.
    before = load_file(bases.local_path("smollm2-135m") / "model.safetensors")
    after = load_file(model_dir / "model.safetensors")
    for name in ("model.embed_tokens.weight", "model.layers.0.mlp.up_proj.weight", "model.layers.19.self_attn.q_proj.weight"):
        assert torch.equal(before[name], after[name]), f"{name} is frozen"
    for name in ("model.layers.20.mlp.up_proj.weight", "model.layers.29.self_attn.q_proj.weight"):
        assert not torch.equal(before[name], after[name]), f"{name} trains"

    free = heldout.evaluate_rerank(cfg, split="valid", max_slates=4, max_new_tokens=96)
    assert free["slates"] == 4 and len(free["outputs"]) == 4 and 0 <= free["valid_share"] <= free["json_share"] <= 1
    held = heldout.evaluate_rerank(cfg, split="valid", max_slates=3, max_new_tokens=96, constrained=True)
    assert held["valid_share"] == 1.0 and all(sorted(o) == list(range(4)) for o in held["outputs"])


def test_compact_prompts_in_the_chat_template_start_once_and_fit(tmp_path):
    """SmolLM2's BOS is its chat start marker: a templated prompt must not get a second one, and the compact
    prompt of a K=4 slate stays short."""
    from gr2.models.generation import with_bos
    from gr2.models.lm import load_tokenizer
    from gr2.models.text import tokenize_example
    from gr2.rerank.catalog import load_catalog
    from gr2.rerank.formats import RerankFormat
    from gr2.rerank.prompt import format_response

    lake = make_training_lake(tmp_path / "lake")
    catalog, _ = load_catalog(lake)
    tok = load_tokenizer(bases.local_path("smollm2-135m"))
    fmt = RerankFormat(sid="text", cite="slate", style="compact", history=3, title_words=6)
    (s, _), *_ = rerank_cases(lake, catalog, "valid", 1, 0, fmt.history)
    prompt = fmt.prompt(s.history, s.candidates, tok)
    assert prompt.startswith("<|im_start|>system\n") and prompt.endswith("<|im_start|>assistant\n")
    assert with_bos(tok, prompt) == prompt
    sids = [c.sid for c in s.candidates]
    e = jobs.sft_example(prompt, format_response("r", sids[::-1]), sids, 0.5, 1.0, fmt)
    assert e.completion == '{"reasoning":"r","ranking":[4,3,2,1]}'
    ids, weights = tokenize_example(tok, e)
    assert ids[0] == tok.bos_token_id and ids[1] != tok.bos_token_id and ids[-1] == tok.eos_token_id
    assert weights[0] == 0 and weights[-1] == 1.0
    assert len(ids) < 400, len(ids)

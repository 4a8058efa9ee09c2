"""Causal LMs for GR2 as training makes them: build a small one for demos and tests, and teach a model
the semantic-ID vocabulary (loading any saved Hugging Face folder is gr2.models.lm).

Nothing here downloads: a model is a local directory (`save_pretrained` layout). The small model is
of the Qwen2/Qwen3/Llama family, built from a config, with a byte-level BPE tokenizer trained on the
catalog's own text by the `tokenizers` library, and saved like any HF model, so every later stage loads
it the same way it would load Qwen3-8B.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from gr2.platform.sids import SPECIAL_TOKENS, all_tokens, parse_token

FAMILIES = ("qwen2", "qwen3", "llama")
PAD, BOS, EOS = "<|pad|>", "<|bos|>", "<|eos|>"
ROLE_TOKENS = ("<|user|>", "<|assistant|>", "<|system|>")


def train_bpe_tokenizer(texts, vocab_size: int = 4000):
    """A byte-level BPE tokenizer trained on `texts` (catalog titles, categories, brands), as an HF
    PreTrainedTokenizerFast with pad/bos/eos and chat role markers as special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = [PAD, BOS, EOS, *ROLE_TOKENS]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=PAD, bos_token=BOS, eos_token=EOS,
        additional_special_tokens=list(ROLE_TOKENS),
    )


def small_config(family: str, vocab_size: int, hidden: int, layers: int, heads: int, max_positions: int, tokenizer):
    """A transformers config of `family`, small enough to train on CPUs."""
    from transformers import LlamaConfig, Qwen2Config, Qwen3Config

    if family not in FAMILIES:
        raise ValueError(f"model family must be one of {FAMILIES}, got {family!r}")
    if hidden % heads:
        raise ValueError(f"hidden size {hidden} must be divisible by the number of heads {heads}")
    cls = {"qwen2": Qwen2Config, "qwen3": Qwen3Config, "llama": LlamaConfig}[family]
    kwargs = dict(
        vocab_size=vocab_size, hidden_size=hidden, intermediate_size=hidden * 4, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=max_positions,
        tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    if family == "qwen3":
        kwargs["head_dim"] = hidden // heads
    return cls(**kwargs)


def build_small_model(out_dir, texts, family: str = "qwen3", vocab_size: int = 4000, hidden: int = 128,
                      layers: int = 2, heads: int = 4, max_positions: int = 1024, seed: int = 0) -> Path:
    """Train a BPE tokenizer on `texts`, build a randomly initialised model of `family`, save both."""
    from transformers import AutoModelForCausalLM

    tokenizer = train_bpe_tokenizer(texts, vocab_size)
    config = small_config(family, len(tokenizer), hidden, layers, heads, max_positions, tokenizer)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def sid_tokens(levels: int, codes: int) -> list[str]:
    return all_tokens(levels, codes)


def add_sid_tokens(model, tokenizer, levels: int, codes: int, init: str = "mean", seed: int = 0) -> dict:
    """Add the L x C code tokens and <|sid_begin|>/<|sid_end|> as single tokens; resize and initialise.

    init: `mean` puts every new row at the mean of the existing embeddings plus small noise of their
    scale (new tokens start as "an average token", which keeps early losses sane); `text` starts each
    row at the mean embedding of the token's spelling ("level a code 12"), so codes of one level start
    close to each other; `random` keeps the model's own initialiser. Output rows follow when untied.
    """
    if init not in ("mean", "text", "random"):
        raise ValueError(f"train.sid_init must be mean, text or random, got {init!r}")
    new = [t for t in sid_tokens(levels, codes) if tokenizer.convert_tokens_to_ids(t) in (None, tokenizer.unk_token_id)]
    before = len(tokenizer)
    if new:
        spelled = {t: _spelling(t) for t in new} if init == "text" else {}
        tokenizer.add_tokens(new, special_tokens=True)
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        emb = model.get_input_embeddings().weight
        with torch.no_grad():
            old = emb[:before]
            gen = torch.Generator().manual_seed(seed)
            ids = tokenizer.convert_tokens_to_ids(new)
            if init == "mean":
                noise = torch.randn(len(ids), emb.shape[1], generator=gen) * old.std(0, keepdim=True) * 0.1
                emb[ids] = old.mean(0, keepdim=True) + noise.to(emb.dtype)
            elif init == "text":
                for t, i in zip(new, ids):
                    pieces = tokenizer(spelled[t], add_special_tokens=False)["input_ids"]
                    emb[i] = old[pieces].mean(0) if pieces else old.mean(0)
            out = model.get_output_embeddings()
            if out is not None and out.weight.data_ptr() != emb.data_ptr() and init != "random":
                out.weight[ids] = out.weight[:before].mean(0, keepdim=True)
    return {"added": len(new), "vocab_before": before, "vocab_after": len(tokenizer)}


def _spelling(token: str) -> str:
    if token in SPECIAL_TOKENS:
        return "item"
    level, code = parse_token(token)
    return f"level {chr(ord('a') + level)} code {code}"


def freeze_lower_layers(model, n: int) -> dict:
    """Keep the token embeddings (and an output head tied to them) and the lowest `n` decoder layers at their
    pretrained weights. Nothing below the first trained layer needs a gradient, so the backward pass stops
    there: with 20 of SmolLM2's 30 layers frozen a step costs the forward pass plus a third of the backward
    (measured in benchmarks/lm_throughput.py). Returns {"frozen_layers", "trainable", "total"} parameters."""
    if n > 0:
        layers = getattr(getattr(model, "model", None), "layers", None)
        if layers is None:
            raise ValueError(f"train.freeze_layers: {type(model).__name__} has no model.layers (Llama/Qwen decoder stack) to freeze")
        if n >= len(layers):
            raise ValueError(f"train.freeze_layers={n} would freeze every one of the model's {len(layers)} layers; "
                             f"use at most {len(layers) - 1}")
        model.get_input_embeddings().weight.requires_grad_(False)  # a tied output head shares this tensor
        for layer in list(layers)[:n]:
            layer.requires_grad_(False)
    return {"frozen_layers": max(n, 0), "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "total": sum(p.numel() for p in model.parameters())}


def save(model, tokenizer, out_dir, meta: dict | None = None) -> Path:
    from gr2.platform.progress import quiet_third_party

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with quiet_third_party():  # "Writing model shards" bars
        model.save_pretrained(out, safe_serialization=True)
        tokenizer.save_pretrained(out)
    if meta is not None:
        (out / "gr2.json").write_text(json.dumps(meta, indent=2, default=str))
    return out

"""A saved LM as every stage loads it: (model, tokenizer) from a local save_pretrained folder, nothing
downloaded. Training builds and saves models (training/model.py); eval, serving, RL rollouts and the
held-out checks load them here."""

from __future__ import annotations

from pathlib import Path

import torch


def load_model(path, trust_remote_code: bool = False, dtype: torch.dtype = torch.float32):
    """(model, tokenizer) from a local folder; a clear error when the folder is not an HF model."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    p = Path(path).expanduser()
    if not (p / "config.json").exists():
        raise FileNotFoundError(
            f"{p} is not a Hugging Face model folder (no config.json). Point train.model.path at a local "
            "directory written by save_pretrained (nothing is downloaded), or leave it empty to build the small model"
        )
    from gr2.platform.progress import quiet_third_party

    with quiet_third_party():  # "Loading weights" bars and config warnings: gr2's own step line says it
        tokenizer = AutoTokenizer.from_pretrained(p, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(p, trust_remote_code=trust_remote_code, dtype=dtype)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def load_tokenizer(path, trust_remote_code: bool = False):
    """The tokenizer of a local model folder (pad = eos when it has none)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(Path(path).expanduser(), trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer

"""Which runtime writes a trained model's answers: Hugging Face (the reference) or a faster CPU engine.

`eval.engine` and `serve.engine` name one of `ENGINES`; :func:`load_generator` builds the non-HF ones,
each converting the lake's HF folder once into a copy beside it (`converted.convert_once`). Each answers
greedily with the HF tokenizer's token ids and offers `first_slot_ranking`, so the evaluation and the
service treat them alike; benchmarks/serve_engines.py and benchmarks/eval_engines.py measure them
against HF on the same requests.
"""

from __future__ import annotations

from pathlib import Path

ENGINES = ("hf", "ctranslate2", "llamacpp")
NAMES = {"hf": "Hugging Face", "ctranslate2": "CTranslate2", "llamacpp": "llama.cpp"}
# the Python package each engine imports, and how to install it
PACKAGES = {"ctranslate2": ("ctranslate2", "pip install ctranslate2 (a gr2 dependency)"),
            "llamacpp": ("llama_cpp", "pip install 'gr2[llamacpp]' (compiles llama.cpp: cmake and a C++ compiler, a few minutes)")}


def check_installed(engine: str, key: str) -> None:
    """Refuse, before anything starts, an engine whose package this Python lacks (`key` names the setting)."""
    import importlib.util

    from gr2.config import ConfigError

    if engine in PACKAGES and importlib.util.find_spec(PACKAGES[engine][0]) is None:
        raise ConfigError(f"{key}={engine} needs the {PACKAGES[engine][0]} package: {PACKAGES[engine][1]}")


def load_generator(engine: str, model_dir: Path, tokenizer, compute_type: str, threads: int = 0, batch_size: int = 8):
    """The engine's generator for `model_dir`, or None for hf (the caller's HF model answers)."""
    if engine == "hf":
        return None
    if engine == "ctranslate2":
        from gr2.models.ct2 import CT2Generator

        return CT2Generator(model_dir, tokenizer, compute_type, threads, batch_size)
    if engine == "llamacpp":
        from gr2.models.llamacpp import LlamaCppGenerator

        return LlamaCppGenerator(model_dir, tokenizer, compute_type, threads, batch_size)
    raise ValueError(f"engine must be one of {list(ENGINES)}, got {engine!r}")

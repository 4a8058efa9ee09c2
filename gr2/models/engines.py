"""Which runtime writes a trained model's answers: Hugging Face (the reference) or a faster CPU engine.

`eval.engine` and `serve.engine` name one of `ENGINES`; :func:`load_generator` builds the non-HF ones,
each converting the lake's HF folder once into a copy beside it (`converted.convert_once`). Each answers
greedily with the HF tokenizer's token ids and offers `first_slot_ranking`, so the evaluation and the
service treat them alike; benchmarks/serve_engines.py and benchmarks/eval_engines.py measure them
against HF on the same requests.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import get_args

from gr2.config import ConfigError, Engine

ENGINES = get_args(Engine)  # the config's list, so the two cannot drift apart
NAMES = {"hf": "Hugging Face", "ctranslate2": "CTranslate2", "llamacpp": "llama.cpp"}
# the Python package each engine imports, and how to install it
PACKAGES = {"ctranslate2": ("ctranslate2", "pip install ctranslate2 (a gr2 dependency)"),
            "llamacpp": ("llama_cpp", "pip install 'gr2[llamacpp]' (compiles llama.cpp: cmake and a C++ compiler, a few minutes)")}


def _missing(engine: str, key: str) -> str:
    return f"{key}={engine} needs the {PACKAGES[engine][0]} package: {PACKAGES[engine][1]}"


def check_installed(engine: str, key: str) -> None:
    """Refuse, before anything starts, an engine whose package this Python lacks (`key` names the setting)."""
    import importlib.util

    if engine in PACKAGES and importlib.util.find_spec(PACKAGES[engine][0]) is None:
        raise ConfigError(_missing(engine, key))


def import_engine(engine: str):
    """The engine's package, imported, or an ImportError that says how to install it."""
    try:
        return importlib.import_module(PACKAGES[engine][0])
    except ImportError as e:
        raise ImportError(_missing(engine, "engine")) from e


def load_generator(engine: str, model_dir: Path, tokenizer, compute_type: str, threads: int = 0, batch_size: int = 8,
                   decode_threads: int = 0, lookup: int = 0):
    """The engine's generator for `model_dir`, or None for hf (the caller's HF model answers).
    llama.cpp only: `decode_threads`, its threads per generated token (0 = `threads`); `lookup`, tokens
    drafted by prompt lookup per step (0 = none)."""
    if engine == "hf":
        return None
    if engine == "ctranslate2":
        from gr2.models.ct2 import CT2Generator

        return CT2Generator(model_dir, tokenizer, compute_type, threads, batch_size)
    if engine == "llamacpp":
        from gr2.models.llamacpp import LlamaCppGenerator

        return LlamaCppGenerator(model_dir, tokenizer, compute_type, threads, batch_size, decode_threads=decode_threads,
                                 lookup=lookup)
    raise ValueError(f"engine must be one of {list(ENGINES)}, got {engine!r}")

"""CTranslate2 as a generation engine beside Hugging Face: the service's (`serve.engine: ctranslate2`) and evaluation's
free answers (`eval.engine: ctranslate2`).

Why: on a CPU the service's time is the model's forward passes, and HF runs them through eager
PyTorch. CTranslate2 runs the same Llama weights on its own fused CPU kernels, in float32 (the same
answers as HF, up to rounding) or with int8 weights (`serve.compute_type`; faster, approximate).
HF stays the default and the reference: `benchmarks/serve_engines.py` measures both on the same
requests and counts how often the answers agree.

* :func:`converted` converts the lake's HF folder once into ``<model_dir>/ct2-<compute_type>/``
  (`converted.convert_once`: renamed into place when whole) and reuses it while the source files and
  the ctranslate2 version are unchanged.
* :class:`CT2Generator` answers like `generation.HFGenerator.generate` (greedy) for the reasoning
  mode, and :meth:`CT2Generator.first_slot_ranking` like `ranking.first_slot_ranking` for the
  one-pass ranking mode.

The slot-by-slot ranking decoder is not here: each slot extends the prompt by the entry just chosen,
and CTranslate2's Python API cannot extend a kept decoder state (its static prompt is either rerun or
cached whole, per distinct prompt), so every slot would rerun the ~600-token prompt. The Reranker
keeps HF for it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from gr2.models.converted import convert_once
from gr2.models.engines import import_engine
from gr2.models.generation import with_bos
from gr2.platform.sids import canonical_sid

# The CPU compute types whose outputs are float32 (the logits the one-pass ranking reads); which of
# them this CPU runs is ctranslate2.get_supported_compute_types("cpu").
COMPUTE_TYPES = ("float32", "int8_float32", "int8", "int16")
STAMP = "gr2-ct2.json"


def converted(model_dir: Path, compute_type: str) -> Path:
    """The CTranslate2 model of `model_dir` at `compute_type`, converted now if it is missing or stale.
    Offline: the converter reads the local folder with transformers."""
    ct2 = import_engine("ctranslate2")
    if compute_type not in COMPUTE_TYPES:
        raise ValueError(f"serve.compute_type must be one of {list(COMPUTE_TYPES)}, got {compute_type!r}")

    def convert(tmp: Path) -> None:
        from ctranslate2.converters import TransformersConverter

        from gr2.platform.progress import quiet_third_party

        with quiet_third_party():
            TransformersConverter(str(model_dir)).convert(str(tmp), quantization=compute_type, force=True)

    return convert_once(Path(model_dir), f"ct2-{compute_type}", {"ctranslate2": ct2.__version__, "compute_type": compute_type},
                        convert, stamp=STAMP)


class CT2Generator:
    """Greedy generation and one-pass ranking on a CTranslate2 model converted from `model_dir`.
    Token ids come from the model's own HF tokenizer, so the prompts are exactly HF's."""

    def __init__(self, model_dir: Path, tokenizer, compute_type: str = "float32", threads: int = 0, batch_size: int = 8):
        ct2 = import_engine("ctranslate2")
        supported = ct2.get_supported_compute_types("cpu")
        if compute_type not in supported:
            raise ValueError(f"this CPU runs CTranslate2 compute types {sorted(supported)}, not {compute_type!r}")
        path = converted(Path(model_dir), compute_type)
        _check_vocabulary(path, tokenizer)
        # intra_threads explicitly: Ray gives an actor OMP_NUM_THREADS=1, which CTranslate2's default follows
        self.generator = ct2.Generator(str(path), device="cpu", compute_type=compute_type,
                                       intra_threads=threads or os.cpu_count() or 1)
        self.tok, self.batch_size, self.compute_type = tokenizer, batch_size, compute_type

    def _ids(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def _tokens(self, ids: list[int]) -> list[str]:
        return self.tok.convert_ids_to_tokens(ids)

    def generate(self, prompts: list[str], max_new_tokens: int, temperature: float = 0.0, num_return_sequences: int = 1,
                 seed: int = 0, stop_strings: list[str] | None = None) -> list[list[str]]:
        """One greedy answer per prompt, as `HFGenerator.generate` writes it (text up to the EOS)."""
        if temperature > 0 or num_return_sequences != 1 or stop_strings:
            raise NotImplementedError("CT2Generator answers greedily, one answer per prompt, without stop strings")
        tok = self.tok
        starts = [self._tokens(self._ids(with_bos(tok, p))) for p in prompts]
        # include_prompt_in_result=False: the prompts are prefilled at once instead of token by token
        results = self.generator.generate_batch(starts, max_batch_size=self.batch_size, beam_size=1, max_length=max_new_tokens,
                                                end_token=[tok.eos_token_id], include_prompt_in_result=False)
        texts = [tok.decode(r.sequences_ids[0], skip_special_tokens=False) for r in results]
        return [[t.split(tok.eos_token)[0].replace(tok.pad_token, "")] for t in texts]

    def first_slot_ranking(self, text: str, candidate_sids: list[str], fmt) -> list[str]:
        """`ranking.first_slot_ranking` on this model: the candidates ordered by the log-likelihood
        of each one's entry (and the "," after it) in the ranking's first slot; ties keep the incoming
        order. Returns the canonical SIDs, best first."""
        sids = [canonical_sid(s) for s in candidate_sids]
        conts = [self._ids(opt + ",") for opt in fmt.options(candidate_sids)]  # what constrained_ranking scores
        scores = self.score_continuations(self._ids(with_bos(self.tok, text)), conts)
        return [sids[i] for i in sorted(range(len(sids)), key=lambda i: (-scores[i], i))]

    def score_continuations(self, prefix: list[int], conts: list[list[int]]) -> list[float]:
        """log p(continuation | prefix) of each continuation (token id lists, none empty).

        The prefix but its last token runs once, at batch 1, as CTranslate2's static prompt (not cached:
        every request has its own prompt); then each row feeds the last prefix token and its
        continuation, forced (`include_prompt_in_result=True` decodes the start tokens as a prefix), and
        `return_logits_vocab` gives the logits of every step: step j predicts continuation token j."""
        toks = self._tokens
        results = self.generator.generate_batch(
            [toks(prefix[-1:] + c) for c in conts], static_prompt=toks(prefix[:-1]) or None, cache_static_prompt=False,
            include_prompt_in_result=True, max_length=max(map(len, conts)), beam_size=1, return_logits_vocab=True)
        scores = []
        for c, r in zip(conts, results):
            logits = np.stack([np.asarray(step, dtype=np.float64).reshape(-1) for step in r.logits[0][: len(c)]])
            peak = logits.max(axis=1, keepdims=True)
            logp = logits - peak - np.log(np.exp(logits - peak).sum(axis=1, keepdims=True))
            scores.append(float(logp[np.arange(len(c)), c].sum()))
        return scores


def _check_vocabulary(path: Path, tokenizer) -> None:
    """CTranslate2 maps token strings to its own ids: its vocabulary must be the tokenizer's, id for id
    (a mismatch would silently read tokens as unknown)."""
    file = path / "vocabulary.json"
    if not file.exists():
        return
    vocab = json.loads(file.read_text())
    n = len(tokenizer)
    if vocab[:n] != tokenizer.convert_ids_to_tokens(list(range(n))):
        raise ValueError(f"the CTranslate2 vocabulary in {path} is not the tokenizer's; delete the folder to convert again")

"""llama.cpp as a generation engine beside Hugging Face (`serve.engine` / `eval.engine: llamacpp`).

Why: one request at a time on a CPU, HF's eager PyTorch spends most of each generated token in Python
and per-operator overhead (SmolLM2-135M: 13-17 tokens/s on 2 cores); llama.cpp runs the whole forward
pass in its own C++ kernels, with the weights at float32, bfloat16 or 8 bits (Q8_0). It needs the
`llama-cpp-python` package (`pip install gr2[llamacpp]`; it compiles llama.cpp from source, a few
minutes), which the rest of gr2 does not.

* :func:`export_gguf` writes a lake's Llama-family HF folder as a GGUF file: the tokenizer (every token,
  its type, the merges, special ids and chat template) and the weights, with q/k rows re-ordered for
  llama.cpp's rotary layout (the inverse of what transformers does when it reads a GGUF).
  :func:`converted` makes that file once beside the model (`converted.convert_once`).
* :class:`LlamaCppGenerator` answers like `generation.HFGenerator.generate` (greedy) and like
  `ranking.first_slot_ranking`. Token ids come from the model's own HF tokenizer, so prompts are
  exactly HF's and llama.cpp's own tokenizer is never asked. A prompt that shares its start with the
  previous one (the chat template, the instructions) reuses that part of the KV cache. With `lookup` > 0
  it drafts tokens by prompt lookup and checks them in one pass (:func:`lookup_draft`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from gr2.models.converted import convert_once
from gr2.models.engines import import_engine
from gr2.models.generation import with_bos
from gr2.platform.sids import canonical_sid

# compute type (the one serve/eval setting every engine reads) -> GGUF weight type of 2-D tensors
WEIGHT_TYPES = {"float32": "F32", "bfloat16": "BF16", "int8": "Q8_0"}
STAMP = "gr2-gguf.json"
FILE = "model.gguf"


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """HF's rotary layout (halves) -> llama.cpp's (pairs), for q (n_head) and k (n_kv_head) rows."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _vocab(model_dir: Path, n_vocab: int):
    """(tokens, token types) by id, as llama.cpp's byte-level BPE ("gpt2") vocabulary reads them."""
    import gguf
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    by_id = {i: t for t, i in tok.get_vocab().items()}
    added = tok.get_added_vocab()
    decoder = tok.added_tokens_decoder
    tokens, types = [], []
    for i in range(n_vocab):
        t = by_id.get(i)
        if t is None:  # the embedding has rows past the tokenizer (resized for alignment)
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif t in added:
            special = decoder[i].special if i in decoder else False
            tokens.append(t)
            types.append(gguf.TokenType.CONTROL if special else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(t)
            types.append(gguf.TokenType.NORMAL)
    return tokens, types


def export_gguf(model_dir: Path, out: Path, weight_type: str = "F32") -> Path:
    """Write the Llama-family HF model in `model_dir` as GGUF at `out` (2-D weights at `weight_type`:
    F32, BF16 or Q8_0; norms stay F32)."""
    import gguf
    import torch
    from safetensors.torch import load_file
    from transformers import AutoConfig

    model_dir = Path(model_dir)
    cfg = AutoConfig.from_pretrained(model_dir)
    if cfg.model_type != "llama":
        raise ValueError(f"engine=llamacpp exports Llama-family models; {model_dir} is {cfg.model_type!r}")
    qtype = gguf.GGMLQuantizationType[weight_type]
    n_head, n_kv = cfg.num_attention_heads, cfg.num_key_value_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // n_head
    rope = (getattr(cfg, "rope_parameters", None) or {}).get("rope_theta") or getattr(cfg, "rope_theta", 10000.0)
    state = {}
    for f in sorted(model_dir.glob("*.safetensors")):
        state.update(load_file(f))
    if not state:
        raise FileNotFoundError(f"no *.safetensors weights in {model_dir}")
    n_vocab = state["model.embed_tokens.weight"].shape[0]

    w = gguf.GGUFWriter(str(out), "llama")
    w.add_name(model_dir.parent.name or "gr2")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_rope_freq_base(float(rope))
    w.add_layer_norm_rms_eps(float(cfg.rms_norm_eps))
    w.add_rope_dimension_count(head_dim)
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_vocab_size(n_vocab)
    w.add_file_type({"F32": gguf.LlamaFileType.ALL_F32, "BF16": gguf.LlamaFileType.MOSTLY_BF16,
                     "Q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[weight_type])
    tokens, types = _vocab(model_dir, n_vocab)
    w.add_tokenizer_model("gpt2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    gguf.SpecialVocab(model_dir, load_merges=True, n_vocab=n_vocab).add_to_gguf(w, quiet=True)

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, cfg.num_hidden_layers)
    for name, t in state.items():
        if name == "lm_head.weight" and cfg.tie_word_embeddings:
            continue  # llama.cpp reads the output projection from token_embd when output.weight is absent
        new = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if new is None:
            raise ValueError(f"{model_dir}: no GGUF name for the tensor {name!r}")
        a = t.to(torch.float32).numpy()
        if name.endswith("q_proj.weight"):
            a = _permute(a, n_head)
        elif name.endswith("k_proj.weight"):
            a = _permute(a, n_kv)
        want = qtype if a.ndim > 1 else gguf.GGMLQuantizationType.F32
        try:
            data = gguf.quants.quantize(a, want)
        except gguf.QuantError:  # a row length the block type cannot hold
            want, data = gguf.GGMLQuantizationType.F32, a
        w.add_tensor(new, data, raw_dtype=want)  # a quantized array's byte shape: the writer derives the element shape
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out


def converted(model_dir: Path, compute_type: str) -> Path:
    """The GGUF file of `model_dir` at `compute_type`, exported now if it is missing or stale."""
    llama_cpp = import_engine("llamacpp")
    if compute_type not in WEIGHT_TYPES:
        raise ValueError(f"engine=llamacpp runs compute types {list(WEIGHT_TYPES)}, not {compute_type!r}")
    weight_type = WEIGHT_TYPES[compute_type]
    folder = convert_once(Path(model_dir), f"gguf-{compute_type}",
                          {"llama_cpp": llama_cpp.__version__, "weight_type": weight_type},
                          lambda tmp: export_gguf(model_dir, tmp / FILE, weight_type), stamp=STAMP)
    return folder / FILE


class LlamaCppGenerator:
    """Greedy generation and one-pass ranking on llama.cpp, one prompt at a time (its Python API runs
    one sequence); `batch_size` is accepted for the Generator interface and unused."""

    def __init__(self, model_dir: Path, tokenizer, compute_type: str = "float32", threads: int = 0, batch_size: int = 1,
                 n_ctx: int = 4096, decode_threads: int = 0, lookup: int = 0):
        llama_cpp = import_engine("llamacpp")
        path = converted(Path(model_dir), compute_type)
        n = threads or os.cpu_count() or 1  # explicitly: Ray gives an actor OMP_NUM_THREADS=1
        # prompts run on `n` threads; each generated token on `decode_threads` (0: the same), whose threads
        # meet once per token, so on a small machine shared with other processes fewer may be faster
        self.llm = llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_batch=512, n_threads=decode_threads or n,
                                   n_threads_batch=n,
                                   logits_all=False, verbose=False, seed=0)
        if self.llm.n_vocab() < len(tokenizer):
            raise ValueError(f"{path} has {self.llm.n_vocab()} tokens, the tokenizer {len(tokenizer)}: delete "
                             f"{path.parent} to export again")
        self.tok, self.compute_type, self.n_ctx, self.lookup = tokenizer, compute_type, n_ctx, lookup
        self.drafted = self.accepted = self.steps = 0  # prompt-lookup counters (benchmarks read them)

    def _ids(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def _check_room(self, n: int) -> None:
        if n > self.n_ctx:
            raise ValueError(f"a prompt and its answer of {n} tokens exceed llama.cpp's context of {self.n_ctx}")

    def generate(self, prompts: list[str], max_new_tokens: int, temperature: float = 0.0, num_return_sequences: int = 1,
                 seed: int = 0, stop_strings: list[str] | None = None) -> list[list[str]]:
        """One greedy answer per prompt, as `HFGenerator.generate` writes it (text up to the EOS)."""
        if temperature > 0 or num_return_sequences != 1 or stop_strings:
            raise NotImplementedError("LlamaCppGenerator answers greedily, one answer per prompt, without stop strings")
        eos, out = self.tok.eos_token_id, []
        for p in prompts:
            ids = self._ids(with_bos(self.tok, p))
            self._check_room(len(ids) + max_new_tokens)
            self._feed_prompt(ids)
            new = self._greedy(ids, max_new_tokens, eos)
            text = self.tok.decode(new, skip_special_tokens=False)
            out.append([text.replace(self.tok.pad_token, "") if self.tok.pad_token else text])
        return out

    def _greedy(self, ids: list[int], max_new_tokens: int, eos: int) -> list[int]:
        """The greedy answer after the prompt `ids` (already fed). By hand: an argmax over llama.cpp's
        logits, without llama-cpp-python's per-token sampler chain, so each token holds the GIL for
        microseconds (the service's other threads wait less, and wait on less: benchmarks/llamacpp_company.py).

        With `lookup`, each step also feeds up to `lookup` tokens drafted from the text so far
        (`lookup_draft`) in the same pass, with logits at every position, and keeps the drafted tokens the
        model itself would have written next: the same answer, in fewer passes where the drafts are kept
        (a pass over a few tokens reads the weights once); where they are not, each pass costs more."""
        new: list[int] = []
        last = self._last_logits().copy()
        while len(new) < max_new_tokens:
            t = int(last.argmax())
            if t == eos:
                break
            new.append(t)
            if len(new) == max_new_tokens:
                break
            draft = lookup_draft(ids + new, self.lookup)[: max_new_tokens - len(new)] if self.lookup else []
            if not draft:
                self.llm.eval([t])
                last = self._last_logits().copy()
                continue
            rows = self._eval_rows([t] + draft)  # rows[j]: the model's next-token logits after [t] + draft[:j]
            ok = 0
            while ok < len(draft) and draft[ok] != eos and int(rows[ok].argmax()) == draft[ok]:
                ok += 1
            new += draft[:ok]
            self.llm.n_tokens = len(ids) + len(new)  # the rejected drafts' keys and values go at the next feed
            last = rows[ok]
            self.steps, self.drafted, self.accepted = self.steps + 1, self.drafted + len(draft), self.accepted + ok
        return new

    def _eval_rows(self, tokens: list[int]) -> np.ndarray:
        """Feed `tokens` after what the KV cache holds, in one llama_decode with logits at every position
        (llama-cpp-python's eval keeps only the last unless the whole context keeps all: n_ctx x vocab
        floats). Returns them, one row per token."""
        import llama_cpp

        llm = self.llm
        llm._ctx.kv_cache_seq_rm(-1, llm.n_tokens, -1)
        llm._batch.set_batch(batch=tokens, n_past=llm.n_tokens, logits_all=True)
        llm._ctx.decode(llm._batch)
        llm.input_ids[llm.n_tokens : llm.n_tokens + len(tokens)] = tokens
        llm.n_tokens += len(tokens)
        n = llm.n_vocab()
        return np.stack([np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, i), shape=(n,)).copy()
                         for i in range(len(tokens))])

    def _feed_prompt(self, ids: list[int]) -> None:
        """Evaluate `ids`, keeping the KV cache of the longest start they share with what it holds (at
        least the last token runs: its logits start the answer)."""
        llm = self.llm
        shared = _common(list(llm.input_ids[: llm.n_tokens]), ids)
        llm.n_tokens = min(shared, len(ids) - 1)
        llm.eval(ids[llm.n_tokens:])

    def _last_logits(self) -> np.ndarray:
        """llama.cpp's logits after the last token evaluated, read in place (without logits_all,
        `Llama.scores` is not filled: llama.cpp holds only the last position's logits)."""
        import llama_cpp

        return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self.llm.ctx, -1), shape=(self.llm.n_vocab(),))

    def first_slot_ranking(self, text: str, candidate_sids: list[str], fmt) -> list[str]:
        """`ranking.first_slot_ranking` on this model: the candidates ordered by the log-likelihood of
        each one's entry (and the "," after it) in the ranking's first slot; ties keep the incoming order."""
        sids = [canonical_sid(s) for s in candidate_sids]
        conts = [self._ids(opt + ",") for opt in fmt.options(candidate_sids)]
        scores = self.score_continuations(self._ids(with_bos(self.tok, text)), conts)
        return [sids[i] for i in sorted(range(len(sids)), key=lambda i: (-scores[i], i))]

    def score_continuations(self, prefix: list[int], conts: list[list[int]]) -> list[float]:
        """log p(continuation | prefix) of each continuation (token id lists, none empty). The prefix runs
        once; each continuation then extends it a token at a time (the KV cache rolled back to the
        prefix in between), and a step two continuations share is run once."""
        llm = self.llm
        self._check_room(len(prefix) + max(map(len, conts)))
        self._feed_prompt(prefix)
        logp = {(): _log_softmax(self._last_logits())}
        fed: list[int] = []  # the tokens after the prefix the KV cache holds now
        for c in conts:
            for j in range(1, len(c)):
                key = tuple(c[:j])
                if key in logp:
                    continue
                keep = _common(fed, c[: j - 1])
                llm.n_tokens = len(prefix) + keep
                llm.eval(c[keep:j])
                fed = list(c[:j])
                logp[key] = _log_softmax(self._last_logits())
        return [float(sum(logp[tuple(c[:j])][c[j]] for j in range(len(c)))) for c in conts]


def lookup_draft(seq: list[int], k: int, max_ngram: int = 3) -> list[int]:
    """Prompt-lookup drafting (Saxena, 2023; HF's `prompt_lookup_num_tokens`): the up to `k` tokens that
    followed the latest earlier occurrence of the sequence's last n tokens (n = `max_ngram` down to 1).
    Answers that copy long spans from their prompt (SIDs, titles) make such guesses right; the recipe's
    partition reasoning kept 6% of them (docs/serving.md). [] when no n-gram recurs."""
    arr, size = np.asarray(seq), len(seq)
    for n in range(min(max_ngram, size - 1), 0, -1):
        hit = np.ones(size - n, dtype=bool)  # hit[s]: seq[s:s+n] is the tail, for every start before the tail's own
        for i in range(n):
            hit &= arr[i : size - n + i] == arr[size - n + i]
        starts = np.flatnonzero(hit)
        if starts.size:
            return seq[starts[-1] + n : starts[-1] + n + k]
    return []


def _common(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _log_softmax(logits) -> np.ndarray:
    x = np.asarray(logits, dtype=np.float64)
    x = x - x.max()
    return x - np.log(np.exp(x).sum())

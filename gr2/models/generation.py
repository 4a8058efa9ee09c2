"""Generation behind one interface, and SID-constrained decoding (a slate's ranking: gr2.models.ranking).

`Generator` is what stages call (`generate(prompts, ...) -> texts`); `HFGenerator` runs Hugging Face
`generate` on the local model. A vLLM engine can replace it on GPU clusters by implementing the same
method. `SidTrie` restricts decoding to valid SIDs: after `<|sid_begin|>` only code tokens that continue
some catalog SID are allowed, then `<|sid_end|>`.
"""

from __future__ import annotations

from typing import Protocol

import torch

from gr2.platform.sids import SID_BEGIN, SID_END, level_token, parse_sid


class Generator(Protocol):
    def generate(self, prompts: list[str], max_new_tokens: int, temperature: float = 0.0, num_return_sequences: int = 1,
                 seed: int = 0) -> list[list[str]]: ...


class SidTrie:
    """Prefix tree over the token ids of every catalog SID, each ending with its end token.

    With SID tokens (the paper's form) a SID is `<|sid_begin|>` + one token per level + `<|sid_end|>`;
    written as text in the model's own vocabulary (`fmt.sid == "text"`) it is the tokens of
    " a12 b200 c7 d31" followed by end-of-text, and there is no begin token."""

    def __init__(self, tokenizer, sids: list[str], fmt=None):
        text = fmt is not None and fmt.sid == "text"
        self.begin = None if text else tokenizer.convert_tokens_to_ids(SID_BEGIN)
        self.end = tokenizer.eos_token_id if text else tokenizer.convert_tokens_to_ids(SID_END)
        self.root: dict = {}
        self.sid_of: dict[tuple[int, ...], str] = {}
        self.longest = 0
        for sid in sids:
            if text:
                ids = tuple(tokenizer(" " + fmt.show_sid(sid), add_special_tokens=False)["input_ids"]) + (self.end,)
            else:
                toks = [level_token(i, c) for i, c in enumerate(parse_sid(sid))]
                ids = tuple(tokenizer.convert_tokens_to_ids(toks)) + (self.end,)
            node = self.root
            for t in ids:
                node = node.setdefault(t, {})
            self.sid_of[ids[:-1]] = sid
            self.longest = max(self.longest, len(ids))

    def allowed(self, generated: list[int]) -> list[int]:
        """Tokens allowed next, given the tokens generated after the prompt (and <|sid_begin|>)."""
        node = self.root
        for t in generated:
            node = node.get(t)
            if node is None:
                return []
        return list(node) or []


def beam_search_sids(model, tokenizer, prompt: str, trie: SidTrie, num_beams: int, max_levels: int) -> list[str]:
    """Top `num_beams` catalog SIDs continuing `prompt`, by beam search constrained to the trie; best
    first. With SID tokens the prompt is followed by <|sid_begin|>; with text SIDs the prompt should end
    where the SID's leading space would start."""
    ids = tokenizer(with_bos(tokenizer, prompt), add_special_tokens=False, return_tensors="pt")["input_ids"]
    if trie.begin is not None:
        ids = torch.cat([ids, torch.tensor([[trie.begin]])], dim=1)
    start = ids.shape[1]
    eos = tokenizer.eos_token_id

    def allowed(_batch_id, sent):
        nxt = trie.allowed(sent[start:].tolist())
        return nxt or [eos]

    with torch.no_grad():
        out = model.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=max(max_levels + 1, trie.longest), num_beams=num_beams,
            num_return_sequences=num_beams, do_sample=False, prefix_allowed_tokens_fn=allowed,
            pad_token_id=tokenizer.pad_token_id, eos_token_id=trie.end, early_stopping=True,
        )
    result = []
    for row in out[:, start:].tolist():
        if trie.end in row:
            row = row[: row.index(trie.end)]
        sid = trie.sid_of.get(tuple(row))
        if sid is not None and sid not in result:
            result.append(sid)
    return result


class HFGenerator:
    """Sampling or greedy decoding with Hugging Face generate, in batches (left padding), on a static KV
    cache by default (see `cache_kwargs`)."""

    def __init__(self, model, tokenizer, batch_size: int = 8, cache: str = "static"):
        self.model, self.tokenizer, self.batch_size, self.cache = model, tokenizer, batch_size, cache

    def generate(self, prompts: list[str], max_new_tokens: int, temperature: float = 0.0, num_return_sequences: int = 1,
                 seed: int = 0, stop_strings: list[str] | None = None) -> list[list[str]]:
        tok = self.tokenizer
        tok.padding_side = "left"
        out: list[list[str]] = []
        torch.manual_seed(seed)
        for i in range(0, len(prompts), self.batch_size):
            chunk = prompts[i : i + self.batch_size]
            texts = [with_bos(tok, p) for p in chunk]
            enc = tok(texts, add_special_tokens=False, return_tensors="pt", padding=True)
            with torch.no_grad():
                gen = self.model.generate(
                    **enc, max_new_tokens=max_new_tokens, do_sample=temperature > 0,
                    temperature=temperature if temperature > 0 else None, top_k=None, top_p=None,
                    num_return_sequences=num_return_sequences, pad_token_id=tok.pad_token_id,
                    eos_token_id=tok.eos_token_id, **cache_kwargs(self.cache),
                    **({"stop_strings": stop_strings, "tokenizer": tok} if stop_strings else {}),
                )
            new = gen[:, enc["input_ids"].shape[1]:]
            decoded = tok.batch_decode(new, skip_special_tokens=False)
            decoded = [d.split(tok.eos_token)[0].replace(tok.pad_token, "") for d in decoded]
            out += [decoded[j * num_return_sequences : (j + 1) * num_return_sequences] for j in range(len(chunk))]
        return out


def cache_kwargs(kind: str) -> dict:
    """`generate` keyword arguments for a KV cache kind. `dynamic` is Hugging Face's default: it grows by
    torch.cat at every step, which copies the whole cache once per new token (on 2 CPU threads, at batch
    8 and 600-token prompts, that copy took as long as the step's matmuls; benchmarks/generation_speed.py).
    `static` allocates prompt + answer once and writes each token in place."""
    if kind not in ("dynamic", "static"):
        raise ValueError(f"unknown KV cache kind {kind!r}: dynamic or static")
    return {"cache_implementation": "static"} if kind == "static" else {}


def sample_group(model, prompt_ids: list[int], group: int, max_new_tokens: int, temperature: float, pad_id: int,
                 eos_id: int | None, tokenizer=None, stop_strings: list[str] | None = None,
                 min_new_tokens: int | None = None) -> torch.Tensor:
    """`group` sampled answers to one prompt (a DAPO rollout group): the prompt runs once, at batch 1,
    into a static cache that is then repeated `group` times, instead of prefilling `group` copies of the
    same prompt. Returns prompt + answer ids, `group` rows (padded with `pad_id` after EOS) like
    `generate`."""
    from transformers import StaticCache

    ids = torch.tensor([prompt_ids])
    cache = StaticCache(config=model.config, max_cache_len=len(prompt_ids) + max_new_tokens)
    with torch.no_grad():
        if len(prompt_ids) > 1:  # generate runs the last prompt token itself, to get the first answer token
            model(input_ids=ids[:, :-1], cache=cache, use_cache=True, logits_to_keep=1)  # fills the cache only
        for layer in cache.layers:  # StaticLayer has no batch_repeat_interleave (transformers 5.24)
            if not layer.is_initialized:  # a one-token prompt: nothing cached yet, generate allocates at batch G
                continue
            layer.keys = layer.keys.repeat_interleave(group, dim=0)
            layer.values = layer.values.repeat_interleave(group, dim=0)
            layer.batch_size = group
        extra = {"stop_strings": stop_strings, "tokenizer": tokenizer} if stop_strings else {}
        # top_k=0 / top_p=1: sample from the whole distribution (DAPO's importance ratios assume it)
        sampling = {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0}
        extra.update(sampling if temperature > 0 else {"do_sample": False})
        if min_new_tokens:
            extra["min_new_tokens"] = min_new_tokens
        return model.generate(ids.repeat(group, 1), attention_mask=torch.ones(group, ids.shape[1], dtype=torch.long),
                              cache=cache, max_new_tokens=max_new_tokens, pad_token_id=pad_id,
                              eos_token_id=eos_id, **extra)


def with_bos(tokenizer, text: str) -> str:
    """`text` with the tokenizer's BOS in front, unless it already starts with it (a chat template writes
    its own start marker, which is SmolLM2's BOS: adding another would be a prompt never trained on)."""
    bos = tokenizer.bos_token or ""
    return text if not bos or text.startswith(bos) else bos + text

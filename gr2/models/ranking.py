"""Ranking a slate with the model: decoding restricted to the candidates, and the answers of a re-ranker.

`constrained_ranking` fills an answer's ranking slot by slot among the candidates not yet listed, over a
`Prefix` (the prompt run once and kept as a KV cache, scoring every candidate's entry in one pass);
`ranking_logprobs` reads the probability of a given ranking the same way, `first_slot_ranking` orders the
slate from the first slot alone. `rerank_answers` writes a model's answers to a batch of slates, free and
constrained.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

from gr2.models.generation import HFGenerator, with_bos
from gr2.platform.sids import canonical_sid


def constrained_ranking(model, tokenizer, text: str, candidate_sids: list[str], temperature: float = 0.0,
                        fmt=None, first_slot_only: bool = False, prefix: Prefix | None = None) -> list[str]:
    """Fill the ranking part of an answer so that it is a permutation of exactly the candidates.

    `text` is the prompt plus the answer so far, up to and including `"ranking":[`. Slot by slot, the
    model's log-likelihood of each candidate's entry (its SID in quotes, or its slate number, as `fmt`
    writes it) followed by the `,` that separates it from the next entry is computed for every candidate not yet
    listed and the most likely one is taken: decoding restricted to the candidates not yet listed, so
    the answer can never repeat, drop or invent an item. The separator is part of the scored text, so
    slate number 1 is never confused with the first digit of 10. With `temperature` > 0 the slot is
    sampled from softmax(log-likelihood / temperature) instead (DAPO's constrained rollouts).

    The prefix is run once and kept as a KV cache; each slot only runs the candidates' few tokens on a
    copy of it, and then the chosen one on the cache itself (about K x |entry| tokens per slot instead of
    K x the whole prompt). With `first_slot_only` the first slot's log-likelihoods order the whole list
    (`first_slot_ranking`). Returns the canonical SIDs, best first.

    `prefix`: the prompt already run (a `Prefix.fork()` of it, which this call extends and uses up); then
    `text` is only the answer so far. DAPO's G rollouts of one prompt share its prefill this way instead
    of each running prompt + reasoning from the start (the prompt is most of that text).
    """
    from gr2.rerank.formats import RerankFormat

    fmt = fmt or RerankFormat()
    left = list(zip([canonical_sid(s) for s in candidate_sids], fmt.options(candidate_sids)))
    enc = lambda t: tokenizer(t, add_special_tokens=False)["input_ids"]  # noqa: E731
    if prefix is None:
        prefix = Prefix(model, enc(with_bos(tokenizer, text)))
    else:
        prefix.extend(enc(text))
    chosen: list[str] = []
    while left:
        if len(left) == 1:
            chosen.append(left.pop()[0])
            break
        conts = [enc(opt + ",") for _, opt in left]  # another entry always follows a scored slot
        scores = prefix.score(conts)
        if first_slot_only:  # stable: ties keep the incoming order, as argmax keeps the first maximum
            return [left[i][0] for i in sorted(range(len(left)), key=lambda i: (-scores[i], i))]
        if temperature > 0:
            probs = torch.softmax(torch.tensor(scores) / temperature, 0)
            pick = int(torch.multinomial(probs, 1))
        else:
            pick = int(np.argmax(scores))
        chosen.append(left.pop(pick)[0])
        prefix.take(pick)
    return chosen


def ranking_logprobs(model, tokenizer, text: str, candidate_sids: list[str], order: list[int], fmt=None,
                     prefix: Prefix | None = None) -> list[float]:
    """Per slot, the log-probability that constrained decoding at temperature 1 lists candidate
    `order[slot]` there, given the slots before it: the log-softmax of `constrained_ranking`'s scores over
    the candidates not yet listed. Their sum is the log-probability of the whole ranking among the K!
    permutations (log 1/K! for a model with no preference), and the first is that of listing order[0]
    first. The last slot has one candidate left (0). `text` as for `constrained_ranking`; `order` indexes
    `candidate_sids`; `prefix` as for `constrained_ranking` (a fork of the prompt already run, so that
    several orders share one prefill). Reads a propensity without sampling it (benchmarks/copy_propensity.py)."""
    from gr2.rerank.formats import RerankFormat

    fmt = fmt or RerankFormat()
    if sorted(order) != list(range(len(candidate_sids))):
        raise ValueError(f"order {order} is not a permutation of {len(candidate_sids)} candidates")
    enc = lambda t: tokenizer(t, add_special_tokens=False)["input_ids"]  # noqa: E731
    options = fmt.options(candidate_sids)
    if prefix is None:
        prefix = Prefix(model, enc(with_bos(tokenizer, text)))
    else:
        prefix.extend(enc(text))
    left, out = list(range(len(candidate_sids))), []
    for want in order[:-1]:
        scores = torch.tensor(prefix.score([enc(options[i] + ",") for i in left]), dtype=torch.float64)
        pick = left.index(want)
        out.append(float(torch.log_softmax(scores, 0)[pick]))
        prefix.take(pick)
        left.pop(pick)
    return out + [0.0]


def ranking_head(answer: str) -> str:
    """A greedy answer up to and including `"ranking":[`, where constrained decoding takes over (an answer
    that never reached its ranking gets the key written after it)."""
    cut = answer.find('"ranking"')
    return (answer[:cut] if cut >= 0 else answer + '","') + '"ranking":['


def first_slot_ranking(model, tokenizer, text: str, candidate_sids: list[str], fmt=None) -> list[str]:
    """The candidates ordered by how likely the model is to list each *first*: one pass.

    `constrained_ranking` decodes K-1 slots, each a forward pass over the K candidates' entries; here
    only the first slot is scored and its log-likelihoods order the whole list (single-token listwise
    ranking: FIRST, Reddy et al., 2024). The prompt's prefill plus one batched step, about 1/(K-1) of the
    slot decoding after the prefill. It is an approximation of the slot-by-slot answer: where the first
    choice is clear and the tail is not, the orders can differ below the top (`benchmarks/
    first_slot_ranking.py` measures both on test slates). Ties keep the incoming order. Returns the
    canonical SIDs, best first.
    """
    return constrained_ranking(model, tokenizer, text, candidate_sids, fmt=fmt, first_slot_only=True)


class Prefix:
    """A prompt run once and kept as a KV cache, to score many short continuations of it: `score` runs the
    continuations' own tokens only, all of them as one row behind the prompt, each attending to the prompt
    and to its own earlier tokens (a tree attention mask), so neither the cache nor the prompt is repeated;
    `take` adopts a scored continuation and `extend` appends tokens for good."""

    def __init__(self, model, ids: list[int]):
        self.model = model
        with torch.no_grad():
            # only the last position's logits are read: without logits_to_keep the LM head runs over the
            # whole prompt (on SmolLM2's 49k vocabulary, a fifth of a 750-token prompt's FLOPs)
            out = model(input_ids=torch.tensor([ids]), use_cache=True, logits_to_keep=1)
        self.cache, self.last, self.length = out.cache, out.logits[0, -1].float(), len(ids)
        self._conts, self._scored = [], None

    def _tree_mask(self, conts: list[list[int]], starts: list[int]) -> torch.Tensor:
        """(1, 1, n, length + n) for the n continuation tokens in a row (continuation i from starts[i]):
        each sees the whole prompt and its own continuation up to itself, never another continuation.
        Boolean (True = attend) for SDPA, additive (0 / -inf) for the attention implementations that add
        the mask to the scores."""
        n = sum(map(len, conts))
        seen = torch.zeros(n, self.length + n, dtype=torch.bool)
        seen[:, : self.length] = True
        for c, at in zip(conts, starts):
            block = torch.ones(len(c), len(c), dtype=torch.bool).tril()
            seen[at : at + len(c), self.length + at : self.length + at + len(c)] = block
        if getattr(self.model.config, "_attn_implementation", "sdpa") == "sdpa":
            return seen[None, None]
        dtype = next(self.model.parameters()).dtype
        return torch.zeros(seen.shape, dtype=dtype).masked_fill(~seen, torch.finfo(dtype).min)[None, None]

    def score(self, conts: list[list[int]]) -> list[float]:
        """log p(continuation | prefix) of each continuation (token lists, none empty)."""
        width = max(map(len, conts))
        first = torch.log_softmax(self.last, -1)
        self._conts, self._scored = conts, None
        if width == 1:
            return [float(first[c[0]]) for c in conts]
        starts = [0, *itertools.accumulate(map(len, conts[:-1]))]  # where each continuation begins in the row
        ids = torch.tensor([[t for c in conts for t in c]])
        positions = torch.tensor([[self.length + j for c in conts for j in range(len(c))]])
        with torch.no_grad():
            logits = self.model(input_ids=ids, cache=self.cache, attention_mask=self._tree_mask(conts, starts),
                                position_ids=positions, use_cache=True).logits[0]
        # the forward appended every continuation's keys and values: keep them aside, the prefix as it was
        added = [(layer.keys[:, :, self.length :], layer.values[:, :, self.length :]) for layer in self.cache.layers]
        self.cache.crop(-ids.shape[1])  # transformers 5: a negative count of tokens to drop
        self._scored = (added, logits, starts)
        scores = []
        for c, at in zip(conts, starts):
            score = float(first[c[0]])
            if len(c) > 1:  # only the positions that predict a continuation token get a softmax
                rest = torch.log_softmax(logits[at : at + len(c) - 1].float(), -1)
                score += float(rest[torch.arange(len(c) - 1), torch.tensor(c[1:])].sum())
            scores.append(score)
        return scores

    def fork(self) -> Prefix:
        """An independent copy to extend or score without touching this one (its KV cache is copied)."""
        import copy

        twin = object.__new__(Prefix)
        twin.model, twin.length, twin.last = self.model, self.length, self.last
        twin.cache, twin._conts, twin._scored = copy.deepcopy(self.cache), [], None
        return twin

    def take(self, i: int) -> None:
        """`extend` by the i-th continuation of the last `score` call, reusing the keys and values that
        call already computed for it (its slice of the scored row) instead of running it again (that
        second pass was a quarter of a constrained DAPO rollout's time)."""
        if self._scored is None:  # one-token continuations were scored without a forward pass
            self.extend(self._conts[i])
            return
        added, logits, starts = self._scored
        at, n = starts[i], len(self._conts[i])
        for layer_idx, (keys, values) in enumerate(added):  # RoPE placed them at length + j already
            self.cache.update(keys[:, :, at : at + n], values[:, :, at : at + n], layer_idx)
        self.last, self.length = logits[at + n - 1].float(), self.length + n
        self._scored = None

    def extend(self, ids: list[int]) -> None:
        if not ids:
            return
        with torch.no_grad():
            o = self.model(input_ids=torch.tensor([ids]), cache=self.cache, use_cache=True, logits_to_keep=1,
                           attention_mask=torch.ones(1, self.length + len(ids), dtype=torch.long))
        self.cache, self.last, self.length = o.cache, o.logits[0, -1].float(), self.length + len(ids)
        self._scored = None


def answer_rerank(model, tokenizer, cases, max_new_tokens: int, constrained: bool = False, on_progress=None, fmt=None,
                  batch_size: int = 8, autocast: bool = False):
    """Greedy answers to the re-rank prompt for (Slate, labels) cases, asked in `fmt` (the
    format the model was trained on; the paper's by default): (orders, shaped) of `rerank_answers` for the
    free answers, or with `constrained` for the constrained ones."""
    mode = "constrained" if constrained else "free"
    return rerank_answers(model, tokenizer, cases, max_new_tokens, (mode,), on_progress, fmt, batch_size, autocast)[mode]


def rerank_answers(model, tokenizer, cases, max_new_tokens: int, modes=("free", "constrained"), on_progress=None,
                   fmt=None, batch_size: int = 8, autocast: bool = False, done: dict | None = None,
                   on_answer=None, generator=None) -> dict:
    """{mode: (orders, shaped)} for mode in `modes`: per slate the output order as indices into the
    candidates (None when the answer is not a valid permutation) and how many answers had the JSON shape.

    `free` parses the greedy answer as written. `constrained` keeps the same greedy reasoning up to
    `"ranking"` and decodes the ranking with `constrained_ranking`, so every answer is a valid permutation
    by construction. Greedy decoding makes that reasoning the free answer's own prefix, so asking for
    both generates once. `autocast` runs the forward passes under bf16 autocast on CPU (train.autocast).

    Resuming: `done` maps a slate id to the record `on_answer(slate_id, record)` was given for it by an
    earlier call with the same model and settings; those slates are not asked again. A record is
    {"text", mode: order or None, mode + "_shaped": 0 or 1}, so a long evaluation can span sittings.

    `generator` writes the greedy answers in place of Hugging Face generate on `model` (an object with
    HFGenerator's `generate`, e.g. gr2.models.ct2.CT2Generator); the constrained rankings always run on `model`.
    """
    from gr2.platform.precision import cpu_autocast
    from gr2.rerank.formats import RerankFormat
    from gr2.rerank.permutations import ranking_positions

    fmt = fmt or RerankFormat()
    gen = generator or HFGenerator(model, tokenizer, batch_size=batch_size)
    done = dict(done or {})
    # Constrained answers alone need only the reasoning: stop there rather than write a ranking.
    stop = ['"ranking"'] if "free" not in modes and generator is None else None  # CT2 has no stop strings
    on_cpu = autocast and next(model.parameters()).device.type == "cpu"
    todo = [c for c in cases if c[0].slate_id not in done]
    if on_progress and len(todo) < len(cases):
        on_progress(len(cases) - len(todo), len(cases))
    for i in range(0, len(todo), batch_size):
        chunk = todo[i : i + batch_size]
        prompts = [fmt.prompt(s.history, s.candidates, tokenizer) for s, _ in chunk]
        with cpu_autocast(on_cpu):
            texts = gen.generate(prompts, max_new_tokens=max_new_tokens, stop_strings=stop)
        for (s, _), prompt, (text,) in zip(chunk, prompts, texts):
            sids = [c.sid for c in s.candidates]
            record = {"text": text}
            if "free" in modes:
                parsed = fmt.parse(text, sids)
                record["free"] = ranking_positions(parsed.ranking, sids) if parsed.ok else None
                record["free_shaped"] = int(fmt.answer_shape(text, len(sids)))
            if "constrained" in modes:
                head = ranking_head(text)
                with cpu_autocast(on_cpu):
                    ranking = constrained_ranking(model, tokenizer, prompt + head, sids, fmt=fmt)
                record["constrained"], record["constrained_shaped"] = ranking_positions(ranking, sids), 1
            done[s.slate_id] = record
            if on_answer:
                on_answer(s.slate_id, record)
        if on_progress:
            on_progress(len(cases) - len(todo) + min(i + batch_size, len(todo)), len(cases))
    records = [done[s.slate_id] for s, _ in cases]
    orders = {m: [r[m] for r in records] for m in modes}
    shaped = {m: sum(int(r[m + "_shaped"]) for r in records) for m in modes}
    return {m: (orders[m], shaped[m]) for m in modes}

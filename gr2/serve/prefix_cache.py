"""Per-user prompt heads kept as KV caches, so a user ranked again with new candidates skips that part of
the prefill.

A ranking service calls the re-ranker for the same user again and again (the next page, a refresh, a new
pre-ranker slate): the prompt's head (the role, the task and the user's history) is the same each time and
only the candidates differ. :class:`PrefixCache` keeps the last `entries` heads run by the model as
`ranking.Prefix` objects (least recently used evicted) and answers a prompt with a copy of its head's
cache plus the text still to run, as vLLM's automatic prefix caching does for any shared start.

Where the head ends is found without knowing the prompt format: :func:`candidate_free_head` renders the
prompt a second time with the candidates in reverse order; the two agree up to the first candidate, and the
head ends at the last line break before that. A head is used only where tokenizing it and the rest apart
gives exactly the whole prompt's tokens, so a cached answer scores the same tokens as an uncached one.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from os.path import commonprefix


def candidate_free_head(prompt: str, reordered: str) -> int:
    """Characters of `prompt` that do not depend on the candidates: up to the last line break before the
    first place where `reordered` (the same prompt with the candidates in another order) differs. 0 when
    there is no such line break."""
    shared = len(commonprefix([prompt, reordered]))
    if shared == len(prompt):  # the candidates did not change the text: nothing to split on
        return 0
    return prompt.rfind("\n", 0, shared) + 1


class PrefixCache:
    """The last `entries` prompt heads run by `model`, keyed by their token ids; thread-safe."""

    def __init__(self, model, tokenizer, entries: int):
        self.model, self.tok, self.entries = model, tokenizer, entries
        self._heads: OrderedDict[tuple[int, ...], object] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = self.unsplit = 0

    def _enc(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def split(self, text: str, head_chars: int):
        """(a fork of the cached head's Prefix, the text after the head) for `text` (BOS included where
        the tokenizer wants one), or (None, text) when the cache is off or the head is not a token
        boundary. A head not cached yet is run and kept."""
        from gr2.models.ranking import Prefix

        if self.entries <= 0 or head_chars <= 0:
            return None, text
        head, rest = text[:head_chars], text[head_chars:]
        head_ids = self._enc(head)
        if not rest or self._enc(text) != head_ids + self._enc(rest):
            with self._lock:
                self.unsplit += 1
            return None, text
        key = tuple(head_ids)
        with self._lock:
            prefix = self._heads.get(key)
            if prefix is not None:
                self._heads.move_to_end(key)
                self.hits += 1
                return prefix.fork(), rest
            self.misses += 1
        prefix = Prefix(self.model, head_ids)
        with self._lock:
            self._heads[key] = prefix
            while len(self._heads) > self.entries:
                self._heads.popitem(last=False)
        return prefix.fork(), rest

    def metrics_text(self) -> str:
        """Prometheus lines: lookups by result (hit, miss, unsplit) and the heads held."""
        with self._lock:
            counts, held = {"hit": self.hits, "miss": self.misses, "unsplit": self.unsplit}, len(self._heads)
        lines = ["# HELP gr2_prefix_cache_lookups_total Ranking prompts by whether their head's KV cache was reused.",
                 "# TYPE gr2_prefix_cache_lookups_total counter"]
        lines += [f'gr2_prefix_cache_lookups_total{{result="{k}"}} {v}' for k, v in counts.items()]
        lines += ["# HELP gr2_prefix_cache_heads Prompt heads held.", "# TYPE gr2_prefix_cache_heads gauge",
                  f"gr2_prefix_cache_heads {held}"]
        return "\n".join(lines) + "\n"

"""An LM example as text (prompt, completion) and its tokenisation, and the next-item prompt: what a
mid-trained model learnt from and is asked again at inference. Eval scores candidates by their
likelihood after exactly this prompt, tokenised exactly as in training, so both read it here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gr2.platform.sids import wrap
from gr2.rerank.catalog import CatalogItem


@dataclass
class Example:
    task: str
    prompt: str
    completion: str
    # Optional split of the completion into weighted parts: [(text, weight), ...]; None = one part of weight 1.
    parts: list[tuple[str, float]] | None = field(default=None)


def show_wrapped(sid: str) -> str:
    return wrap(sid)


def history_text(items: list[CatalogItem], show=show_wrapped) -> str:
    return ", ".join(show(i.sid) for i in items)


def sequential(history: list[CatalogItem], target: CatalogItem | None, show=show_wrapped) -> Example:
    """History -> next item. `target` None gives the prompt alone (scoring candidates after it)."""
    return Example("sequential", f"A user bought, in order: {history_text(history, show)}. Next they buy",
                   f" {show(target.sid)}" if target is not None else "")


def tokenize_example(tokenizer, ex: Example) -> tuple[list[int], list[float]]:
    """Token ids of bos + prompt + completion + eos and a per-token loss weight (0 on the prompt)."""
    prompt = tokenizer(ex.prompt, add_special_tokens=False)["input_ids"]
    # A chat-templated prompt already starts with the model's start marker (SmolLM2's BOS): no second one.
    has_bos = tokenizer.bos_token_id is not None and not (tokenizer.bos_token and ex.prompt.startswith(tokenizer.bos_token))
    ids = ([tokenizer.bos_token_id] if has_bos else []) + prompt
    weights = [0.0] * len(ids)
    for text, w in ex.parts or [(ex.completion, 1.0)]:
        piece = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids += piece
        weights += [float(w)] * len(piece)
    ids.append(tokenizer.eos_token_id)
    weights.append(weights[-1] if weights else 1.0)  # learning to stop counts like the last part
    return ids, weights

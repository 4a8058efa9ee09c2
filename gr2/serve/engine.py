"""The re-rank service's core, without Ray: request checks, the model, fallbacks and metrics.

`gr2.serve.app` puts this behind Ray Serve's HTTP proxy; everything here is plain Python so it can be
tested and reasoned about on its own.

* :func:`parse_request` turns a JSON body into a :class:`RerankRequest` or raises :class:`RequestError`
  with the HTTP status and a message that names the field, the items and the reason. Unknown items are
  named, never guessed: the model only ranks items whose SID and title come from the lake.
* :class:`Reranker` answers a batch of requests with one model: ``reasoning`` writes the trained answer
  (reasoning, then ranking) and parses it; ``ranking`` skips the reasoning and decodes the ranking among
  the candidates (always a valid permutation, the low-latency mode). An answer that is not a valid
  permutation falls back to the incoming order with ``fallback_reason="invalid"``, so a caller always
  gets a permutation of what it sent. The model runs on Hugging Face (``engine="hf"``, the reference),
  CTranslate2 (``"ctranslate2"``) or llama.cpp (``"llamacpp"``): `gr2.models.engines`.
* :class:`Metrics` counts requests, outcomes and latencies and writes them in Prometheus' text format.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

MODES = ("reasoning", "ranking")
# What `compute_type` may be with engine=hf: float32 weights (under bf16 autocast where train.autocast
# says so), the weights cast to bfloat16 once, or int8 dynamically quantized Linears (gr2.platform.precision).
HF_COMPUTE_TYPES = ("float32", "bfloat16", "int8")


class RequestError(Exception):
    """A request the service refuses: ``status`` is the HTTP status (4xx), the message says why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class RerankRequest:
    history: list[str]  # item ids, oldest first
    candidates: list[str]  # item ids in the incoming order
    mode: str
    explain: bool
    deadline_ms: int
    request_id: str | None = None


@dataclass
class Outcome:
    """One answer: ``order`` indexes the request's candidates, best first."""

    order: list[int]
    fallback_reason: str | None = None  # None, "invalid", "timeout", "error"
    reasoning: str | None = None
    model_ms: float = 0.0
    text: str | None = None  # reasoning mode: the model's whole answer as generated (benchmarks compare engines on it)

    @property
    def fallback(self) -> bool:
        return self.fallback_reason is not None


def incoming(k: int, reason: str) -> Outcome:
    return Outcome(list(range(k)), fallback_reason=reason)


def _ids(value, field_name: str, limit: int) -> list[str]:
    if not isinstance(value, list):
        raise RequestError(422, f"{field_name} must be a list of item ids, got {type(value).__name__}")
    if len(value) > limit:
        raise RequestError(413, f"{field_name} has {len(value)} entries; at most {limit} are accepted")
    out = []
    for n, v in enumerate(value):
        if isinstance(v, bool) or not isinstance(v, (str, int)):
            raise RequestError(422, f"{field_name}[{n}] must be a string or an integer item id, got {type(v).__name__}")
        out.append(str(v).strip())
    return out


def parse_request(body, known, k: int, default_mode: str, default_deadline_ms: int, max_deadline_ms: int,
                  max_history: int = 1000) -> RerankRequest:
    """Check a decoded JSON body. `known(ids) -> (resolved ids, unknown)` maps item ids or SIDs to item ids."""
    if not isinstance(body, dict):
        raise RequestError(400, f"the body must be a JSON object, got {type(body).__name__}")
    extra = set(body) - {"history", "candidates", "mode", "explain", "deadline_ms", "request_id"}
    if extra:
        raise RequestError(422, f"unknown field(s) {sorted(extra)}; expected history, candidates, mode, explain, "
                                "deadline_ms, request_id")
    if "candidates" not in body:
        raise RequestError(422, "candidates is required: the K item ids of the incoming slate, in its order")
    candidates = _ids(body["candidates"], "candidates", max(k, 1) * 10)
    history = _ids(body.get("history", []), "history", max_history)
    if len(candidates) != k:
        raise RequestError(422, f"expected {k} candidates (the K the model was trained on), got {len(candidates)}")
    seen, dup = set(), []
    for c in candidates:
        if c in seen and c not in dup:
            dup.append(c)
        seen.add(c)
    if dup:
        raise RequestError(422, f"duplicate candidate(s): {dup}")
    cand_ids, unknown_c = known(candidates)
    hist_ids, unknown_h = known(history)
    if unknown_c or unknown_h:
        parts = [f"candidates {unknown_c}" if unknown_c else "", f"history {unknown_h}" if unknown_h else ""]
        raise RequestError(422, "unknown item(s), not in the lake's catalog with a SID: " + "; ".join(p for p in parts if p))
    if len(set(cand_ids)) != k:
        raise RequestError(422, "two candidates name the same item (an item id and its SID)")
    mode = body.get("mode", default_mode)
    if mode not in MODES:
        raise RequestError(422, f"mode must be one of {list(MODES)}, got {mode!r}")
    explain = body.get("explain", False)
    if not isinstance(explain, bool):
        raise RequestError(422, f"explain must be true or false, got {explain!r}")
    deadline = body.get("deadline_ms", default_deadline_ms)
    if isinstance(deadline, bool) or not isinstance(deadline, int) or not 1 <= deadline <= max_deadline_ms:
        raise RequestError(422, f"deadline_ms must be an integer from 1 to {max_deadline_ms}, got {deadline!r}")
    rid = body.get("request_id")
    if rid is not None and (not isinstance(rid, str) or len(rid) > 200):
        raise RequestError(422, "request_id must be a string of at most 200 characters")
    return RerankRequest(hist_ids, cand_ids, mode, explain, deadline, rid)


class Catalog:
    """Item id -> the lake's CatalogItem (SID, title, categories), and SID -> item id for SID requests."""

    def __init__(self, items: dict):
        from gr2.platform.sids import canonical_sid

        self.items = items
        self.by_sid = {}
        for item_id, it in items.items():
            try:
                self.by_sid[canonical_sid(it.sid)] = item_id
            except ValueError:
                continue

    def resolve(self, ids: list[str]) -> tuple[list[str], list[str]]:
        from gr2.platform.sids import parse_sid, sid_string

        out, unknown = [], []
        for i in ids:
            if i in self.items:
                out.append(i)
                continue
            try:
                hit = self.by_sid.get(sid_string(parse_sid(i)))
            except ValueError:
                hit = None
            (out.append(hit) if hit else unknown.append(i))
        return out, unknown


class Reranker:
    """One model from the lake answering batches of requests; calls are serialised by a lock (one
    model, one KV cache).

    `engine`: ``hf`` runs Hugging Face on PyTorch (the reference); ``ctranslate2`` and ``llamacpp`` run
    the reasoning mode and the one-pass ranking decoder at `compute_type` (gr2.models.engines), and
    HF keeps the slot-by-slot decoder, which neither runs without repeating the prompt. With ``hf``,
    `compute_type` is ``float32`` (the weights as trained), ``bfloat16`` (cast once) or ``int8``
    (dynamically quantized Linears): `gr2.platform.precision.for_inference`. `prefix_cache` > 0 keeps that
    many users' prompt heads as KV caches for the ranking mode on HF (gr2.serve.prefix_cache)."""

    def __init__(self, model_dir: Path, catalog: Catalog, fmt, max_new_tokens: int, autocast: bool, batch_size: int = 8,
                 ranking_decoder: str = "slots", lake: Path | None = None, engine: str = "hf",
                 compute_type: str = "float32", threads: int = 0, decode_threads: int = 0, prefix_cache: int = 0,
                 prompt_lookup: int = 0, int8_scheme: str = "per_channel_head_float"):
        from gr2.models import evidence as ev

        if ranking_decoder not in ("slots", "first"):
            raise ValueError(f"ranking_decoder must be 'slots' or 'first', got {ranking_decoder!r}")
        from gr2.models.engines import ENGINES

        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {list(ENGINES)}, got {engine!r}")
        # A model trained with evidence in its prompt is asked with it: the lake's all-users sequence model.
        if fmt.evidence != "none" and lake is None:
            raise ValueError(f"the model's format shows evidence={fmt.evidence!r}; the service needs the lake that holds it")
        self.model_dir = Path(model_dir)
        self.catalog, self.fmt = catalog, fmt
        self.max_new_tokens, self.autocast, self.batch_size = max_new_tokens, autocast, batch_size
        self.ranking_decoder, self.engine, self.int8_scheme = ranking_decoder, engine, int8_scheme
        self.model, self.tok, self.fast = self._load(compute_type, threads, decode_threads, prompt_lookup)
        self.prefix_cache = None
        if prefix_cache and self.model is not None:
            from gr2.serve.prefix_cache import PrefixCache

            self.prefix_cache = PrefixCache(self.model, self.tok, prefix_cache)
        self.evidence = ev.for_format(fmt, Path(lake)) if lake is not None else None
        self._lock = threading.Lock()

    def _load(self, compute_type: str, threads: int, decode_threads: int, prompt_lookup: int):
        """(HF model or None, tokenizer, the other engine's generator or None): the HF weights only where
        HF answers."""
        from gr2.models.engines import load_generator
        from gr2.models.lm import load_model, load_tokenizer
        from gr2.platform.precision import for_inference

        model = None
        if self.engine == "hf" and compute_type not in HF_COMPUTE_TYPES:
            raise ValueError(f"compute_type {compute_type!r} is not one Hugging Face runs here: one of {list(HF_COMPUTE_TYPES)} "
                             "(int8_float32 and int16 are CTranslate2's: set the engine too)")
        if self.engine == "hf" or self.ranking_decoder == "slots":
            model, tok = load_model(self.model_dir)
            model.eval()
            if self.engine == "hf":  # faster, and the orders may differ from float32's on close calls
                model, autocast_ok = for_inference(model, compute_type, self.int8_scheme)
                self.autocast = self.autocast and autocast_ok
        else:
            tok = load_tokenizer(self.model_dir)
        return model, tok, load_generator(self.engine, self.model_dir, tok, compute_type, threads, self.batch_size,
                                          decode_threads, prompt_lookup)

    def _items(self, req: RerankRequest) -> tuple[list, list]:
        """(history, candidates) as the prompt shows them: item texts, the candidates with their evidence."""
        from gr2.models import evidence as ev
        from gr2.rerank.slate import item_text

        items = self.catalog.items
        hist = [item_text(items[i]) for i in req.history][-self.fmt.history:] if self.fmt.history else []
        return hist, ev.annotate_items(self.evidence, req.history, [item_text(items[i]) for i in req.candidates])

    def _prompt(self, req: RerankRequest) -> tuple[str, list[str]]:
        hist, cands = self._items(req)
        return self.fmt.prompt(hist, cands, self.tok), [c.sid for c in cands]

    def answer(self, reqs: list[RerankRequest]) -> list[Outcome]:
        import torch

        from gr2.platform.precision import cpu_autocast

        out: list[Outcome | None] = [None] * len(reqs)
        with self._lock, torch.inference_mode(), cpu_autocast(self.autocast and self.model is not None):
            free = [n for n, r in enumerate(reqs) if r.mode == "reasoning"]
            if free:
                for n, o in zip(free, self._reason([reqs[n] for n in free])):
                    out[n] = o
            for n, r in enumerate(reqs):
                if r.mode == "ranking":
                    out[n] = self._rank(r)
        return [o for o in out if o is not None]

    def _reason(self, reqs: list[RerankRequest]) -> list[Outcome]:
        """The trained answers of a batch, generated together and parsed; all get the batch's time."""
        from gr2.models.generation import HFGenerator
        from gr2.rerank.permutations import ranking_positions

        t0 = time.perf_counter()
        prompts = [self._prompt(r) for r in reqs]
        gen = self.fast if self.fast is not None else HFGenerator(self.model, self.tok, batch_size=self.batch_size)
        texts = gen.generate([p for p, _ in prompts], max_new_tokens=self.max_new_tokens)
        ms = (time.perf_counter() - t0) * 1000
        out = []
        for (_, sids), (text,) in zip(prompts, texts):
            parsed = self.fmt.parse(text, sids)
            o = Outcome(ranking_positions(parsed.ranking, sids)) if parsed.ok else incoming(len(sids), "invalid")
            o.reasoning, o.model_ms, o.text = (parsed.reasoning if parsed.ok else text), ms, text
            out.append(o)
        return out

    def _rank(self, req: RerankRequest) -> Outcome:
        """The ranking decoded among the candidates after an empty reasoning: always a permutation."""
        from gr2.models.ranking import constrained_ranking
        from gr2.rerank.permutations import ranking_positions

        t0 = time.perf_counter()
        hist, cands = self._items(req)
        prompt, sids = self.fmt.prompt(hist, cands, self.tok), [c.sid for c in cands]
        skeleton = self.fmt.answer("", sids, sids)  # an empty reasoning, then the ranking decoded
        text = prompt + skeleton[: skeleton.index('"ranking"')] + '"ranking":['
        if self.ranking_decoder == "first" and self.fast is not None:
            ranking = self.fast.first_slot_ranking(text, sids, self.fmt)
        else:  # on HF, from the user's cached prompt head where there is one
            prefix, rest = self._head(prompt, text, hist, cands)
            ranking = constrained_ranking(self.model, self.tok, rest, sids, fmt=self.fmt,
                                          first_slot_only=self.ranking_decoder == "first", prefix=prefix)
        return Outcome(ranking_positions(ranking, sids), model_ms=(time.perf_counter() - t0) * 1000)

    def _head(self, prompt: str, text: str, hist: list, cands: list):
        """(the cached Prefix of `text`'s candidate-free head, or None; the text left to run). The prompt
        is rendered a second time, candidates reversed, only where the cache is on."""
        from gr2.models.generation import with_bos
        from gr2.serve.prefix_cache import candidate_free_head

        if self.prefix_cache is None:
            return None, text
        head = candidate_free_head(prompt, self.fmt.prompt(hist, cands[::-1], self.tok))
        if head == 0:
            return None, text
        full = with_bos(self.tok, text)
        return self.prefix_cache.split(full, len(full) - len(text) + head)


@dataclass
class Metrics:
    """Counters and a latency histogram, written in Prometheus' text exposition format."""

    buckets: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
    requests: dict = field(default_factory=dict)  # (mode, outcome) -> count
    fallbacks: dict = field(default_factory=dict)  # reason -> count
    rejected: dict = field(default_factory=dict)  # HTTP status -> count
    counts: list = field(default_factory=list)
    total: float = 0.0
    n: int = 0

    def __post_init__(self):
        self.counts = [0] * (len(self.buckets) + 1)
        self._lock = threading.Lock()

    def observe(self, mode: str, outcome: Outcome, seconds: float) -> None:
        with self._lock:
            kind = "fallback" if outcome.fallback else "ok"
            self.requests[(mode, kind)] = self.requests.get((mode, kind), 0) + 1
            if outcome.fallback:
                self.fallbacks[outcome.fallback_reason] = self.fallbacks.get(outcome.fallback_reason, 0) + 1
            i = next((j for j, b in enumerate(self.buckets) if seconds <= b), len(self.buckets))
            self.counts[i] += 1
            self.total += seconds
            self.n += 1

    def reject(self, status: int) -> None:
        with self._lock:
            self.rejected[status] = self.rejected.get(status, 0) + 1

    def text(self) -> str:
        with self._lock:
            lines = ["# HELP gr2_requests_total Re-rank requests answered, by mode and outcome (ok or fallback).",
                     "# TYPE gr2_requests_total counter"]
            lines += [f'gr2_requests_total{{mode="{m}",outcome="{o}"}} {c}' for (m, o), c in sorted(self.requests.items())]
            lines += ["# HELP gr2_fallbacks_total Answers that fell back to the incoming order, by reason.",
                      "# TYPE gr2_fallbacks_total counter"]
            lines += [f'gr2_fallbacks_total{{reason="{r}"}} {c}' for r, c in sorted(self.fallbacks.items())]
            lines += ["# HELP gr2_rejected_total Requests refused with a 4xx status.", "# TYPE gr2_rejected_total counter"]
            lines += [f'gr2_rejected_total{{status="{s}"}} {c}' for s, c in sorted(self.rejected.items())]
            lines += ["# HELP gr2_request_seconds Time from receiving a valid request to answering it.",
                      "# TYPE gr2_request_seconds histogram"]
            acc = 0
            for b, c in zip(self.buckets, self.counts):
                acc += c
                lines.append(f'gr2_request_seconds_bucket{{le="{b:g}"}} {acc}')
            lines.append(f'gr2_request_seconds_bucket{{le="+Inf"}} {self.n}')
            lines += [f"gr2_request_seconds_sum {self.total:.6f}" if math.isfinite(self.total) else "gr2_request_seconds_sum 0",
                      f"gr2_request_seconds_count {self.n}"]
            return "\n".join(lines) + "\n"

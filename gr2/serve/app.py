"""`gr2 serve`: a trained re-ranker from the lake behind Ray Serve's HTTP proxy.

Endpoints (JSON unless noted):

* ``POST /v1/rerank`` - ``{"history": [ids], "candidates": [K ids or SIDs], "mode": "reasoning"|"ranking",
  "explain": false, "deadline_ms": 5000, "request_id": "..."}`` -> ``{"ranking": [K ids], "fallback": false,
  "fallback_reason": null, "reasoning": null, "model": {...}, "timing_ms": {...}}``.
* ``GET /healthz`` (the process answers), ``GET /readyz`` (the model is loaded: its run and catalog size),
  ``GET /metrics`` (Prometheus text: requests by mode and outcome, fallbacks by reason, 4xx by status,
  a latency histogram).

Every request except the two probes needs ``Authorization: Bearer <token>``. Concurrent requests are
batched (``serve.batch``); each request has a deadline, and one that is not answered in time gets the
incoming order with ``fallback_reason="timeout"``. The model is called from a worker thread, so the event
loop keeps answering probes and timing out requests while a batch generates; by default it runs in a
child process of the replica (``serve.engine_process``: gr2.serve.isolated says why).
"""

# (no `from __future__ import annotations`: FastAPI reads the route signatures at runtime)

import asyncio
import hmac
import json
import os
import time
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from ray import serve

from gr2.serve.engine import Catalog, Metrics, RequestError, Reranker, incoming, parse_request

api = FastAPI(title="gr2 re-ranker", docs_url=None, redoc_url=None)


@dataclass(frozen=True)
class ServeSettings:
    """Everything a replica needs, picklable (it travels to the replica through Ray)."""

    lake: str
    model_dir: str
    stage: str
    run: str
    k: int
    token: str | None
    default_mode: str
    deadline_ms: int
    max_deadline_ms: int
    max_new_tokens: int
    max_body_bytes: int
    max_batch: int
    batch_wait_ms: int
    autocast: bool
    fmt: dict
    ranking_decoder: str = "slots"
    threads: int = 0
    decode_threads: int = 0
    prefix_cache: int = 0
    prompt_lookup: int = 0
    engine: str = "hf"
    compute_type: str = "float32"
    engine_process: bool = True


def _error(status: int, message: str, metrics: Metrics | None = None) -> JSONResponse:
    if metrics is not None:
        metrics.reject(status)
    return JSONResponse({"error": message, "status": status}, status_code=status)


@serve.deployment(name="gr2-reranker", num_replicas=1, max_ongoing_requests=64, health_check_period_s=10)
@serve.ingress(api)
class RerankDeployment:
    def __init__(self, settings: ServeSettings):
        from pathlib import Path

        import torch

        from gr2.rerank.catalog import load_catalog
        from gr2.rerank.formats import RerankFormat

        self.s = settings
        # Ray sets OMP_NUM_THREADS=1 in an actor that asks for no CPUs, and torch follows it: the model
        # would run on one core (measured: ranking mode 6.0 s against 3.7 s on both cores of a 2-core VM).
        torch.set_num_threads(settings.threads or os.cpu_count() or 1)
        items, _ = load_catalog(Path(settings.lake))
        self.catalog = Catalog(items)
        engine_args = dict(model_dir=Path(settings.model_dir), fmt=RerankFormat(**settings.fmt),
                           max_new_tokens=settings.max_new_tokens, autocast=settings.autocast,
                           batch_size=settings.max_batch, ranking_decoder=settings.ranking_decoder,
                           engine=settings.engine, compute_type=settings.compute_type, threads=settings.threads,
                           decode_threads=settings.decode_threads, prefix_cache=settings.prefix_cache,
                           prompt_lookup=settings.prompt_lookup)
        if settings.engine_process:  # the model alone in a child process: gr2.serve.isolated says why
            from gr2.serve.isolated import EngineProcess

            self.engine = EngineProcess(settings.lake, **engine_args)
        else:
            self.engine = Reranker(catalog=self.catalog, lake=Path(settings.lake), **engine_args)
        self.metrics = Metrics()
        self._batched.set_max_batch_size(settings.max_batch)
        self._batched.set_batch_wait_timeout_s(settings.batch_wait_ms / 1000)

    def _authorized(self, request: Request) -> bool:
        if self.s.token is None:
            return True
        got = request.headers.get("authorization", "")
        return got.startswith("Bearer ") and hmac.compare_digest(got[7:].encode(), self.s.token.encode())

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)
    async def _batched(self, jobs: list[tuple]) -> list:
        # A request whose deadline passed while it queued is not run at all.
        now = time.monotonic()
        live = [(n, req) for n, (req, deadline) in enumerate(jobs) if deadline > now]
        out: list = [None] * len(jobs)
        if live:
            answers = await asyncio.to_thread(self.engine.answer, [req for _, req in live])
            for (n, _), a in zip(live, answers):
                out[n] = a
        return out

    @api.get("/healthz")
    async def healthz(self):
        return {"status": "ok"}

    @api.get("/readyz")
    async def readyz(self):
        return {"status": "ready", "model": self._model(), "catalog_items": len(self.catalog.items), "k": self.s.k}

    @api.get("/metrics")
    async def metrics(self, request: Request):
        if not self._authorized(request):
            return _error(401, "missing or wrong bearer token (Authorization: Bearer <token>)", self.metrics)
        cache = self.engine.prefix_cache.metrics_text() if self.engine.prefix_cache is not None else ""
        return PlainTextResponse(self.metrics.text() + cache, media_type="text/plain; version=0.0.4")

    def _model(self) -> dict:
        return {"stage": self.s.stage, "run": self.s.run, "format": self.s.fmt.get("style", "paper"),
                "ranking_decoder": self.s.ranking_decoder, "engine": self.s.engine,
                "compute_type": self.s.compute_type,
                "prefix_cache": self.engine.prefix_cache.entries if self.engine.prefix_cache is not None else 0}

    @api.post("/v1/rerank")
    async def rerank(self, request: Request):
        start = time.monotonic()
        if not self._authorized(request):
            return _error(401, "missing or wrong bearer token (Authorization: Bearer <token>)", self.metrics)
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.s.max_body_bytes:
            return _error(413, f"body of {declared} bytes; at most {self.s.max_body_bytes} are accepted", self.metrics)
        raw = await request.body()
        if len(raw) > self.s.max_body_bytes:
            return _error(413, f"body of {len(raw)} bytes; at most {self.s.max_body_bytes} are accepted", self.metrics)
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            return _error(400, f"the body is not valid JSON: {e}", self.metrics)
        try:
            req = parse_request(body, self.catalog.resolve, self.s.k, self.s.default_mode, self.s.deadline_ms,
                                self.s.max_deadline_ms)
        except RequestError as e:
            return _error(e.status, e.message, self.metrics)
        deadline = start + req.deadline_ms / 1000
        task = asyncio.ensure_future(self._batched((req, deadline)))
        try:
            # shield: a timed-out request leaves its batch running for the others in it
            outcome = await asyncio.wait_for(asyncio.shield(task), timeout=max(0.0, deadline - time.monotonic()))
            if outcome is None:
                outcome = incoming(self.s.k, "timeout")
        except asyncio.TimeoutError:
            outcome = incoming(self.s.k, "timeout")
        except Exception:  # the model failed on this batch: the caller still gets a valid permutation
            outcome = incoming(self.s.k, "error")
        elapsed = time.monotonic() - start
        self.metrics.observe(req.mode, outcome, elapsed)
        return {
            "ranking": [req.candidates[i] for i in outcome.order],
            "mode": req.mode,
            "fallback": outcome.fallback,
            "fallback_reason": outcome.fallback_reason,
            "reasoning": outcome.reasoning if req.explain else None,
            "model": self._model(),
            "timing_ms": {"model": round(outcome.model_ms, 1), "total": round(elapsed * 1000, 1)},
            "request_id": req.request_id,
        }


def build(settings: ServeSettings):
    return RerankDeployment.bind(settings)

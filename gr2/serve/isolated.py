"""The re-ranker in a child process of the replica (`serve.engine_process`).

Why: llama.cpp's token loop is Python (one GIL hand-over per token) and its threads meet every token, so
whatever else runs in the same process costs per token. A Ray Serve replica's process also holds Ray's
core-worker threads, the event loop and the metrics pushers; measured there, the reasoning mode took
6.2 s a request against 3.7 s for the same engine in a plain process (docs/serving.md). In a child
process the model's threads are the only ones: the replica's event loop waits on a pipe, which holds
no GIL of the child's.

:class:`EngineProcess` has the part of :class:`gr2.serve.engine.Reranker` the replica uses (``answer``,
``prefix_cache``) and forwards each call over a pipe; the child builds the catalog and the Reranker
itself from picklable arguments. The child is started with the ``spawn`` method (a fresh interpreter:
no copy of the replica's threads or locks). If it dies (a crash, the OOM killer), the call that finds
it dead raises, so that request falls back to the incoming order, and the next call starts a new child.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
import traceback
from pathlib import Path


def _serve_calls(conn, lake: str, kwargs: dict) -> None:
    """The child: build the engine, say ready (or why not), then answer (method, args) until the pipe closes."""
    threads = kwargs.get("threads") or os.cpu_count() or 1
    # Ray gave the replica OMP_NUM_THREADS=1 and the child inherits it; set before torch or llama.cpp load it
    os.environ["OMP_NUM_THREADS"] = str(threads)
    try:
        import torch

        from gr2.rerank.catalog import load_catalog
        from gr2.serve.engine import Catalog, Reranker

        torch.set_num_threads(threads)
        engine = Reranker(catalog=Catalog(load_catalog(Path(lake))[0]), lake=Path(lake), **kwargs)
    except BaseException as e:  # noqa: BLE001 - the parent raises it with the child's traceback
        conn.send(("error", f"{type(e).__name__}: {e}\n{traceback.format_exc()}"))
        return
    cache = engine.prefix_cache
    conn.send(("ready", cache.entries if cache is not None else None))
    while True:
        try:
            method, args = conn.recv()
        except EOFError:  # the replica is gone
            return
        try:
            if method == "answer":
                result = engine.answer(*args)
            elif method == "prefix_cache_metrics":
                result = cache.metrics_text() if cache is not None else ""
            else:
                raise ValueError(f"unknown call {method!r}")
            conn.send(("ok", result))
        except Exception as e:  # noqa: BLE001 - one bad batch must not end the child
            conn.send(("error", f"{type(e).__name__}: {e}\n{traceback.format_exc()}"))


class EngineDied(RuntimeError):
    """The engine's process ended; the next call starts a new one."""


class _CacheView:
    """`prefix_cache` as the replica reads it: the entries and the Prometheus lines, from the child."""

    def __init__(self, owner: EngineProcess, entries: int):
        self.owner, self.entries = owner, entries

    def metrics_text(self) -> str:
        return self.owner._call("prefix_cache_metrics")


class EngineProcess:
    """A :class:`~gr2.serve.engine.Reranker` in a child process, called like one.

    kwargs: the Reranker's arguments except ``catalog`` and ``lake`` (the child reads the catalog from
    `lake` itself). Calls are serialised (one model, one pipe). `start_timeout_s` bounds the model's load."""

    def __init__(self, lake: str | Path, start_timeout_s: float = 600.0, **kwargs):
        self.lake, self.kwargs, self.start_timeout_s = str(lake), kwargs, start_timeout_s
        self._lock = threading.Lock()
        self._proc = None
        self._conn = None
        self.prefix_cache: _CacheView | None = None
        self.restarts = 0
        self._start()

    def _start(self) -> None:
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_serve_calls, args=(child, self.lake, self.kwargs), name="gr2-engine", daemon=True)
        proc.start()
        child.close()
        if not parent.poll(self.start_timeout_s):
            proc.kill()
            raise RuntimeError(f"the engine process did not load the model from {self.kwargs.get('model_dir')} "
                               f"within {self.start_timeout_s:.0f} s")
        try:
            status, detail = parent.recv()
        except EOFError:
            raise RuntimeError(f"the engine process exited while loading the model (exit code {proc.exitcode}); "
                               "see the replica's log") from None
        if status != "ready":
            proc.join(5)
            raise RuntimeError(f"the engine process could not load the model from {self.kwargs.get('model_dir')}: {detail}")
        self._proc, self._conn = proc, parent
        self.prefix_cache = _CacheView(self, detail) if detail is not None else None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def _call(self, method: str, *args):
        with self._lock:
            if self._proc is None or not self._proc.is_alive():
                self.restarts += 1
                self._start()
            try:
                self._conn.send((method, args))
                status, result = self._conn.recv()
            except (EOFError, BrokenPipeError, ConnectionResetError):
                self._proc.join(5)  # reap it, for its exit code
                code = self._proc.exitcode
                self._proc = None
                raise EngineDied(f"the engine process ended during {method} (exit code {code}); "
                                 "the next request starts a new one") from None
        if status != "ok":
            raise RuntimeError(f"the engine process failed in {method}: {result}")
        return result

    def answer(self, reqs: list) -> list:
        return self._call("answer", reqs)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
            if self._proc is not None:
                self._proc.join(10)
                if self._proc.is_alive():
                    self._proc.kill()
            self._proc = self._conn = None

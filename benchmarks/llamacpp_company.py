"""How much llama.cpp's reasoning mode slows down when something else runs beside it in the same process.

    .venv/bin/python benchmarks/llamacpp_company.py -c configs/beauty.yaml --lake /work/lakes/beauty --stage dapo \
        --set serve.max_new_tokens=320

The serving engine (gr2.serve.engine.Reranker, engine=llamacpp) answers the same test slates in reasoning
mode one at a time: alone, beside a Python thread that wakes every millisecond (an event loop's kind of
company), and beside a Python thread that never sleeps. llama-cpp-python's token loop is Python (one GIL
hand-over per token) and llama.cpp's threads meet every token, so company costs per token; this is why
the service, which shares its cores with Ray's processes, is slower than the engine in process
(docs/serving.md). Prints seconds per request. `--decode-threads 0 1` runs it twice: every token on both
threads, then on one (serve.decode_threads; prompts always on --threads).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gr2.config import load_config  # noqa: E402
from gr2.rerank.catalog import load_catalog  # noqa: E402
from gr2.rerank.formats import RerankFormat  # noqa: E402
from gr2.serve import engine, launch  # noqa: E402
from gr2.serve.check import _slates  # noqa: E402


def company(kind: str, stop: threading.Event) -> None:
    x = 0
    while not stop.is_set():
        if kind == "waking":
            time.sleep(0.001)
        else:
            x += 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-c", "--config", default=None)
    ap.add_argument("--lake", required=True)
    ap.add_argument("--stage", default="dapo")
    ap.add_argument("--slates", type=int, default=4)
    ap.add_argument("--compute-type", default="int8")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--decode-threads", type=int, nargs="+", default=[0],
                    help="threads per generated token, one run each (0 = --threads; serve.decode_threads)")
    ap.add_argument("--set", action="append", default=[])
    args = ap.parse_args()
    cfg = load_config(args.config, args.set, args.lake)
    model_dir = launch.model_dir(cfg, args.stage, None)
    fmt = RerankFormat.of_model(model_dir, RerankFormat.from_config(cfg.train.prompt))
    catalog = engine.Catalog(load_catalog(cfg.lake_path)[0])
    reqs = [engine.RerankRequest(h, c, "reasoning", False, 10**9) for h, c, _ in _slates(cfg, args.slates)]
    print(f"{len(reqs)} slates, llama.cpp {args.compute_type}, {args.threads} threads for prompts, "
          f"max_new_tokens {cfg.serve.max_new_tokens}")
    print("| threads per token | beside the engine | seconds per request |\n|---|---|---|")
    for decode in args.decode_threads:
        rr = engine.Reranker(model_dir, catalog, fmt, cfg.serve.max_new_tokens, False, 1, ranking_decoder="first",
                             lake=cfg.lake_path, engine="llamacpp", compute_type=args.compute_type, threads=args.threads,
                             decode_threads=decode)
        rr.answer(reqs[:1])  # warm-up
        run(rr, reqs, decode or args.threads)
        del rr


def run(rr, reqs, decode: int) -> None:
    for kind in ("nothing", "a thread waking every 1 ms", "a busy Python thread"):
        stop = threading.Event()
        th = None
        if kind != "nothing":
            th = threading.Thread(target=company, args=("waking" if "waking" in kind else "busy", stop), daemon=True)
            th.start()
        secs = []
        for r in reqs:
            t0 = time.perf_counter()
            rr.answer([r])
            secs.append(time.perf_counter() - t0)
        stop.set()
        if th is not None:
            th.join()
        print(f"| {decode} | {kind} | {', '.join(f'{s:.2f}' for s in secs)} |", flush=True)


if __name__ == "__main__":
    main()

"""Load on `gr2 serve`: latency percentiles and throughput per mode and concurrency, on 127.0.0.1.

    .venv/bin/python benchmarks/serve_load.py --lake /work/lakes/demo --stage sft \
        --concurrency 1 4 16 --requests 32 --seconds 120

Starts the service on the lake's model (as `gr2 serve` does), then for each mode and each concurrency
runs that many client threads sending real test slates until `--requests` answers or `--seconds` have
passed (whichever is first), and prints a Markdown table: requests, requests/s, p50/p95/p99 latency
seen by the client, where it goes (the p50 of the service's own `timing_ms`: `total` from receiving the
request to answering it, `model` the model call, queueing for a batch excluded), the share answered by
the model (not a fallback), the fallbacks by reason, and whether every answer was a permutation of its
slate. Stops the service at the end.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gr2.config import load_config  # noqa: E402
from gr2.serve import launch  # noqa: E402
from gr2.serve.check import _slates  # noqa: E402
from gr2.serve.client import RerankClient  # noqa: E402


def load(client: RerankClient, cases, mode: str, concurrency: int, max_requests: int, seconds: float, deadline_ms: int,
         start: int = 0):
    """One (mode, concurrency) run over cases[start:] (each run starts at fresh users, so no run finds the
    users of an earlier one in serve.prefix_cache)."""
    lat, server, model, reasons, valid, revisits = [], [], [], Counter(), [], []
    lock = threading.Lock()
    sent = [0]
    stop_at = time.monotonic() + seconds

    def worker(w: int):
        n = start + w
        while time.monotonic() < stop_at:
            with lock:
                if sent[0] >= max_requests:
                    return
                sent[0] += 1
            hist, cands, _, revisit = cases[n % len(cases)]
            n += concurrency
            t0 = time.perf_counter()
            a = client.rerank(cands, hist, mode=mode, deadline_ms=deadline_ms)
            dt = time.perf_counter() - t0
            with lock:
                lat.append(dt)
                revisits.append(revisit)
                server.append(a["timing_ms"]["total"])
                if a["fallback_reason"] is None:
                    model.append(a["timing_ms"]["model"])
                reasons[a["fallback_reason"] or "model"] += 1
                valid.append(sorted(a["ranking"]) == sorted(cands))

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(w,)) for w in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    arr = np.array(lat) * 1000
    return {"requests": len(lat), "rps": len(lat) / wall if wall else 0.0,
            "p50": float(np.percentile(arr, 50)) if len(arr) else float("nan"),
            "p95": float(np.percentile(arr, 95)) if len(arr) else float("nan"),
            "p99": float(np.percentile(arr, 99)) if len(arr) else float("nan"),
            "server_p50": float(np.median(server)) if server else float("nan"),
            "model_p50": float(np.median(model)) if model else float("nan"),
            "first_p50": _p50([x for x, r in zip(arr, revisits) if not r]),
            "revisit_p50": _p50([x for x, r in zip(arr, revisits) if r]),
            "model_share": reasons["model"] / len(lat) if lat else 0.0,
            "fallbacks": {k: v for k, v in reasons.items() if k != "model"}, "all_valid": all(valid)}


def _p50(values) -> float:
    return float(np.median(values)) if len(values) else float("nan")


def with_revisits(cases, revisits: int):
    """Each user's slate, then `revisits` more requests of the same user with the candidates rotated (the
    pre-ranker's next slate): (history, candidates, target, whether the user was seen before)."""
    return [(h, c[j:] + c[:j], t, j > 0) for h, c, t in cases for j in range(revisits + 1)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-c", "--config", default=None)
    ap.add_argument("--lake", required=True)
    ap.add_argument("--stage", default=None, help="dapo or sft [default: serve.stage]")
    ap.add_argument("--modes", nargs="+", default=["ranking", "reasoning"])
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--requests", type=int, default=32, help="answers per (mode, concurrency) at most")
    ap.add_argument("--seconds", type=float, default=120, help="time per (mode, concurrency) at most")
    ap.add_argument("--deadline-ms", type=int, default=None, help="per-request deadline [default: serve.deadline_ms]")
    ap.add_argument("--revisits", type=int, default=0, help="requests of the same user after each first one, the "
                    "candidates rotated (serve.prefix_cache reuses the user's prompt head); p50s shown apart")
    ap.add_argument("--set", action="append", default=[], help="extra config overrides")
    args = ap.parse_args()
    cfg = load_config(args.config, args.set, args.lake)
    cases = with_revisits(_slates(cfg, 256), args.revisits)
    deadline = args.deadline_ms or cfg.serve.deadline_ms
    t0 = time.perf_counter()
    url = launch.start(cfg, args.stage)
    started = time.perf_counter() - t0
    try:
        client = RerankClient(url, launch.token(cfg), timeout_s=deadline / 1000 + 60)
        ready = client.ready()
        client.rerank(cases[-1][1], cases[-1][0], mode="ranking")  # warm-up, not measured (the last user's head)
        rows, start = [], 0
        for mode in args.modes:
            for c in args.concurrency:
                r = load(client, cases, mode, c, args.requests, args.seconds, deadline, start)
                # past every request sent (a worker may have sent one more), at a user's first visit
                start = -(-(start + r["requests"] + c) // (args.revisits + 1)) * (args.revisits + 1)
                rows.append((mode, c, r))
                print(f"  {mode} x{c}: {r['requests']} requests, p50 {r['p50']:.0f} ms", file=sys.stderr)
    finally:
        launch.stop()
    print(f"\n### gr2 serve under load ({platform.node()}, {os.cpu_count()} CPUs; model {ready['model']['stage']} "
          f"{ready['model']['run']}; deadline {deadline} ms; max_batch {cfg.serve.max_batch}; "
          f"max_new_tokens {cfg.serve.max_new_tokens}; compute_type {cfg.serve.compute_type}; prefix_cache "
          f"{cfg.serve.prefix_cache}; {args.revisits} revisits per user; started in {started:.0f} s)\n")
    print("| mode | clients | requests | req/s | p50 ms | p95 ms | p99 ms | server p50 ms | model p50 ms | "
          "p50 ms, first visits | p50 ms, revisits | model answered | fallbacks | all permutations |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
    for mode, c, r in rows:
        fb = ", ".join(f"{k} {v}" for k, v in sorted(r["fallbacks"].items())) or "-"
        print(f"| {mode} | {c} | {r['requests']} | {r['rps']:.2f} | {r['p50']:.0f} | {r['p95']:.0f} | {r['p99']:.0f} | "
              f"{r['server_p50']:.0f} | {r['model_p50']:.0f} | {r['first_p50']:.0f} | {r['revisit_p50']:.0f} | "
              f"{r['model_share']:.0%} | {fb} | {'yes' if r['all_valid'] else 'NO'} |")


if __name__ == "__main__":
    main()

"""`gr2 serve --check`: real test slates from the lake through the running service, and bad requests.

Every answer must be a permutation of the slate it was sent, whatever the mode or a fallback; a bad
request must get a 4xx that names the problem. The result says which check failed.
"""

from __future__ import annotations

import json
import time

from gr2.config import Config
from gr2.serve.client import RerankClient, ServiceError


def _slates(cfg: Config, n: int) -> list[tuple[list[str], list[str], str]]:
    """(history ids, candidate ids, target id) of `n` seeded test slates."""
    from gr2.models.slates import rerank_cases
    from gr2.rerank.catalog import load_catalog

    catalog, _ = load_catalog(cfg.lake_path)
    cases = rerank_cases(cfg.lake_path, catalog, "test", n, cfg.train.seed, max(10, cfg.train.prompt.history))
    return [([h.item_id for h in s.history], [c.item_id for c in s.candidates], s.candidates[labels.index(1)].item_id)
            for s, labels in cases if sum(labels) == 1]


def run_check(cfg: Config, client: RerankClient, slates: int = 4, modes=("ranking", "reasoning")) -> dict:
    """Send `slates` test slates in each mode and a set of bad requests; returns rows and failures."""
    rows, failures = [], []
    cases = _slates(cfg, slates)
    if not cases:
        raise ValueError(f"no test slates with SIDs under {cfg.lake_path}; run `gr2 etl build` and `gr2 tokenizer assign`")
    for mode in modes:
        for n, (hist, cands, target) in enumerate(cases):
            t0 = time.perf_counter()
            a = client.rerank(cands, hist, mode=mode, explain=True, request_id=f"check-{mode}-{n}")
            ms = (time.perf_counter() - t0) * 1000
            ok = sorted(a["ranking"]) == sorted(cands)
            if not ok:
                failures.append(f"{mode} slate {n}: the answer is not a permutation of the candidates")
            rows.append({"mode": mode, "slate": n, "valid": ok, "fallback": a["fallback_reason"] or "",
                         "target_in": cands.index(target) + 1, "target_out": a["ranking"].index(target) + 1 if ok else None,
                         "client_ms": round(ms), "server_ms": a["timing_ms"]["total"]})
    hist, cands, _ = cases[0]
    bad = {
        "malformed JSON": (b'{"candidates": [', 400),
        "wrong K": (json.dumps({"candidates": cands[:-1], "history": hist}).encode(), 422),
        "duplicate candidate": (json.dumps({"candidates": [cands[0]] + cands[:-1], "history": hist}).encode(), 422),
        "unknown item": (json.dumps({"candidates": cands[:-1] + ["no-such-item"], "history": hist}).encode(), 422),
    }
    refused = []
    for name, (body, want) in bad.items():
        try:
            client.post_raw(body)
            failures.append(f"{name}: accepted, expected HTTP {want}")
            refused.append({"request": name, "status": 200, "message": ""})
        except ServiceError as e:
            refused.append({"request": name, "status": e.status, "message": e.message})
            if e.status != want:
                failures.append(f"{name}: HTTP {e.status}, expected {want}")
    return {"answers": rows, "refused": refused, "failures": failures}

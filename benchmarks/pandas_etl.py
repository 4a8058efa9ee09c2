"""The same ingest + build as gr2's Spark jobs, in one pandas process: the benchmark's baseline.

Same rules (ids, timestamp bounds, unknown items, duplicates), same leave-one-out split, the same
co-occurrence pre-ranker and the same numpy scorer, so both produce the same counts; what differs is
the engine. It holds everything in one process's memory, which is where it stops scaling.
"""

from __future__ import annotations

import glob
import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from gr2.config import EtlConfig
from gr2.etl.prerank import build_index, place_target, score_candidates


def _read_events(folder: Path) -> pd.DataFrame:
    rows = []
    for f in sorted(glob.glob(str(folder / "events" / "*.json*")) + glob.glob(str(folder / "events" / "*.txt"))):
        with open(f) as fh:
            for raw in fh:
                if not raw.strip():
                    continue
                try:
                    obj = json.loads(raw)
                    rows.append((obj.get("user_id"), obj.get("item_id"), obj.get("ts"), obj.get("event", "click")))
                except json.JSONDecodeError:
                    rows.append((None, None, None, "__malformed__"))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "ts", "event"])


def run(folder: str | Path, cfg: EtlConfig) -> dict:
    folder = Path(folder)
    items = pd.read_json(folder / "items.jsonl", lines=True, dtype={"item_id": str})
    ev = _read_events(folder)
    read = len(ev)
    ev["ts"] = pd.to_datetime(ev["ts"], errors="coerce", utc=True).dt.tz_localize(None)
    low, high = datetime.fromisoformat(cfg.min_ts), datetime.now()
    ok = (
        (ev["event"] != "__malformed__")
        & ev["user_id"].fillna("").str.strip().ne("")
        & ev["item_id"].fillna("").str.strip().ne("")
        & ev["ts"].notna()
        & (ev["ts"] >= low)
        & (ev["ts"] <= high)
        & ev["item_id"].isin(set(items["item_id"]))
    )
    good = ev[ok]
    dup = good.duplicated(["user_id", "item_id", "ts", "event"], keep="first")
    good = good[~dup]
    accepted = len(good)

    # sequences + leave-one-out split
    good = good.sort_values(["user_id", "ts", "item_id"])
    seqs = good.groupby("user_id", sort=True)["item_id"].apply(list)
    train_seqs = {u: (s[:-2] if len(s) >= 3 else s) for u, s in seqs.items()}

    # co-occurrence on training prefixes
    pairs: dict[tuple[str, str], float] = {}
    pop: dict[str, int] = {}
    for s in train_seqs.values():
        for i, a in enumerate(s):
            pop[a] = pop.get(a, 0) + 1
            for g in range(1, cfg.prerank.max_gap + 1):
                if i + g < len(s) and s[i + g] != a:
                    key = (a, s[i + g])
                    pairs[key] = pairs.get(key, 0.0) + 1.0 / g
    cooc = pd.DataFrame([(a, b, w) for (a, b), w in pairs.items()], columns=["item_id", "neighbor_id", "w"])
    cooc["weight"] = cooc["w"] / cooc.groupby("item_id")["w"].transform("sum")
    cooc = cooc.sort_values(["item_id", "w", "neighbor_id"], ascending=[True, False, True])
    cooc["rank"] = cooc.groupby("item_id").cumcount() + 1
    cooc = cooc[cooc["rank"] <= cfg.prerank.neighbors]
    index = build_index(
        list(zip(cooc["item_id"], cooc["neighbor_id"], cooc["weight"].astype(np.float32), cooc["rank"])),
        list(pop.items()),
        list(items["item_id"]),
    )
    lookup = index.index

    slates = 0
    covered = {"train": 0, "valid": 0, "test": 0}
    examples = {"train": 0, "valid": 0, "test": 0}
    for s in seqs.values:
        n = len(s)
        labels = ["train"] * n if n < 3 else ["train"] * (n - 2) + ["valid", "test"]
        train_pos = [p for p in range(cfg.min_history, n) if labels[p] == "train"]
        if cfg.train_slates_per_user:
            train_pos = train_pos[-cfg.train_slates_per_user:]
        positions = train_pos + [p for p in range(max(cfg.min_history, n - 2), n) if labels[p] != "train"]
        for p in positions:
            hist = [lookup[x] for x in s[max(0, p - cfg.history_len):p]]
            t = lookup[s[p]]
            cands, scores, all_scores = score_candidates(hist, index, cfg.k, cfg.prerank.window, cfg.prerank.decay, cfg.prerank.exclude_history)
            examples[labels[p]] += 1
            covered[labels[p]] += t in cands
            _, _, pos = place_target(cands, scores, t, all_scores, cfg.prerank.policy)
            slates += pos >= 0
    return {"read": read, "accepted": accepted, "users": len(seqs), "slates": slates, "examples": examples, "covered": covered}

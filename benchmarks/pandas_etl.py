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
from gr2.etl.prerank import build_index, gap_unit, score_batch

_M = (1 << 64) - 1
BATCH = 10_000  # examples per score_batch call: Spark's Arrow batch size (maxRecordsPerBatch)
_P1, _P2, _P3, _P4, _P5 = (0x9E3779B185EBCA87, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0x85EBCA77C2B2AE63,
                           0x27D4EB2F165667C5)


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & _M


def _round(acc: int, lane: int) -> int:
    return (_rotl((acc + lane * _P2) & _M, 31) * _P1) & _M


def spark_xxhash64(text: str, seed: int = 42) -> int:
    """Spark's `xxhash64(string)` (XXH64 of the UTF-8 bytes, seed 42, as a signed long), so the baseline
    puts each user in the fold `gr2.etl.gold.user_fold` does."""
    b, n, i = text.encode(), len(text.encode()), 0
    if n >= 32:
        v = [(seed + _P1 + _P2) & _M, (seed + _P2) & _M, seed & _M, (seed - _P1) & _M]
        while i + 32 <= n:
            v = [_round(v[k], int.from_bytes(b[i + 8 * k : i + 8 * k + 8], "little")) for k in range(4)]
            i += 32
        h = (_rotl(v[0], 1) + _rotl(v[1], 7) + _rotl(v[2], 12) + _rotl(v[3], 18)) & _M
        for lane in v:
            h = (((h ^ _round(0, lane)) * _P1) + _P4) & _M
    else:
        h = (seed + _P5) & _M
    h = (h + n) & _M
    while i + 8 <= n:
        h = ((_rotl(h ^ _round(0, int.from_bytes(b[i : i + 8], "little")), 27) * _P1) + _P4) & _M
        i += 8
    if i + 4 <= n:
        h = ((_rotl(h ^ ((int.from_bytes(b[i : i + 4], "little") * _P1) & _M), 23) * _P2) + _P3) & _M
        i += 4
    while i < n:
        h = (_rotl(h ^ ((b[i] * _P5) & _M), 11) * _P1) & _M
        i += 1
    h ^= h >> 33
    h = (h * _P2) & _M
    h ^= h >> 29
    h = (h * _P3) & _M
    h ^= h >> 32
    return h - (1 << 64) if h >> 63 else h


def _fit(train_seqs: dict, cfg: EtlConfig, all_items):
    """The co-occurrence index of these training sequences (gr2.etl.prerank.fit_cooccurrence's rules)."""
    pairs: dict[tuple[str, str], int] = {}
    pop: dict[str, int] = {}
    unit = gap_unit(cfg.prerank.max_gap)  # integer weights, as gr2's fit: exact sums, the same ties
    for s in train_seqs.values():
        for i, a in enumerate(s):
            pop[a] = pop.get(a, 0) + 1
            for g in range(1, cfg.prerank.max_gap + 1):
                if i + g < len(s) and s[i + g] != a:
                    key = (a, s[i + g])
                    pairs[key] = pairs.get(key, 0) + unit // g
    cooc = pd.DataFrame([(a, b, w) for (a, b), w in pairs.items()], columns=["item_id", "neighbor_id", "w"])
    cooc["weight"] = (cooc["w"] / cooc.groupby("item_id")["w"].transform("sum")).astype(np.float32)
    cooc = cooc.sort_values(["item_id", "w", "neighbor_id"], ascending=[True, False, True])
    cooc["rank"] = cooc.groupby("item_id").cumcount() + 1
    cooc = cooc[cooc["rank"] <= cfg.prerank.neighbors]
    return build_index(cooc, pd.DataFrame(list(pop.items()), columns=["item_id", "count"]), all_items)


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

    # co-occurrence on training prefixes; training slates out of fold, as gr2's build does
    all_items = items["item_id"].to_numpy()
    index = _fit(train_seqs, cfg, all_items)
    folds = cfg.prerank.oof_folds if cfg.prerank.oof_folds >= 2 else 0
    fold_of = {u: spark_xxhash64(u) % folds for u in train_seqs} if folds else {}
    fold_index = {f: _fit({u: s for u, s in train_seqs.items() if fold_of[u] != f}, cfg, all_items) for f in range(folds)}

    # examples grouped by the index that scores them (a fold's, or all users'), then scored a batch at a time
    # with gr2's own batch scorer (as its build's executors do, 10,000 examples per Arrow batch)
    batches: dict = {}
    for user, s in seqs.items():
        n = len(s)
        labels = ["train"] * n if n < 3 else ["train"] * (n - 2) + ["valid", "test"]
        train_pos = [p for p in range(cfg.min_history, n) if labels[p] == "train"]
        if cfg.train_slates_per_user:
            train_pos = train_pos[-cfg.train_slates_per_user:]
        positions = train_pos + [p for p in range(max(cfg.min_history, n - 2), n) if labels[p] != "train"]
        for p in positions:
            key = fold_of[user] if folds and labels[p] == "train" else "all"
            hists, targets, labs = batches.setdefault(key, ([], [], []))
            hists.append(s[max(0, p - cfg.history_len):p])
            targets.append(s[p])
            labs.append(labels[p])
    slates = 0
    covered = {"train": 0, "valid": 0, "test": 0}
    examples = {"train": 0, "valid": 0, "test": 0}
    for key, (hists, targets, labs) in batches.items():
        ix = index if key == "all" else fold_index[key]
        for lo in range(0, len(hists), BATCH):
            out = score_batch(hists[lo:lo + BATCH], targets[lo:lo + BATCH], ix, cfg.k, cfg.prerank.window,
                              cfg.prerank.decay, cfg.prerank.exclude_history, cfg.prerank.policy)
            for lab, hit, pos in zip(labs[lo:lo + BATCH], out["target_in_topk"], out["target_position"]):
                examples[lab] += 1
                covered[lab] += hit
                slates += pos >= 0
    return {"read": read, "accepted": accepted, "users": len(seqs), "slates": slates, "examples": examples, "covered": covered}

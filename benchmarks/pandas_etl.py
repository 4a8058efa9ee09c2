"""The same ingest + build as gr2's Spark jobs, in one pandas process: the benchmark's baseline.

Same rules (ids, timestamp bounds, unknown items, duplicates), same leave-one-out split, the same
co-occurrence pre-ranker and the same numpy scorer, so both produce the same slates; what differs is
the engine. It writes what the Spark jobs publish (interactions, quarantine, sequences, slates) as Parquet
files, without Delta's log, staging or quality gates. It holds everything in one process's memory, which is
where it stops scaling.
"""

from __future__ import annotations

import glob
import json
import time
from datetime import datetime
from itertools import chain
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from gr2.config import EtlConfig
from gr2.etl.prerank import build_index, gap_unit, score_arrays

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


def _fold_weights(train_seqs: dict, fold_of: dict, cfg: EtlConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Pair weights (fold, item_id, neighbor_id, w) and item counts (fold, item_id, count) of these training
    sequences, per fold, in one pass (gr2.etl.prerank.pair_weights' rules: fits of any set of folds are sums)."""
    pairs: dict[tuple[int, str, str], int] = {}
    pop: dict[tuple[int, str], int] = {}
    unit = gap_unit(cfg.prerank.max_gap)  # integer weights, as gr2's fit: exact sums, the same ties
    for u, s in train_seqs.items():
        f = fold_of.get(u, 0)
        for i, a in enumerate(s):
            pop[f, a] = pop.get((f, a), 0) + 1
            for g in range(1, cfg.prerank.max_gap + 1):
                if i + g < len(s) and s[i + g] != a:
                    key = (f, a, s[i + g])
                    pairs[key] = pairs.get(key, 0) + unit // g
    weights = pd.DataFrame([(*k, w) for k, w in pairs.items()], columns=["fold", "item_id", "neighbor_id", "w"])
    counts = pd.DataFrame([(*k, c) for k, c in pop.items()], columns=["fold", "item_id", "count"])
    return weights, counts


def _fit(weights: pd.DataFrame, counts: pd.DataFrame, cfg: EtlConfig, all_items, without_fold: int | None = None):
    """The co-occurrence index of all folds, or all but one (gr2.etl.prerank.rank_neighbors' rules)."""
    if without_fold is not None:
        weights, counts = weights[weights["fold"] != without_fold], counts[counts["fold"] != without_fold]
    cooc = weights.groupby(["item_id", "neighbor_id"], sort=False, as_index=False)["w"].sum()
    pop = counts.groupby("item_id", sort=False, as_index=False)["count"].sum()
    cooc["weight"] = (cooc["w"] / cooc.groupby("item_id")["w"].transform("sum")).astype(np.float32)
    cooc = cooc.sort_values(["item_id", "w", "neighbor_id"], ascending=[True, False, True])
    cooc["rank"] = cooc.groupby("item_id").cumcount() + 1
    cooc = cooc[cooc["rank"] <= cfg.prerank.neighbors]
    return build_index(cooc, pop, all_items)


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


class _Laps:
    """Seconds per step, each ending where the next starts: where the baseline's time goes."""

    def __init__(self):
        self.timings: dict[str, float] = {}
        self._t = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = now - self._t
        self._t = now


def run(folder: str | Path, cfg: EtlConfig, out: str | Path | None = None) -> dict:
    """Ingest + build of the raw files under `folder`; with `out`, the tables are written there as Parquet."""
    folder = Path(folder)
    laps = _Laps()
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
    quarantined = pd.concat([ev[~ok], good[dup]])  # rule breakers and duplicates, as Spark's quarantine
    good = good[~dup]
    accepted = len(good)
    laps.lap("read + validate records")

    # sequences + leave-one-out split
    good = good.sort_values(["user_id", "ts", "item_id"])
    seqs = good.groupby("user_id", sort=True)["item_id"].apply(list)
    train_seqs = {u: (s[:-2] if len(s) >= 3 else s) for u, s in seqs.items()}
    laps.lap("sequences and splits")

    # co-occurrence on training prefixes; training slates out of fold, as gr2's build does
    all_items = items["item_id"].to_numpy()
    folds = cfg.prerank.oof_folds if cfg.prerank.oof_folds >= 2 else 0
    fold_of = {u: spark_xxhash64(u) % folds for u in train_seqs} if folds else {}
    weights, counts = _fold_weights(train_seqs, fold_of, cfg)
    index = _fit(weights, counts, cfg, all_items)
    fold_index = {f: _fit(weights, counts, cfg, all_items, without_fold=f) for f in range(folds)}
    laps.lap("the co-occurrence fits")

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
            users, hists, targets, labs = batches.setdefault(key, ([], [], [], []))
            users.append(user)
            hists.append(s[max(0, p - cfg.history_len):p])
            targets.append(s[p])
            labs.append(labels[p])
    laps.lap("examples")
    parts = []
    for key, (users, hists, targets, labs) in batches.items():
        ix = index if key == "all" else fold_index[key]
        for lo in range(0, len(hists), BATCH):
            parts.append(_slates(users[lo:lo + BATCH], hists[lo:lo + BATCH], targets[lo:lo + BATCH],
                                 labs[lo:lo + BATCH], ix, cfg))
    scored = pa.concat_tables(parts)
    examples = dict(zip(*np.unique(scored.column("split").to_numpy(zero_copy_only=False), return_counts=True)))
    covered = dict(zip(*np.unique(scored.filter(scored.column("target_in_topk")).column("split").to_numpy(
        zero_copy_only=False), return_counts=True)))
    slates = scored.filter(pc.greater_equal(scored.column("target_position"), 0)).drop_columns(["target_in_topk"])
    laps.lap("pre-rank candidates for every example")
    if out is not None:  # what the Spark build publishes (as Delta tables), written as Parquet files
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        good.to_parquet(out / "interactions.parquet", index=False)
        quarantined.to_parquet(out / "quarantine.parquet", index=False)
        pd.DataFrame({"user_id": seqs.index, "items": seqs.to_numpy()}).to_parquet(out / "sequences.parquet", index=False)
        pq.write_table(slates, out / "slates.parquet")
        laps.lap("write outputs")
    return {"read": read, "accepted": accepted, "users": len(seqs), "slates": slates.num_rows,
            "examples": {k: int(v) for k, v in examples.items()}, "covered": {k: int(v) for k, v in covered.items()},
            "steps": laps.timings}


def _slates(users, hists, targets, labs, index, cfg: EtlConfig) -> pa.Table:
    """A batch of examples scored by gr2's scorer on item indices, as an Arrow table (the Spark build's
    columns: candidates and scores as lists, no Python object per candidate)."""
    lens = np.fromiter((len(h) for h in hists), dtype=np.int64, count=len(hists))
    pos = index.positions(list(chain.from_iterable(hists))) if lens.sum() else np.empty(0, np.int64)
    s = score_arrays(lens, pos, index.positions(targets), index, cfg.k, cfg.prerank.window, cfg.prerank.decay,
                     cfg.prerank.exclude_history, cfg.prerank.policy)
    return pa.table({
        "user_id": pa.array(users, pa.string()), "split": pa.array(labs, pa.string()),
        "history": pa.array(hists, pa.list_(pa.string())), "target": pa.array(targets, pa.string()),
        **s.arrow_columns(index),
    })

"""The synthetic generator: determinism, exact counts, time order, learnable structure, bad records."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from gr2.config import SyntheticConfig
from gr2.etl.synthetic import BAD_KINDS, catalog, event_line, generate, user_events, window

CFG = SyntheticConfig(users=300, items=200, bad_record_rate=0.03, seed=11)


def _event_lines(out: Path) -> list[str]:
    parts = sorted((out / "events").glob("part-*"))
    assert parts, "no part files written"
    return [line for p in parts for line in p.read_text(encoding="utf-8").splitlines()]


def _items(out: Path) -> dict[str, dict]:
    rows = [json.loads(line) for line in (out / "items.jsonl").read_text(encoding="utf-8").splitlines()]
    return {r["item_id"]: r for r in rows}


def _epoch(ts: str) -> int:
    return int(datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp())


def _classify(lines: list[str], items: dict, cfg: SyntheticConfig):
    """Judge every line on its own, as a quarantine would: (good events, Counter of bad kinds)."""
    first, last = window(cfg)
    good, bad = [], Counter()
    prev = None
    for line in lines:
        dup, prev = line == prev, line
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            bad["malformed_json"] += 1
            continue
        if rec["user_id"] == "":
            bad["empty_user_id"] += 1
            continue
        try:
            t = _epoch(rec["ts"])
        except ValueError:
            bad["unparseable_ts"] += 1
            continue
        if not first <= t <= last:
            bad["absurd_ts"] += 1
        elif rec["item_id"] not in items:
            bad["unknown_item"] += 1
        elif dup:
            bad["duplicate"] += 1
        else:
            good.append((rec["user_id"], rec["item_id"], t, rec["event"]))
    return good, bad


@pytest.fixture(scope="module")
def generated(spark, tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    result = generate(spark, CFG, out)
    return out, result


def test_reruns_are_byte_identical(spark, generated, tmp_path):
    out, result = generated
    other = tmp_path / "again"
    (other / "events").mkdir(parents=True)
    (other / "events" / "stale.jsonl").write_text("left over from an earlier run\n")
    again = generate(spark, CFG, other)
    assert again == result
    names = sorted(p.name for p in (out / "events").iterdir())
    assert names == sorted(p.name for p in (other / "events").iterdir())
    assert "stale.jsonl" not in names
    for name in names:
        assert (out / "events" / name).read_bytes() == (other / "events" / name).read_bytes()
    assert (out / "items.jsonl").read_bytes() == (other / "items.jsonl").read_bytes()


def test_counts_match_the_files(generated):
    out, result = generated
    lines = _event_lines(out)
    items = _items(out)
    assert result["users"] == CFG.users and result["items"] == CFG.items == len(items)
    assert set(result["bad_records"]) == set(BAD_KINDS)
    assert len(lines) == result["lines"] == result["events"] + sum(result["bad_records"].values())
    good, bad = _classify(lines, items, CFG)
    assert len(good) == result["events"]
    # Every bad record is found by its defect, kind by kind: what the quarantine must reproduce.
    assert dict(bad) == {k: v for k, v in result["bad_records"].items() if v}
    assert all(v > 0 for v in result["bad_records"].values()), result["bad_records"]
    assert len({u for u, *_ in good}) == CFG.users
    assert {u for u, *_ in good} == {f"u{i:03d}" for i in range(CFG.users)}
    assert all(e == "purchase" for *_, e in good)


def test_items_file_shape(generated):
    out, _ = generated
    items = _items(out)
    assert sorted(items) == [f"i{i:03d}" for i in range(CFG.items)]
    for row in items.values():
        assert set(row) == {"item_id", "title", "categories", "brand"}
        assert len(row["categories"]) == 3 and all(row["categories"])
        assert row["title"].startswith(row["brand"] + " ") and row["categories"][-1] in row["title"]


def test_timestamps_increase_per_user_inside_the_window(generated):
    out, _ = generated
    good, _ = _classify(_event_lines(out), _items(out), CFG)
    first, last = window(CFG)
    assert last == _epoch(f"{CFG.end_date}T23:59:59Z") and last - first + 1 == CFG.days * 86400
    by_user = defaultdict(list)
    for u, _, t, _ in good:
        by_user[u].append(t)
    for ts in by_user.values():
        assert len(ts) >= CFG.min_events_per_user
        assert all(a < b for a, b in zip(ts, ts[1:]))
        assert first <= ts[0] and ts[-1] <= last
    mean = len(good) / CFG.users
    assert 0.7 * CFG.mean_events_per_user < mean < 1.3 * CFG.mean_events_per_user


def test_complementary_transitions_are_learnable_and_popularity_is_skewed(generated):
    out, _ = generated
    good, _ = _classify(_event_lines(out), _items(out), CFG)
    cat = catalog(CFG)
    index = {x: i for i, x in enumerate(cat.item_ids)}
    seqs = defaultdict(list)
    for u, item, _, _ in good:
        seqs[u].append(index[item])
    trans = cat.transitions
    pairs = [(a, b) for s in seqs.values() for a, b in zip(s, s[1:])]
    follows = np.mean([cat.leaf[b] in trans[cat.leaf[a]] for a, b in pairs])
    # Baseline: the same previous items followed by an item drawn from the overall event distribution.
    rng = np.random.default_rng(0)
    pool = np.array([index[i] for _, i, _, _ in good])
    chance = np.mean([cat.leaf[pool[rng.integers(len(pool))]] in trans[cat.leaf[a]] for a, _ in pairs])
    assert follows > 0.3 and chance < 0.1 and follows > 4 * chance, (follows, chance)

    counts = np.sort(np.bincount(pool, minlength=CFG.items))[::-1]
    assert counts[: CFG.items // 10].sum() > 0.3 * counts.sum()


def test_catalog_structure():
    cat = catalog(CFG)
    again = catalog(CFG)
    assert list(cat.titles) == list(again.titles) and np.array_equal(cat.popularity, again.popularity)
    assert np.isclose(cat.popularity.sum(), 1.0)
    assert np.bincount(cat.leaf, minlength=len(cat.leaves)).min() >= 1
    # A brand sells only in its department.
    assert np.array_equal(cat.brand_department[cat.brand], cat.leaf_department[cat.leaf])
    for leaf, comps in cat.transitions.items():
        assert 1 <= len(comps) <= 3 and leaf not in comps
    names = {cat.leaves[a]: {cat.leaves[b] for b in bs} for a, bs in cat.transitions.items()}
    assert "Conditioner" in names["Shampoo"]
    big = catalog(SyntheticConfig(items=60_000))
    assert len(big.leaves) > len(cat.leaves) and len(set(big.leaves)) == len(big.leaves)


def test_user_events_is_pure_and_matches_the_files(generated):
    out, _ = generated
    cat = catalog(CFG)
    recs = user_events(0, cat, CFG)
    assert recs == user_events(0, cat.for_executors(), CFG)
    lines = _event_lines(out)
    assert [event_line(r) for r in recs] == lines[: len(recs)]
    assert all(set(r) >= {"user_id", "item_id", "ts", "event"} for r in recs)
    assert user_events(1, cat, CFG) != recs


def test_bad_records_are_off_at_rate_zero():
    cfg = SyntheticConfig(users=50, items=100, bad_record_rate=0.0)
    cat = catalog(cfg)
    assert not any("bad" in r for u in range(cfg.users) for r in user_events(u, cat, cfg))

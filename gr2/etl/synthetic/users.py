"""One synthetic user's events: a persona, a sequence of purchases drawn from the mixture, timestamps, and
the broken lines (see gr2/etl/synthetic/__init__.py). Pure: no Spark; the executors call `user_events`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, timezone

import numpy as np

from gr2.config import SyntheticConfig
from gr2.etl.synthetic.items import Catalog, cum_with_zero, id_width

EVENT = "purchase"
BAD_KINDS = ("malformed_json", "empty_user_id", "unparseable_ts", "absurd_ts", "duplicate", "unknown_item")

# Mixture constants that are not configuration.
P_FIRST_PERSONA = 0.7  # the first item of a sequence comes from a persona leaf
P_FAVOURITE_BRAND = 0.5  # inside a leaf, a favourite brand's item (when the user has one there)
REDRAWS = 3  # an already bought item is redrawn this many times at most
MIN_GAP_S, MAX_GAP_S = 60.0, 3 * 86400.0


def _pick(cum0: np.ndarray, lo: int, hi: int, r: float) -> int:
    """A position in [lo, hi) drawn with the weights whose cumulative sums (with a leading 0) are cum0."""
    a = cum0[lo]
    j = int(cum0.searchsorted(a + r * (cum0[hi] - a), "right")) - 1
    return lo if j < lo else (hi - 1 if j >= hi else j)


def _distinct(rng: np.random.Generator, k: int, draw) -> list[int]:
    """Up to k distinct values of draw(uniform), by rejection (a few tries each)."""
    out: list[int] = []
    for _ in range(4 * k):
        if len(out) == k:
            break
        x = draw(rng.random())
        if x not in out:
            out.append(x)
    return out


@dataclass
class Persona:
    departments: list[int]
    leaves: list[int]
    brands: list[int]


def persona(rng: np.random.Generator, cat: Catalog) -> Persona:
    """1-2 departments (by popularity), 1-3 leaves and 1-2 favourite brands in them."""
    dept_cum = cum_with_zero(cat.dept_pop)
    n_depts = len(cat.departments)
    depts = _distinct(rng, 1 + int(rng.random() < 0.4), lambda r: _pick(dept_cum, 0, n_depts, r))

    def leaf_of(r: float) -> int:
        d = depts[int(r * len(depts))]
        r = r * len(depts) % 1.0
        return int(cat.dept_leaf_idx[_pick(cat.dept_leaf_cum, int(cat.dept_leaf_ptr[d]), int(cat.dept_leaf_ptr[d + 1]), r)])

    def brand_of(r: float) -> int:
        d = depts[int(r * len(depts))]
        r = r * len(depts) % 1.0
        return int(cat.dept_brand_idx[_pick(cat.dept_brand_cum, int(cat.dept_brand_ptr[d]), int(cat.dept_brand_ptr[d + 1]), r)])

    leaves = _distinct(rng, int(rng.integers(1, 4)), leaf_of)
    brands = _distinct(rng, 1 + int(rng.random() < 0.4), brand_of)
    return Persona(depts, leaves, brands)


def sequence_length(rng: np.random.Generator, cfg: SyntheticConfig) -> int:
    extra_mean = max(cfg.mean_events_per_user - cfg.min_events_per_user, 0.0)
    extra = int(rng.geometric(1.0 / (extra_mean + 1.0))) - 1 if extra_mean > 0 else 0
    cap = max(cfg.min_events_per_user, int(20 * cfg.mean_events_per_user))
    return min(cfg.min_events_per_user + extra, cap)


def window(cfg: SyntheticConfig) -> tuple[int, int]:
    """(first, last) epoch second of the event window: `days` whole UTC days ending at end_date."""
    end_day = date.fromisoformat(cfg.end_date)
    last = int(datetime(end_day.year, end_day.month, end_day.day, 23, 59, 59, tzinfo=timezone.utc).timestamp())
    return last - cfg.days * 86400 + 1, last


def timestamps(rng: np.random.Generator, n: int, cfg: SyntheticConfig) -> np.ndarray:
    """n strictly increasing epoch seconds inside the window."""
    first, last = window(cfg)
    width = last - first + 1
    if n > width:
        raise ValueError(f"synthetic: {n} events do not fit into {cfg.days} days at one per second")
    gaps = np.exp(rng.uniform(math.log(MIN_GAP_S), math.log(MAX_GAP_S), n - 1))
    span = gaps.sum()
    if span > 0.9 * width:
        gaps *= 0.9 * width / span
    gaps = np.maximum(1, np.floor(gaps)).astype(np.int64)
    span = int(gaps.sum())
    if span > width - 1:  # only for absurdly long sequences in a tiny window
        gaps[:] = 1
        span = n - 1
    start = first + int(rng.random() * (width - span))
    start = min(start, last - span)
    out = np.empty(n, dtype=np.int64)
    out[0] = start
    np.cumsum(gaps, out=out[1:])
    out[1:] += start
    return out


class _Sampler:
    """Draws items for one user (favourite-brand ranges are looked up once per leaf)."""

    def __init__(self, cat: Catalog, who: Persona):
        self.cat = cat
        self.who = who
        self.nb = len(cat.brands)
        self._fav: dict[int, list[tuple[int, int]]] = {}

    def favourite_ranges(self, leaf: int) -> list[tuple[int, int]]:
        got = self._fav.get(leaf)
        if got is None:
            got = []
            for b in self.who.brands:
                k = leaf * self.nb + b
                lo = int(self.cat.key_lb.searchsorted(k, "left"))
                hi = int(self.cat.key_lb.searchsorted(k, "right"))
                if hi > lo:
                    got.append((lo, hi))
            self._fav[leaf] = got
        return got

    def in_leaf(self, leaf: int, r_fav: float, r_item: float) -> int:
        cat = self.cat
        fav = self.favourite_ranges(leaf)
        if fav and r_fav < P_FAVOURITE_BRAND:
            lo, hi = fav[int(r_fav / P_FAVOURITE_BRAND * len(fav))]
        else:
            lo, hi = int(cat.leaf_ptr[leaf]), int(cat.leaf_ptr[leaf + 1])
        return int(cat.order_lb[_pick(cat.cum_lb, lo, hi, r_item)])

    def of_brand(self, brand: int, r_item: float) -> int:
        cat = self.cat
        lo, hi = int(cat.brand_ptr[brand]), int(cat.brand_ptr[brand + 1])
        return int(cat.order_b[_pick(cat.cum_b, lo, hi, r_item)])

    def popular(self, r_item: float) -> int:
        return _pick(self.cat.cum_all, 0, self.cat.n_items, r_item)


def item_sequence(rng: np.random.Generator, n: int, who: Persona, cat: Catalog, cfg: SyntheticConfig) -> list[int]:
    """The user's n item indices, drawn from the mixture described in the module docstring."""
    s = _Sampler(cat, who)
    complements = cat.complement_lists
    pc = cfg.p_complement
    pp = pc + cfg.p_persona
    pb = pp + cfg.p_same_brand
    uniforms = rng.random((n, REDRAWS + 1, 4)).tolist()
    seen: set[int] = set()
    out: list[int] = []
    prev = -1
    for t in range(n):
        item = -1
        for mode_r, pick_r, fav_r, item_r in uniforms[t]:
            if prev < 0:
                if mode_r < P_FIRST_PERSONA and who.leaves:
                    item = s.in_leaf(who.leaves[int(pick_r * len(who.leaves))], fav_r, item_r)
                else:
                    item = s.popular(item_r)
            elif mode_r < pc:
                comps = complements[cat.leaf[prev]]
                item = s.in_leaf(comps[int(pick_r * len(comps))], fav_r, item_r)
            elif mode_r < pp and who.leaves:
                item = s.in_leaf(who.leaves[int(pick_r * len(who.leaves))], fav_r, item_r)
            elif mode_r < pb:
                item = s.of_brand(int(cat.brand[prev]), item_r)
            else:
                item = s.popular(item_r)
            if item not in seen:
                break
        seen.add(item)
        out.append(item)
        prev = item
    return out


def event_line(rec: dict) -> str:
    """The JSON line of an event record (the raw text for broken ones)."""
    raw = rec.get("raw")
    if raw is not None:
        return raw
    return f'{{"user_id":"{rec["user_id"]}","item_id":"{rec["item_id"]}","ts":"{rec["ts"]}","event":"{rec["event"]}"}}'


def user_id(user_index: int, cfg: SyntheticConfig) -> str:
    return f"u{user_index:0{id_width(cfg.users)}d}"


def user_events(user_index: int, catalog: Catalog, cfg: SyntheticConfig) -> list[dict]:
    """One user's records in file order (pure; no Spark).

    Good events are {user_id, item_id, ts, event}. A broken record carries the same keys (as written,
    where they exist) plus `bad` (its kind in BAD_KINDS) and `raw` (the exact line written).
    """
    cat = catalog
    rng = np.random.default_rng([cfg.seed, user_index])
    who = persona(rng, cat)
    n = sequence_length(rng, cfg)
    secs = timestamps(rng, n, cfg)
    items = item_sequence(rng, n, who, cat, cfg)
    bad = (rng.random(n) < cfg.bad_record_rate).tolist()
    kinds = rng.integers(0, len(BAD_KINDS), n).tolist()
    extra = rng.random(n).tolist()

    uid = user_id(user_index, cfg)
    ts = [f"{t}Z" for t in secs.astype("datetime64[s]").astype(str).tolist()]
    w = cat.id_width
    out: list[dict] = []
    for t in range(n):
        good = {"user_id": uid, "item_id": f"i{items[t]:0{w}d}", "ts": ts[t], "event": EVENT}
        out.append(good)
        if not bad[t]:
            continue
        kind = BAD_KINDS[kinds[t]]
        rec = dict(good)
        if kind == "malformed_json":
            line = event_line(good)
            rec["raw"] = line[: 10 + int(extra[t] * (len(line) - 12))]
        elif kind == "empty_user_id":
            rec["user_id"] = ""
        elif kind == "unparseable_ts":
            rec["ts"] = "not-a-date"
        elif kind == "absurd_ts":
            rec["ts"] = f"1971-01-01T{ts[t][11:]}" if extra[t] < 0.5 else f"2199{ts[t][4:]}"
        elif kind == "unknown_item":
            rec["item_id"] = f"ghost-{int(extra[t] * 1_000_000)}"
        # "duplicate" keeps the good fields as they are.
        if "raw" not in rec:
            rec["raw"] = event_line(rec)
        rec["bad"] = kind
        out.append(rec)
    return out

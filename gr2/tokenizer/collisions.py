"""De-collision of raw RQ-VAE codes by the "random last level" rule (pure numpy).

Items are grouped by their first L-1 codes (the prefix). Within a group, items are visited in a stable
order: items to keep (assigned in earlier nightly runs) first, then by original index. The first
item holding each full tuple keeps it; every later item with the same tuple is a collision and gets a
last code drawn deterministically among the codes not yet used in its prefix group, from
np.random.default_rng([seed, L, *prefix]) (no Python hash, so runs and machines agree). Kept items
never move. A group holding more than C items cannot be made unique at L levels: the excess items
keep their raw codes and the group's prefix is reported, for `add_level_fallback`.
"""

from __future__ import annotations

import numpy as np


def _check_codes(codes, codes_per_level: int) -> np.ndarray:
    a = np.asarray(codes)
    if a.ndim != 2 or a.shape[1] < 1:
        raise ValueError(f"codes must be a 2-D integer array [items, levels >= 1], got shape {a.shape}")
    if a.size and not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"codes must be integers, got dtype {a.dtype}")
    if codes_per_level < 1:
        raise ValueError(f"codes_per_level must be >= 1, got {codes_per_level}")
    if a.size and (a.min() < 0 or a.max() >= codes_per_level):
        raise ValueError(
            f"codes must lie in [0, {codes_per_level}), got values in [{a.min()}, {a.max()}]"
        )
    return a.astype(np.int64, copy=False)


def _check_mask(mask, n: int, name: str) -> np.ndarray:
    if mask is None:
        return np.zeros(n, dtype=bool)
    m = np.asarray(mask)
    if m.shape != (n,):
        raise ValueError(f"{name} must be a boolean array of shape ({n},), got shape {m.shape}")
    return m.astype(bool, copy=False)


def _prefix_sort(a: np.ndarray, first: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Order by (full tuple, not-first-priority, index); plus boolean 'same tuple as previous' and
    'same prefix as previous' flags in that order."""
    n, L = a.shape
    keys = [np.arange(n), ~first] + [a[:, j] for j in reversed(range(L))]
    order = np.lexsort(keys)
    s = a[order]
    same_tuple = np.zeros(n, dtype=bool)
    same_prefix = np.zeros(n, dtype=bool)
    if n > 1:
        same_prefix[1:] = np.all(s[1:, : L - 1] == s[:-1, : L - 1], axis=1) if L > 1 else True
        same_tuple[1:] = same_prefix[1:] & (s[1:, L - 1] == s[:-1, L - 1])
    return order, same_tuple, same_prefix


def redraw_last_level(
    codes: np.ndarray, codes_per_level: int, seed: int, keep: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, list[tuple[int, ...]]]:
    """Make full code tuples unique by re-drawing the last code of colliding items.

    Returns (new_codes [n, L], was_collision [n] bool, overflow_groups: sorted list of prefix tuples of
    groups whose collisions could not all be resolved). Only colliding items change; kept items never
    change (two kept items sharing a tuple stay as they are and are not counted as collisions).
    """
    a = _check_codes(codes, codes_per_level)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    n, L = a.shape
    keep = _check_mask(keep, n, "keep")
    new = a.copy()
    collision = np.zeros(n, dtype=bool)
    overflow: list[tuple[int, ...]] = []
    if n == 0:
        return new, collision, overflow

    order, same_tuple, same_prefix = _prefix_sort(a, keep)
    collider_sorted = same_tuple & ~keep[order]
    if not collider_sorted.any():
        return new, collision, overflow

    group_id = np.cumsum(~same_prefix) - 1  # prefix group of each sorted position
    starts = np.flatnonzero(~same_prefix)
    ends = np.append(starts[1:], n)
    for g in np.unique(group_id[collider_sorted]):
        lo, hi = starts[g], ends[g]
        members = order[lo:hi]
        is_collider = collider_sorted[lo:hi]
        colliders = np.sort(members[is_collider])  # stable order: original index
        collision[colliders] = True
        used = np.zeros(codes_per_level, dtype=bool)
        used[a[members[~is_collider], L - 1]] = True
        free = np.flatnonzero(~used)
        prefix = tuple(int(c) for c in a[members[0], : L - 1])
        rng = np.random.default_rng([int(seed), L, *prefix])
        drawn = rng.permutation(free)
        k = min(len(colliders), len(drawn))
        new[colliders[:k], L - 1] = drawn[:k]
        if len(colliders) > len(drawn):
            overflow.append(prefix)
    overflow.sort()
    return new, collision, overflow


def overflow_mask(codes: np.ndarray, overflow_groups: list[tuple[int, ...]]) -> np.ndarray:
    """Boolean [n]: the items whose first L-1 codes are one of `overflow_groups`."""
    a = np.asarray(codes)
    if a.ndim != 2:
        raise ValueError(f"codes must be a 2-D array [items, levels], got shape {a.shape}")
    n, L = a.shape
    if not overflow_groups:
        return np.zeros(n, dtype=bool)
    if L == 1:
        return np.ones(n, dtype=bool)
    groups = np.asarray([tuple(g) for g in overflow_groups], dtype=np.int64).reshape(-1, L - 1)
    # Row-wise membership through a void view: O(n log g) memory-light, not an n x g x L broadcast.
    return np.isin(_row_keys(a[:, : L - 1]), _row_keys(groups))


def _row_keys(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.int64)
    return x.view(np.dtype((np.void, x.dtype.itemsize * x.shape[1]))).ravel()


def add_level_fallback(codes: np.ndarray, overflow: np.ndarray) -> np.ndarray:
    """Append one distinguishing column so that tuples in over-full groups become unique.

    `overflow` marks items of over-full prefix groups (the whole groups, e.g. from `overflow_mask`, or
    just their unresolved items). Unmarked items get 0. Among the items sharing a full L-level tuple,
    marked items are numbered after the unmarked ones in index order (0, 1, ..., m-1), so the new
    column stays small (below C whenever at most C items share a tuple). All tuples become unique if
    the unmarked items' tuples already were.
    """
    a = np.asarray(codes)
    if a.ndim != 2:
        raise ValueError(f"codes must be a 2-D array [items, levels], got shape {a.shape}")
    n, L = a.shape
    mask = _check_mask(overflow, n, "overflow")
    extra = np.zeros(n, dtype=a.dtype if np.issubdtype(a.dtype, np.integer) else np.int64)
    if n and mask.any():
        keys = [np.arange(n), mask] + [a[:, j] for j in reversed(range(L))]
        order = np.lexsort(keys)
        s = a[order]
        new_tuple = np.ones(n, dtype=bool)
        new_tuple[1:] = np.any(s[1:] != s[:-1], axis=1)
        start = np.maximum.accumulate(np.where(new_tuple, np.arange(n), 0))
        rank = np.arange(n) - start
        sorted_mask = mask[order]
        extra[order[sorted_mask]] = rank[sorted_mask]
    return np.concatenate([a, extra[:, None]], axis=1)


def fallback_codes(codes: np.ndarray, overflow: np.ndarray, codes_per_level: int) -> list[list[int]]:
    """Per item, its code list with as many extra levels as its full tuple needs (none if unmarked).

    Generalises `add_level_fallback` to tuples shared by more than C marked items: the rank from
    `add_level_fallback` is written in base C with a width fixed per full tuple (the digits its
    largest rank needs), so every code stays in [0, C) and no two items of one tuple get the same
    list. Unmarked items keep their L codes. Items of one tuple share one length, so no SID of a
    tuple is a prefix of another of the same tuple.
    """
    a = _check_codes(codes, codes_per_level) if np.asarray(codes).size else np.asarray(codes, dtype=np.int64)
    n = len(a)
    mask = _check_mask(overflow, n, "overflow")
    out = [list(map(int, row)) for row in a]
    if not mask.any():
        return out
    if codes_per_level < 2:
        raise ValueError("the extra-level fallback needs codes_per_level >= 2")
    rank = add_level_fallback(a, mask)[:, -1]
    _, tuple_id = np.unique(a, axis=0, return_inverse=True)
    tuple_id = tuple_id.reshape(-1)
    max_rank = np.zeros(tuple_id.max() + 1, dtype=np.int64)
    np.maximum.at(max_rank, tuple_id[mask], rank[mask])
    for i in np.flatnonzero(mask):
        width, top = 1, int(max_rank[tuple_id[i]])
        while top >= codes_per_level:
            top //= codes_per_level
            width += 1
        r, digits = int(rank[i]), []
        for _ in range(width):
            digits.append(r % codes_per_level)
            r //= codes_per_level
        out[i].extend(reversed(digits))
    return out

"""The synthetic item catalog: category tree, brands, items, complementary leaves, and the arrays the
user generator samples from (see gr2/etl/synthetic/__init__.py for the structure)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from gr2.config import SyntheticConfig
from gr2.etl.synthetic.vocabulary import (
    ADJECTIVES,
    COMPLEMENTS,
    LEAF_MODIFIERS,
    SIZES,
    SYLLABLES,
    TIER_WORDS,
    TIERS,
    TREE,
)


@dataclass
class Catalog:
    """The item catalog and everything the sequence generator samples from (numpy arrays).

    Items are indexed 0..n-1 (`item_ids[i]` is "i" + zero-padded i). Leaves, subcategories,
    departments and brands are indexed into their name lists.
    """

    item_ids: np.ndarray | None  # str; None in the copy broadcast to executors
    titles: np.ndarray | None  # str; None in the copy broadcast to executors
    leaf: np.ndarray  # int32 [n] leaf of each item
    brand: np.ndarray  # int32 [n] brand of each item
    popularity: np.ndarray  # float64 [n], sums to 1
    departments: list[str]
    subcategories: list[str]
    subcategory_department: np.ndarray  # int32 [n_subcategories]
    leaves: list[str]
    leaf_subcategory: np.ndarray  # int32 [n_leaves]
    leaf_department: np.ndarray  # int32 [n_leaves]
    brands: list[str]
    brand_department: np.ndarray  # int32 [n_brands]
    brand_tier: np.ndarray  # int8 [n_brands], index into TIERS
    trans_ptr: np.ndarray  # int64 [n_leaves + 1]: complements of leaf l are trans_idx[trans_ptr[l]:trans_ptr[l+1]]
    trans_idx: np.ndarray  # int32
    id_width: int
    # Sampling structures: items sorted by (leaf, brand), and by brand; cumulative popularity with a 0.
    order_lb: np.ndarray
    key_lb: np.ndarray  # leaf * n_brands + brand, sorted
    cum_lb: np.ndarray  # [n + 1]
    leaf_ptr: np.ndarray  # [n_leaves + 1] into order_lb
    order_b: np.ndarray
    brand_ptr: np.ndarray  # [n_brands + 1] into order_b
    cum_b: np.ndarray  # [n + 1]
    cum_all: np.ndarray  # [n + 1] over item index order
    leaf_pop: np.ndarray  # [n_leaves]
    brand_pop: np.ndarray  # [n_brands]
    dept_leaf_ptr: np.ndarray  # CSR department -> leaves
    dept_leaf_idx: np.ndarray
    dept_brand_ptr: np.ndarray  # CSR department -> brands
    dept_brand_idx: np.ndarray
    dept_leaf_cum: np.ndarray  # [n_leaves + 1] cumulative leaf popularity in dept_leaf_idx order
    dept_brand_cum: np.ndarray  # [n_brands + 1] cumulative brand popularity in dept_brand_idx order
    dept_pop: np.ndarray  # [n_departments]
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def n_items(self) -> int:
        return len(self.leaf)

    def item_id(self, i: int) -> str:
        return f"i{i:0{self.id_width}d}"

    def complements(self, leaf: int) -> np.ndarray:
        return self.trans_idx[self.trans_ptr[leaf] : self.trans_ptr[leaf + 1]]

    @property
    def transitions(self) -> dict[int, list[int]]:
        """The complementary-leaf map as {leaf: [leaf, ...]}."""
        return {leaf: [int(x) for x in self.complements(leaf)] for leaf in range(len(self.leaves))}

    def categories(self, i: int) -> list[str]:
        leaf = int(self.leaf[i])
        return [
            self.departments[self.leaf_department[leaf]],
            self.subcategories[self.leaf_subcategory[leaf]],
            self.leaves[leaf],
        ]

    def for_executors(self) -> "Catalog":
        """A copy without the per-item strings (the generator formats ids from the index)."""
        return replace(self, item_ids=None, titles=None, _cache={})

    @property
    def complement_lists(self) -> list[list[int]]:
        """The transition map as Python lists (cached; the generator indexes it per event)."""
        got = self._cache.get("complements")
        if got is None:
            got = self._cache["complements"] = [list(map(int, self.complements(leaf))) for leaf in range(len(self.leaves))]
        return got


def id_width(count: int) -> int:
    return len(str(count))


def _csr(groups: np.ndarray, values: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(groups, kind="stable")
    ptr = np.zeros(n_groups + 1, dtype=np.int64)
    np.cumsum(np.bincount(groups, minlength=n_groups), out=ptr[1:])
    return ptr, values[order].astype(np.int32)


def cum_with_zero(x: np.ndarray) -> np.ndarray:
    """Cumulative sums of the weights x with a leading 0: what `users._pick` draws a position from."""
    out = np.zeros(len(x) + 1, dtype=np.float64)
    np.cumsum(x, out=out[1:])
    return out


def _tree(n_leaves: int):
    """(departments, subcategories, subcat_dept, leaves, leaf_subcat, base_of_leaf) for n_leaves leaves."""
    base = [(d, s, leaf) for d, subs in TREE.items() for s, leaves in subs.items() for leaf in leaves]
    if n_leaves <= len(base):
        chosen = [(d, s, leaf, leaf) for d, s, leaf in base[:n_leaves]]
    else:
        chosen = [(d, s, leaf, leaf) for d, s, leaf in base]
        for k in range(n_leaves - len(base)):
            d, s, leaf = base[k % len(base)]
            r = k // len(base)
            name = f"{LEAF_MODIFIERS[r]} {leaf}" if r < len(LEAF_MODIFIERS) else f"{leaf} Line {r - len(LEAF_MODIFIERS) + 2}"
            chosen.append((d, s, name, leaf))
    departments = list(dict.fromkeys(d for d, _, _, _ in chosen))
    subcategories = list(dict.fromkeys(s for _, s, _, _ in chosen))
    sub_dept = {s: departments.index(d) for d, s, _, _ in chosen}
    subcat_dept = np.array([sub_dept[s] for s in subcategories], dtype=np.int32)
    leaves = [leaf for _, _, leaf, _ in chosen]
    assert len(set(leaves)) == len(leaves), "leaf names must be unique"
    leaf_subcat = np.array([subcategories.index(s) for _, s, _, _ in chosen], dtype=np.int32)
    base_of = [b for _, _, _, b in chosen]
    return departments, subcategories, subcat_dept, leaves, leaf_subcat, base_of


def _brand_names(rng: np.random.Generator, n: int, tiers: np.ndarray) -> list[str]:
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < n:
        k = 2 if rng.random() < 0.6 else 3
        base = "".join(SYLLABLES[j] for j in rng.integers(0, len(SYLLABLES), k)).capitalize()
        if base in seen:
            if len(seen) > 0.5 * len(SYLLABLES) ** 2:
                base = f"{base}{len(names)}"
            else:
                continue
        seen.add(base)
        words = TIER_WORDS[TIERS[tiers[len(names)]]]
        word = words[int(rng.integers(0, len(words)))]
        names.append(f"{base} {word}".strip())
    return names


def _transitions(rng: np.random.Generator, leaves, base_of, leaf_subcat, leaf_dept) -> tuple[np.ndarray, np.ndarray]:
    index = {name: i for i, name in enumerate(leaves)}
    comps: list[list[int]] = [[] for _ in leaves]
    for a, b in COMPLEMENTS:  # hand-written pairs between vocabulary leaves that are in the tree
        if a in index and b in index:
            comps[index[a]].append(index[b])
    n = len(leaves)
    all_leaves = np.arange(n)
    for leaf in range(n):
        # Seeded random pairs: inside the subcategory or the department, any leaf as a last resort.
        want = len(comps[leaf]) + (1 if rng.random() < 0.3 else 0) if comps[leaf] else (2 if rng.random() < 0.5 else 1)
        for _ in range(20):
            if len(comps[leaf]) >= want:
                break
            pool = all_leaves[leaf_subcat == leaf_subcat[leaf]] if rng.random() < 0.5 else all_leaves[leaf_dept == leaf_dept[leaf]]
            pool = [x for x in pool if x != leaf and x not in comps[leaf]]
            if not pool:
                pool = [x for x in all_leaves if x != leaf and x not in comps[leaf]]
            if not pool:
                break
            comps[leaf].append(int(pool[int(rng.integers(0, len(pool)))]))
    ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum([len(c) for c in comps], out=ptr[1:])
    idx = np.array([x for c in comps for x in c], dtype=np.int32)
    return ptr, idx


def catalog(cfg: SyntheticConfig) -> Catalog:
    """The deterministic item catalog of `cfg` (pure; no Spark)."""
    rng = np.random.default_rng([cfg.seed, 0x5EED, 0xCA7])
    n = cfg.items
    n_leaves = min(max(2, n // 4), max(sum(len(v) for s in TREE.values() for v in s.values()), n // 200))
    departments, subcategories, subcat_dept, leaves, leaf_subcat, base_of = _tree(n_leaves)
    leaf_dept = subcat_dept[leaf_subcat]
    n_depts = len(departments)

    # Items -> leaves: one item per leaf, the rest by leaf size weights; then shuffled.
    leaf_weight = rng.lognormal(0.0, 0.5, n_leaves)
    leaf = np.concatenate([np.arange(n_leaves), rng.choice(n_leaves, n - n_leaves, p=leaf_weight / leaf_weight.sum())])
    leaf = rng.permutation(leaf).astype(np.int32)
    item_dept = leaf_dept[leaf]

    # Brands: each in one department (every department has at least one), with a tier and a strength.
    n_brands = max(2 * n_depts, min(n // 12, 2000))
    brand_dept = np.concatenate([np.arange(n_depts), rng.integers(0, n_depts, n_brands - n_depts)]).astype(np.int32)
    brand_tier = rng.choice(3, n_brands, p=[0.3, 0.45, 0.25]).astype(np.int8)
    brand_strength = rng.lognormal(0.0, 0.75, n_brands)
    brands = _brand_names(rng, n_brands, brand_tier)
    dept_brand_ptr, dept_brand_idx = _csr(brand_dept, np.arange(n_brands), n_depts)
    brand = _item_brands(rng.random(n), item_dept, brand_strength, dept_brand_ptr, dept_brand_idx)

    rank = rng.permutation(n)
    popularity = (rank + 1.0) ** (-cfg.zipf) * brand_strength[brand]
    popularity /= popularity.sum()

    # Titles. The draws stay here, in this order: every seed's catalog depends on it.
    adj_pick = rng.random(n)
    size_pick = rng.random(n)
    titles = _titles(departments, item_dept, brands, brand, leaves, leaf, adj_pick, size_pick)
    trans_ptr, trans_idx = _transitions(rng, leaves, base_of, leaf_subcat, leaf_dept)

    return Catalog(
        item_ids=np.array([f"i{i:0{id_width(n)}d}" for i in range(n)], dtype=object),
        titles=titles,
        leaf=leaf,
        brand=brand,
        popularity=popularity,
        departments=departments,
        subcategories=subcategories,
        subcategory_department=subcat_dept,
        leaves=leaves,
        leaf_subcategory=leaf_subcat,
        leaf_department=leaf_dept.astype(np.int32),
        brands=brands,
        brand_department=brand_dept,
        brand_tier=brand_tier,
        trans_ptr=trans_ptr,
        trans_idx=trans_idx,
        id_width=id_width(n),
        dept_brand_ptr=dept_brand_ptr,
        dept_brand_idx=dept_brand_idx,
        **_sampling_arrays(leaf, brand, popularity, leaf_dept, n_brands, n_depts, dept_brand_idx),
    )


def _item_brands(u: np.ndarray, item_dept: np.ndarray, brand_strength: np.ndarray, dept_brand_ptr: np.ndarray,
                 dept_brand_idx: np.ndarray) -> np.ndarray:
    """Each item's brand: one of its department's brands, by strength (u: one uniform per item)."""
    brand = np.empty(len(item_dept), dtype=np.int32)
    for d in range(len(dept_brand_ptr) - 1):
        members = dept_brand_idx[dept_brand_ptr[d] : dept_brand_ptr[d + 1]]
        w = cum_with_zero(brand_strength[members])
        mask = item_dept == d
        pick = np.searchsorted(w, u[mask] * w[-1], side="right") - 1
        brand[mask] = members[np.clip(pick, 0, len(members) - 1)]
    return brand


def _titles(departments, item_dept, brands, brand, leaves, leaf, adj_pick, size_pick) -> np.ndarray:
    """Brand + department adjective + leaf noun + size, e.g. "Lumera Silk Repair Shampoo 250 ml"."""
    titles = np.empty(len(leaf), dtype=object)
    for i in range(len(leaf)):
        dept = departments[item_dept[i]]
        adjs, sizes = ADJECTIVES[dept], SIZES[dept]
        titles[i] = (
            f"{brands[brand[i]]} {adjs[int(adj_pick[i] * len(adjs))]} {leaves[leaf[i]]} {sizes[int(size_pick[i] * len(sizes))]}"
        )
    return titles


def _sampling_arrays(leaf, brand, popularity, leaf_dept, n_brands: int, n_depts: int, dept_brand_idx) -> dict:
    """The Catalog fields the user generator samples from (no randomness): items sorted by (leaf, brand)
    and by brand with cumulative popularity, and the department -> leaf/brand popularity tables."""
    n_leaves = len(leaf_dept)
    key = leaf.astype(np.int64) * n_brands + brand
    order_lb = np.argsort(key, kind="stable")
    order_b = np.argsort(brand, kind="stable")
    leaf_ptr = np.zeros(n_leaves + 1, dtype=np.int64)
    np.cumsum(np.bincount(leaf, minlength=n_leaves), out=leaf_ptr[1:])
    brand_ptr = np.zeros(n_brands + 1, dtype=np.int64)
    np.cumsum(np.bincount(brand, minlength=n_brands), out=brand_ptr[1:])
    leaf_pop = np.bincount(leaf, weights=popularity, minlength=n_leaves)
    brand_pop = np.bincount(brand, weights=popularity, minlength=n_brands)
    dept_leaf_ptr, dept_leaf_idx = _csr(leaf_dept, np.arange(n_leaves), n_depts)
    return dict(
        order_lb=order_lb.astype(np.int32), key_lb=key[order_lb], cum_lb=cum_with_zero(popularity[order_lb]),
        leaf_ptr=leaf_ptr, order_b=order_b.astype(np.int32), brand_ptr=brand_ptr,
        cum_b=cum_with_zero(popularity[order_b]), cum_all=cum_with_zero(popularity),
        leaf_pop=leaf_pop, brand_pop=brand_pop, dept_leaf_ptr=dept_leaf_ptr, dept_leaf_idx=dept_leaf_idx,
        dept_leaf_cum=cum_with_zero(leaf_pop[dept_leaf_idx]), dept_brand_cum=cum_with_zero(brand_pop[dept_brand_idx]),
        dept_pop=np.bincount(leaf_dept, weights=leaf_pop, minlength=n_depts),
    )


def item_records(cat: Catalog):
    """items.jsonl rows, in item order."""
    for i in range(cat.n_items):
        yield {"item_id": cat.item_ids[i], "title": cat.titles[i], "categories": cat.categories(i), "brand": cat.brands[cat.brand[i]]}
